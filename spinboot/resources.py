"""Where spinboot's operator-readable data (top-level halconfig/ and rbac/) is found.

An installed wheel carries them as spinboot/_data/...; an editable install reads the repository's own folders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(*parts: str) -> Path:
    packaged = Path(str(resources.files("spinboot"))) / "_data"
    if packaged.is_dir():
        return packaged.joinpath(*parts)
    return Path(__file__).resolve().parent.parent.joinpath(*parts)
