"""Where hacloud's data files (templates, profiles, example specs) live.

In a wheel they are packaged as ``hacloud/_templates``; in a source checkout (editable
install, tests) they are the repository's top-level ``templates/`` directory.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def templates_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_templates", here.parent / "templates"):
        if (candidate / "profiles").is_dir():
            return candidate
    raise RuntimeError(f"hacloud's templates are missing next to {here}; reinstall hacloud")
