"""What the app depends on: requirement files, lock files (locks/) and the model types
they are read into."""
