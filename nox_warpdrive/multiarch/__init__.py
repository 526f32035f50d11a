"""Images for several platforms (`platforms` in [tool.warpdrive], `--platform`): one
build per platform, in that platform's base and builder images (emulated where the
engine's CPU differs), one image index when pushed."""
