"""The image's layers above the base: the deps layer (with its system libraries), the app
layer and the static layer (collectstatic), with the caches they keep."""
