"""Building in the registry: an image put together from blobs with no engine (registry_build),
and the cache ref a build reads and writes there."""
