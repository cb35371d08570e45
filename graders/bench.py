"""`make bench`: grade a class of N copies of one example submission four ways, in one run on one machine: serially
(JOBS=1: one Dask worker in the grading process), with JOBS=2 (an embedded Dask cluster of two worker processes), on
an external `dask scheduler` with two `dask worker`s (graders.cluster.ProcessCluster, on 127.0.0.1), and on that
cluster killed half-way and resumed. It reports the times as ratios to serial, the peak memory of kernels and of each
worker, Dask's own cost per task (scheduling and transfer, from `make grade`'s closing "Dask:" line) as a share of a
task's time, whether every run's gradebook and check verdicts equal the serial one's, and a projection on paper of a
class of 300 on 1, 4 and 16 such machines. Timings are ratios measured in one run on one machine."""
from __future__ import annotations

import json
import os
import re
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


def grade_cli(submissions: Path, reports: Path, modules: list[ModuleSpec], jobs: int, scheduler: str = "") -> list[str]:
    return [sys.executable, "-m", "graders", "grade", "--submissions", str(submissions), "--reports", str(reports),
            "--device", "cpu", "--modules", ",".join(m.id for m in modules), "--jobs", str(jobs),
            "--scheduler", scheduler]


def stored(reports: Path) -> list[dict]:
    path = reports / "grades.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(path, timeout=60) as db:
            return [json.loads(row[0]) for row in db.execute("SELECT result FROM results")]
    except sqlite3.OperationalError:  # the table is not there yet
        return []


DASK_LINE = re.compile(r"^Dask: (\d+) task\(s\), ([\d.]+) s each on a worker; scheduling and transfer (\d+) ms per "
                       r"task \(([\d.]+)% of a task\); largest task (.+), largest result (.+)$", re.MULTILINE)


def timed_run(submissions: Path, reports: Path, modules: list[ModuleSpec], jobs: int,
              scheduler: str = "") -> tuple[float, dict]:
    """(wall seconds, the run's closing "Dask:" figures where it printed them)."""
    started = time.monotonic()
    done = subprocess.run(grade_cli(submissions, reports, modules, jobs, scheduler), check=True, capture_output=True,
                          text=True)
    wall = time.monotonic() - started
    match = DASK_LINE.search(done.stdout)
    if not match:
        return wall, {}
    tasks, task_s, overhead_ms, share, payload, result = match.groups()
    return wall, {"tasks": int(tasks), "task_s": float(task_s), "overhead_ms_per_task": int(overhead_ms),
                  "overhead_share_pct": float(share), "largest_task": payload, "largest_result": result}


def killed_run(submissions: Path, reports: Path, modules: list[ModuleSpec], jobs: int, kill_after: int,
               scheduler: str = "") -> int:
    """Start a grading run and kill it (its whole process group) once `kill_after` results are stored."""
    process = subprocess.Popen(grade_cli(submissions, reports, modules, jobs, scheduler), stdout=subprocess.DEVNULL,
                               start_new_session=True)
    while process.poll() is None and len(stored(reports)) < kill_after:
        time.sleep(0.5)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return len(stored(reports))


def projection(per_task_s: float, speedup_per_machine: float, tasks_per_learner: int) -> dict[str, float]:
    """Hours for 300 learners on 1, 4 and 16 machines like this one, on paper: every task takes the measured
    per-task time, each machine grades `speedup_per_machine` tasks at once (measured: serial time over the
    two-worker time), and the scheduler's overhead is neglected (the bench measures it)."""
    work = 300 * tasks_per_learner * per_task_s
    return {f"{machines}_machine(s)": round(work / (machines * speedup_per_machine) / 3600, 2)
            for machines in (1, 4, 16)}


def bench(learner: str, copies: int, modules: list[ModuleSpec], out: Path) -> dict:
    from graders.cluster import ProcessCluster

    with tempfile.TemporaryDirectory(prefix="polyglot-bench-") as tmp_name:
        tmp = Path(tmp_name)
        make_class(tmp / "class", learner, copies, modules)
        serial_s, _ = timed_run(tmp / "class", tmp / "serial", modules, 1)
        local_s, local = timed_run(tmp / "class", tmp / "jobs2", modules, 2)
        total = copies * len(modules)
        with ProcessCluster(workers=2) as cluster:
            external_s, external = timed_run(tmp / "class", tmp / "cluster", modules, 1, cluster.address)
            kept = killed_run(tmp / "class", tmp / "resumed", modules, 1, kill_after=total // 2,
                              scheduler=cluster.address)
            resumed_s, _ = timed_run(tmp / "class", tmp / "resumed", modules, 1, cluster.address)
        runs = ("serial", "jobs2", "cluster", "resumed")
        gradebooks = {run: (tmp / run / "gradebook.csv").read_text() for run in runs}
        results = {run: stored(tmp / run) for run in runs}
    verdicts = {run: sorted((r["learner"], r["module"], c["check"], c["status"], c["score"])
                            for r in rs for c in r["checks"]) for run, rs in results.items()}
    figures = {
        "learner": learner, "copies": copies, "modules": [m.id for m in modules], "notebooks": total,
        "serial_s": round(serial_s, 1), "jobs2_s": round(local_s, 1), "cluster_2_workers_s": round(external_s, 1),
        "jobs2_over_serial": round(local_s / serial_s, 3), "cluster_over_serial": round(external_s / serial_s, 3),
        "killed_with_results_stored": kept, "resumed_s": round(resumed_s, 1),
        "gradebooks_identical": len(set(gradebooks.values())) == 1,
        "check_verdicts_identical": all(verdicts[run] == verdicts["serial"] for run in runs),
        "dask_jobs2": local, "dask_cluster": external,
        "kernel_peak_mb": round(max(r["peak_memory_mb"] for rs in results.values() for r in rs), 0),
        "worker_peak_mb": {run: round(max(r.get("worker_peak_mb", 0) for r in rs), 0) for run, rs in results.items()},
        "per_task_s": round(serial_s / total, 1),
        "projected_300_learners_h": projection(serial_s / total, serial_s / external_s, len(modules)),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    return figures
