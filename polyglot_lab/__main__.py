"""The learner's command: `polyglot-lab` (or `python -m polyglot_lab`), the same on Linux, macOS and Windows.

    polyglot-lab get [FOLDER]        copy the course notebooks into FOLDER (default: polyglot-lab-work); never overwrites
    polyglot-lab lab [FOLDER]        the same, then open JupyterLab there, with the course's quiet kernel
    polyglot-lab progress [FOLDER]   every module and exercise with its state, from your last checks
    polyglot-lab kernel              install the course's kernel spec (quiet TensorFlow) into this environment

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

from polyglot_lab.quiet import quiet_environment

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


KERNEL_NAME = "python3"
KERNEL_DISPLAY_NAME = "Python 3 (Polyglot Lab)"


def install_kernel(prefix: str | None = None) -> str:
    """The kernel spec the notebooks name (python3), for this environment's Python, with the settings that keep
    TensorFlow's start-up log out of the notebook (polyglot_lab.quiet). Installed into the environment itself
    (sys.prefix), so another environment's kernels are not touched, or for the user where that is not writable (a
    system Python); returns where it was written."""
    from ipykernel.kernelspec import install

    try:
        return install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, env=quiet_environment(),
                       prefix=prefix or sys.prefix)
    except PermissionError:
        return install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, env=quiet_environment(), user=True)


def lab_command(folder: Path, port: int | None = None) -> list[str]:
    """JupyterLab on 127.0.0.1 in `folder`; as root (a container, a dev container) it needs --allow-root."""
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    chosen = [f"--port={port}"] if port else []
    return [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", *chosen, *root, f"--notebook-dir={folder}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyglot-lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("get", "copy the course notebooks into FOLDER"),
                       ("lab", "get, then open JupyterLab there"),
                       ("progress", "every module and exercise with its state"),
                       ("kernel", "install the course's kernel spec into this environment")):
        command = sub.add_parser(name, help=text)
        if name != "kernel":
            command.add_argument("folder", nargs="?", default="polyglot-lab-work")
        if name == "lab":
            command.add_argument("--port", type=int, help="JupyterLab's port (default: its own, 8888 or the next free)")
    args = parser.parse_args(argv)
    if args.command == "kernel":
        print(f"kernel spec: {install_kernel()}")
        return 0
    folder = Path(args.folder)
    if args.command == "progress":
        from polyglot_lab.catalogue import load_catalogue
        from polyglot_lab.progress import listing

        if not folder.is_dir():
            raise SystemExit(f"polyglot-lab: {folder} is not a folder (make it with: polyglot-lab get {folder})")
        print(listing(folder, load_catalogue().values()))
        return 0
    print("\n".join(get(folder)))
    if args.command == "lab":
        print(f"kernel spec: {install_kernel()}")
        env = {**os.environ, **{k: v for k, v in quiet_environment().items() if k not in os.environ}}
        return subprocess.call(lab_command(folder, args.port), env=env)
    print(f"Open them with: polyglot-lab lab {folder}   (or: cd {folder} && jupyter lab)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
