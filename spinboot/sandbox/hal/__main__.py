"""``python -m spinboot.sandbox.hal ARGS...`` — the sandbox's ``hal``."""

import sys

from spinboot.sandbox.hal.cli import main

if __name__ == "__main__":
    sys.exit(main())
