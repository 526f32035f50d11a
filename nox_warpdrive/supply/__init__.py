"""Supply chain: what is in an image (a CycloneDX SBOM), where it came from (an in-toto
statement with a SLSA provenance predicate), and both pushed beside the image as OCI
artifacts that refer to it.

The facts are gathered while the image is built, from what the build already knows (the
resolved wheels and the wheelhouse manifest) and, once per deps key and once per base
image, from files read out of an image through a created, never started, container. They
are kept on the host (gather.py), so `nox -s sbom` and a push read files, not images."""

import logging

# cyclonedx-python-lib's serializer logs each class and field at DEBUG (from the moment
# it is imported, which this package does after this line), and nox shows DEBUG records
for _name in ("py_serializable", "cyclonedx"):
    logging.getLogger(_name).setLevel(logging.WARNING)
