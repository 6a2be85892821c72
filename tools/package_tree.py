"""Build ``build/package-tree/tamiyo/``: the installed package layout, as symlinks into the repository.

The repository's top-level folders are the architecture (``contracts/``, ``policy/``, ...) and install as
``tamiyo.*`` subpackages (``[tool.setuptools] package-dir`` in pyproject.toml).  The editable install
resolves them with an import hook that static tools cannot follow, so the lint points import-linter and
mypy at this tree instead.  It is rebuilt from pyproject.toml on every run, so it never goes stale.

    python tools/package_tree.py   # prints the directory to put on PYTHONPATH / MYPYPATH
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "package-tree"


def build() -> Path:
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(TREE, ignore_errors=True)
    top = TREE / "tamiyo"
    top.mkdir(parents=True)
    for package, folder in sorted(mapping.items()):
        parts = package.split(".")
        if parts[0] != "tamiyo":
            raise SystemExit(f"unexpected package {package!r} in pyproject.toml")
        source = ROOT / folder
        if len(parts) == 1:  # the root package itself: link its files, the subpackages come next
            for item in source.iterdir():
                if item.suffix in (".py", ".pyi", ".typed"):
                    (top / item.name).symlink_to(item)
        else:
            target = TREE.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source, target_is_directory=True)
    return TREE


if __name__ == "__main__":
    print(build())
    sys.exit(0)
