"""PID 1 of every build container: runs the step's command and ends the container when
its owner is gone, even when the owner was killed outright (``kill -9``).

The owner attaches to this process's stdin when it starts the container (the container
is created with an open stdin that closes when the attached client disconnects). No
data is ever sent: stdin reaching EOF means the owner's connection to the engine is
gone, because the owner died (or a remote engine lost it). This process then exits at
once, and the kernel kills every other process of the container with it (they are in
its PID namespace), so no build runs on for minutes with nobody to read it. The engine
is what closes stdin, so this works on a remote engine too, where the owner's host
cannot be seen from the container.

Runs as ``python -c <this file> COMMAND...`` on the image's own Python; standard
library only, Python 3.8 compatible.
"""

import os
import subprocess
import sys
import threading


def watch():
    """Read stdin until EOF, then end the container (exit of PID 1)."""
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    os._exit(137)


def main():
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
    threading.Thread(target=watch, daemon=True).start()
    code = child.wait()
    sys.exit(128 - code if code < 0 else code)


main()
