"""Refresh the README's picture from the browser test's latest screenshot.

``python -m console.picture`` copies ``artifacts/console/city.png`` (written
by ``tests/integration/test_console.py``) to ``docs/console.png``. Tests never
touch tracked files; this is the one explicit step that does.
"""

from __future__ import annotations

import shutil
import sys

from engine.config import REPO_ROOT

__all__ = ["main"]

SOURCE = REPO_ROOT / "artifacts" / "console" / "city.png"
TARGET = REPO_ROOT / "docs" / "console.png"


def main() -> int:
    """Copy the screenshot; exit 1 with a reason if there is none."""
    if not SOURCE.exists():
        print(
            f"no screenshot at {SOURCE}; run "
            "`.venv/bin/pytest tests/integration/test_console.py` first",
            file=sys.stderr,
        )
        return 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE, TARGET)
    print(f"{SOURCE} -> {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
