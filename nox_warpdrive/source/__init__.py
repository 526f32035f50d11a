"""The app's source tree: the walk and its ignore rules, the archive, the index kept between
runs, and its split into layers by change rate."""
