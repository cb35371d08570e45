"""`make doctor`: what this machine runs: versions, devices, execution providers, threads."""
from __future__ import annotations

import os
import platform


def doctor() -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from graders.checks.m00_setup import expected_devices, expected_versions

    table = Table(title="Polyglot Lab doctor")
    table.add_column("what")
    table.add_column("value")
    table.add_row("python", platform.python_version())
    table.add_row("cpu cores", str(os.cpu_count()))
    for name, version in expected_versions().items():
        table.add_row(name, version)
    for framework, devices in expected_devices().items():
        table.add_row(f"{framework} devices", ", ".join(devices))
    table.add_row("torch threads", str(torch.get_num_threads()))
    table.add_row("grading device (DEVICE=auto)", "cuda" if torch.cuda.is_available() else "cpu")
    Console().print(table)
    return 0
