"""The sandbox's ``hal`` stand-in: a plain CLI over ``$HOME/.hal`` that accepts exactly what Halyard's ``hal``
accepts (spinboot.render.halgrammar) and on ``hal deploy apply`` creates Spinnaker's Deployments and Services.

Run it as ``python -m spinboot.sandbox.hal ARGS...`` or through ``bin/hal`` (see :func:`launcher_dir`).
"""

from __future__ import annotations

import sys
from pathlib import Path

BIN_DIR = Path(__file__).resolve().parent / "bin"


def launcher_dir() -> Path:
    """Directory holding the ``hal`` launcher, for the Halyard pod's ``PATH``.

    The launcher runs ``$SPINBOOT_HAL_PYTHON`` (default ``python3``) with spinboot's source root on
    ``PYTHONPATH``; set ``SPINBOOT_HAL_PYTHON`` to the venv's interpreter (see :func:`launcher_env`)."""
    return BIN_DIR


def launcher_env() -> dict[str, str]:
    """Environment the launcher needs: this interpreter, so the exec'd ``hal`` has pyyaml and kubernetes."""
    return {"SPINBOOT_HAL_PYTHON": sys.executable}
