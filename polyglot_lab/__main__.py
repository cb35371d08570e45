"""The learner's command: `polyglot-lab` (or `python -m polyglot_lab`), the same on Linux, macOS and Windows.

    polyglot-lab get [FOLDER]   copy the course notebooks into FOLDER (default: polyglot-lab-work); never overwrites
    polyglot-lab lab [FOLDER]   the same, then open JupyterLab there

Your notebooks are yours: a notebook already in FOLDER is left as it is, and when the course ships a newer one it is
written beside yours as NN_slug.new.ipynb, for you to compare.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "notebooks"   # a learner release ships its notebooks here
REPOSITORY = Path(__file__).resolve().parent.parent / "notebooks"  # a clone of the course repository


def course_notebooks() -> list[Path]:
    folder = PACKAGED if PACKAGED.is_dir() else REPOSITORY
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def get(folder: Path) -> list[str]:
    """Copy the course's notebooks into `folder`; returns one line per notebook saying what was done."""
    notebooks = course_notebooks()
    if not notebooks:
        raise SystemExit("polyglot-lab: this installation holds no course notebooks (reinstall the course)")
    folder.mkdir(parents=True, exist_ok=True)
    said = []
    for source in notebooks:
        target = folder / source.name
        if not target.exists():
            shutil.copyfile(source, target)
            said.append(f"new      {target}")
            continue
        newer = folder / f"{source.stem}.new.ipynb"
        if filecmp.cmp(source, target, shallow=False) or (newer.exists() and filecmp.cmp(source, newer, shallow=False)):
            said.append(f"kept     {target}")
            continue
        shutil.copyfile(source, newer)
        said.append(f"kept     {target} (the course's current edition is beside it: {newer.name})")
    return said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyglot-lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("get", "copy the course notebooks into FOLDER"), ("lab", "get, then open JupyterLab there")):
        command = sub.add_parser(name, help=text)
        command.add_argument("folder", nargs="?", default="polyglot-lab-work")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    print("\n".join(get(folder)))
    if args.command == "lab":
        root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        return subprocess.call([sys.executable, "-m", "jupyterlab", *root], cwd=folder, env=env)
    print(f"Open them with: polyglot-lab lab {folder}   (or: cd {folder} && jupyter lab)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
