"""The wheelhouse: wheels built in a builder container into a named volume, its image for
CI, its transfer into and out of the volume, and the bounds on its caches."""
