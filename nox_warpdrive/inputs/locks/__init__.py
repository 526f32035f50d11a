"""One reader per lock format: each turns a lock file into the pins it selects for the
target image (nox_warpdrive.inputs.model holds what they share)."""
