"""The provider executable's entry point (PyInstaller runs this script as `__main__`).

It exits with `os._exit` right after the exit hooks (the runtime hook's cleanup among them):
interpreter teardown adds nothing for a process that is ending, and skipping it lets the onefile
bootloader, when it is still alive, remove its directory the moment we are gone.
"""

import atexit
import os
import sys

from provider.__main__ import main


def run() -> None:
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    run()
