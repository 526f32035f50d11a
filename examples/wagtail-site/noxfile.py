import nox_warpdrive

nox_warpdrive.sessions()
