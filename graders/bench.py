"""`make bench`: grade a class of N copies of one example submission with JOBS=1, then JOBS=2, then a JOBS=2 run
killed part-way and resumed; report the times, their ratio, the peak memory of kernels and grading processes, and
whether every run's gradebook equals the serial one. Timings are ratios measured in one run on one machine."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from polyglot_lab.catalogue import REPO, ModuleSpec


def make_class(folder: Path, learner: str, copies: int, modules: list[ModuleSpec]) -> None:
    for i in range(copies):
        copy = folder / f"{learner}-{i + 1:02d}"
        copy.mkdir(parents=True)
        for spec in modules:
            source = REPO / "examples" / "submissions" / learner / spec.notebook_name
            if source.exists():
                shutil.copyfile(source, copy / spec.notebook_name)


def grade_cli(submissions: Path, reports: Path, modules: list[ModuleSpec], jobs: int) -> list[str]:
    return [sys.executable, "-m", "graders", "grade", "--submissions", str(submissions), "--reports", str(reports),
            "--device", "cpu", "--modules", ",".join(m.id for m in modules), "--jobs", str(jobs)]


def stored(reports: Path) -> list[dict]:
    path = reports / "grades.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(path, timeout=60) as db:
            return [json.loads(row[0]) for row in db.execute("SELECT result FROM results")]
    except sqlite3.OperationalError:  # the table is not there yet
        return []


def timed_run(submissions: Path, reports: Path, modules: list[ModuleSpec], jobs: int) -> float:
    started = time.monotonic()
    subprocess.run(grade_cli(submissions, reports, modules, jobs), check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def killed_run(submissions: Path, reports: Path, modules: list[ModuleSpec], jobs: int, kill_after: int) -> int:
    """Start a grading run and kill it (its whole process group) once `kill_after` results are stored."""
    process = subprocess.Popen(grade_cli(submissions, reports, modules, jobs), stdout=subprocess.DEVNULL,
                               start_new_session=True)
    while process.poll() is None and len(stored(reports)) < kill_after:
        time.sleep(0.5)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return len(stored(reports))


def bench(learner: str, copies: int, modules: list[ModuleSpec], out: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="polyglot-bench-") as tmp_name:
        tmp = Path(tmp_name)
        make_class(tmp / "class", learner, copies, modules)
        serial_s = timed_run(tmp / "class", tmp / "serial", modules, 1)
        parallel_s = timed_run(tmp / "class", tmp / "parallel", modules, 2)
        total = copies * len(modules)
        kept = killed_run(tmp / "class", tmp / "resumed", modules, 2, kill_after=total // 2)
        resumed_s = timed_run(tmp / "class", tmp / "resumed", modules, 2)
        runs = ("serial", "parallel", "resumed")
        gradebooks = {run: (tmp / run / "gradebook.csv").read_text() for run in runs}
        results = {run: stored(tmp / run) for run in runs}
    verdicts = {run: sorted((r["learner"], r["module"], c["check"], c["status"], c["score"])
                            for r in rs for c in r["checks"]) for run, rs in results.items()}
    figures = {
        "learner": learner, "copies": copies, "modules": [m.id for m in modules], "notebooks": total,
        "serial_s": round(serial_s, 1), "parallel_s": round(parallel_s, 1),
        "parallel_over_serial": round(parallel_s / serial_s, 3),
        "killed_with_results_stored": kept, "resumed_s": round(resumed_s, 1),
        "gradebooks_identical": gradebooks["parallel"] == gradebooks["serial"] == gradebooks["resumed"],
        "check_verdicts_identical": verdicts["parallel"] == verdicts["serial"] == verdicts["resumed"],
        "kernel_peak_mb": round(max(r["peak_memory_mb"] for rs in results.values() for r in rs), 0),
        "worker_peak_mb": {run: round(max(r.get("worker_peak_mb", 0) for r in rs), 0) for run, rs in results.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    return figures
