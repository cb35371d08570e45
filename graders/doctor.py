"""`make doctor`: what this machine runs (versions, devices, execution providers, threads, the kernels' protection),
each line with a verdict: ok, note (works, with a limit worth knowing) or problem (something the course needs)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys

OK, NOTE, PROBLEM = "ok", "note", "problem"


def _requirement(name: str) -> str | None:
    """The version range pyproject.toml (the installed distribution's metadata) states for `name`."""
    try:
        requires = importlib.metadata.requires("polyglot-lab") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    from packaging.requirements import Requirement

    for line in requires:
        requirement = Requirement(line)
        if requirement.name.lower().replace("_", "-") == name and not requirement.marker:
            return str(requirement.specifier)
    return None


def version_rows() -> list[tuple[str, str, str, str]]:
    """(what, value, verdict, why) for Python and each framework the course installs."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    rows = []
    python = platform.python_version()
    try:
        supported = SpecifierSet(importlib.metadata.metadata("polyglot-lab")["Requires-Python"] or "")
    except importlib.metadata.PackageNotFoundError:  # not installed: nothing stated to compare with
        supported = SpecifierSet("")
    rows.append(("python", python, OK if Version(python) in supported else PROBLEM,
                 "" if Version(python) in supported else f"the course supports Python {supported}"))
    for distribution in ("torch", "tensorflow", "keras", "onnx", "onnxruntime", "ai-edge-litert", "numpy",
                         "jupyterlab"):
        wanted = _requirement(distribution)
        try:
            installed = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            rows.append((distribution, "not installed", PROBLEM, f"`make setup` installs it ({wanted or 'any'})"))
            continue
        public = installed.split("+")[0]
        fits = wanted is None or Version(public) in SpecifierSet(wanted)
        rows.append((distribution, installed, OK if fits else PROBLEM,
                     "" if fits else f"pyproject.toml asks for {wanted}: run `make setup`"))
    return rows


def machine_rows() -> list[tuple[str, str, str, str]]:
    import torch

    from graders.checks.m00_setup import expected_devices
    from graders.sandbox import protection

    rows = [("cpu cores", str(os.cpu_count()), OK, "")]
    for framework, devices in expected_devices().items():
        rows.append((f"{framework} devices", ", ".join(devices), OK, ""))
    rows.append(("torch threads", str(torch.get_num_threads()), OK, ""))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows.append(("grading device (DEVICE=auto)", device, OK if device == "cuda" else NOTE,
                 "" if device == "cuda" else "no CUDA GPU: the GPU checks are skipped, and say so"))
    kernels = protection()
    rows.append(("kernel protection", kernels, NOTE if kernels.startswith("no sandbox") else OK,
                 "learner code is not isolated from the grading user's files (README, 'The sandbox')"
                 if kernels.startswith("no sandbox") else ""))
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    rows.append(("chromium (the browser test)", browser or "not found", OK if browser else NOTE,
                 "" if browser else "tests/test_browser.py skips without it: apt-get install chromium"))
    return rows


def doctor() -> int:
    """Print the table; exit 1 when any line is a problem."""
    from rich.console import Console
    from rich.table import Table

    rows = version_rows() + machine_rows()
    table = Table(title="Polyglot Lab doctor")
    for column in ("what", "value", "verdict", "why"):
        table.add_column(column, overflow="fold")
    colour = {OK: "green", NOTE: "yellow", PROBLEM: "red"}
    for what, value, verdict, why in rows:
        table.add_row(what, value, f"[{colour[verdict]}]{verdict}[/]", why)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    problems = [row for row in rows if row[2] == PROBLEM]
    console.print(f"{len(problems)} problem(s)" if problems else "Everything the course needs is here.")
    return 1 if problems else 0
