"""Execute a submission in a fresh kernel, in its own working directory, with probes placed by tags.

Cells run one by one (nbclient) with a per-cell and a total time limit. After the last cell
tagged ``check:<id>`` (else ``solution:<id>``) the exercise's probe runs; exercises whose cells
were deleted are probed at the end. An error costs the exercises that depend on it, not the run;
a dead kernel stops the run and costs the exercises not yet probed.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from graders.checks import ExecutionFacts
from graders.limits import Limits, Watchdog, kill_user
from graders.sandbox import PRIVATE_TMP, Sandbox, availability, clean_env, kernel_manager, protection, user_of
from polyglot_lab.catalogue import ModuleSpec

logging.getLogger("traitlets").setLevel(logging.CRITICAL)  # nbclient logs every timeout at ERROR
# Deprecation notices from the frameworks the checks use are for their developers, not for the instructor's screen.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|copyreg|keras|tensorflow)")

TIMEOUT_ENAME = "CellTimeoutError"


@dataclass
class ExecutionReport:
    notebook: nbformat.NotebookNode           # the executed notebook, outputs included
    facts: dict[str, ExecutionFacts]          # per exercise: its cell's error, or why it was not reached
    cell_errors: dict[int, str] = field(default_factory=dict)
    stopped: str | None = None                # why the run ended early, if it did
    duration_s: float = 0.0
    peak_memory_mb: float = 0.0               # resident size of the kernel's process tree, at its highest
    protection: str = ""                      # the sandbox, or why there was none


def exercise_tags(cell) -> list[tuple[str, str]]:
    """[(kind, exercise_id)] for tags like 'solution:split' or 'check:split'."""
    pairs = []
    for tag in cell.get("metadata", {}).get("tags", []):
        kind, _, exercise_id = str(tag).partition(":")
        if kind in ("solution", "check") and exercise_id:
            pairs.append((kind, exercise_id))
    return pairs


def probe_anchors(nb, spec: ModuleSpec) -> dict[str, int | None]:
    """Index of the cell after which each exercise is probed (None: at the end of the notebook)."""
    last = {kind: {} for kind in ("solution", "check")}
    for index, cell in enumerate(nb.cells):
        for kind, exercise_id in exercise_tags(cell):
            last[kind][exercise_id] = index
    return {e.id: last["check"].get(e.id, last["solution"].get(e.id)) for e in spec.exercises}


def probe_source(spec: ModuleSpec, exercise_id: str) -> str:
    return (f"__import__('polyglot_lab.probe', fromlist=['run']).run("
            f"{spec.probes_module!r}, {exercise_id!r}, globals())")


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def first_line_of(message, limit: int = 300) -> str:
    """An error message's first line, without terminal colours (exporters colour theirs)."""
    text = ANSI_ESCAPE.sub("", str(message or "")).strip()
    return (text.splitlines() or [""])[0][:limit]


def kernel_env(device: str) -> dict[str, str]:
    env = clean_env()
    env["POLYGLOT_GRADING"] = "1"           # check() in the notebook only says "graded by the autograder"
    env["POLYGLOT_DEVICE"] = device
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # TensorFlow would take all GPU memory from torch
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""    # DEVICE=cpu hides GPUs from torch and TensorFlow alike
    return env


class CappedClient(NotebookClient):
    """nbclient with a cap on each cell's captured output: 100 MB of prints must not fill the grader's memory."""

    output_cap_bytes = int(Limits.output_mb * 2**20)

    def output(self, outs, msg, display_id, cell_index):
        sizes = self.__dict__.setdefault("_output_sizes", {})
        sizes[cell_index] = sizes.get(cell_index, 0) + len(json.dumps(msg.get("content", {}), default=str))
        if sizes[cell_index] <= self.output_cap_bytes:
            return super().output(outs, msg, display_id, cell_index)
        truncated = self.__dict__.setdefault("_truncated", set())
        if cell_index not in truncated:
            truncated.add(cell_index)
            outs.append(nbformat.v4.new_output("stream", name="stderr", text=(
                f"[output truncated: this cell printed more than {self.output_cap_bytes / 2**20:g} MB]\n")))
        return None


def execute_submission(nb, spec: ModuleSpec, workdir: Path, device: str = "cpu",
                       cell_timeout: float | None = None, total_timeout: float | None = None,
                       limits: Limits | None = None, hide: tuple[Path, ...] = ()) -> ExecutionReport:
    """Run the notebook in a kernel started in workdir (sandboxed where graders/sandbox.py can; `hide`: more
    folders the kernel must not see) and probe each exercise after its cells."""
    cell_timeout = cell_timeout or spec.cell_timeout
    total_timeout = total_timeout or spec.total_timeout
    anchors = probe_anchors(nb, spec)
    probes_after: dict[int | None, list[str]] = {}
    for exercise in spec.exercises:  # catalogue order keeps end-of-notebook probes predictable
        probes_after.setdefault(anchors[exercise.id], []).append(exercise.id)

    facts = {e.id: ExecutionFacts() for e in spec.exercises}
    report = ExecutionReport(notebook=nb, facts=facts, protection=protection())
    errors: dict[int, str] = report.cell_errors
    last_error: list[dict] = []

    def on_cell_error(cell, cell_index, execute_reply):
        content = execute_reply["content"]
        last_error.append(content)

    limits = limits or Limits()
    ipc_dir = Path(tempfile.mkdtemp(prefix="polyglot-kernel-"))
    sandbox = Sandbox(Path(workdir), ipc_dir, tuple(hide)) if availability() is None else None
    client = CappedClient(
        nb, km=kernel_manager(ipc_dir, sandbox), timeout=int(cell_timeout), kernel_name="python3", allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": f"the cell ran longer than {cell_timeout:.0f} s",
                          "traceback": []},
        resources={"metadata": {"path": str(workdir)}}, on_cell_error=on_cell_error,
        record_timing=False, shell_timeout_interval=1,
    )
    client.output_cap_bytes = int(limits.output_mb * 2**20)
    client.owns_km = True  # the manager is ours to give, but nbclient must still shut its kernel down
    started = time.monotonic()
    pending = {e.id for e in spec.exercises}

    current: list[str] = [""]

    def run(cell, index) -> str | None:
        """Execute one cell; returns 'ename: evalue' when it failed."""
        remaining = total_timeout - (time.monotonic() - started)
        if remaining <= 0:
            raise _Stop(f"the total time limit of {total_timeout:.0f} s was reached")
        client.timeout = max(1, int(min(cell_timeout, remaining)))
        last_error.clear()
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "")[:80]
        current[0] = f"cell {index + 1} (`{first_line}`)" if index != scratch else "the check of an exercise"
        client.execute_cell(cell, index, store_history=index != scratch)
        if not last_error:
            return None
        content = last_error[-1]
        if content.get("ename") == TIMEOUT_ENAME:
            if time.monotonic() - started >= total_timeout:
                raise _Stop(f"the total time limit of {total_timeout:.0f} s was reached")
            _ensure_responsive(client, nb.cells[scratch], scratch, last_error)
        return f"{content.get('ename')}: {first_line_of(content.get('evalue'))}"

    # Probes run in a scratch cell appended for the run (nbclient routes outputs by cell index),
    # so nothing they print lands in the learner's cells; it is removed afterwards.
    nb.cells.append(nbformat.v4.new_code_cell(""))
    scratch = len(nb.cells) - 1

    def run_probes(after: int | None):
        for exercise_id in probes_after.get(after, []):
            nb.cells[scratch].source = probe_source(spec, exercise_id)
            error = run(nb.cells[scratch], scratch)
            if error and error.startswith(TIMEOUT_ENAME):
                facts[exercise_id].not_reached = f"checking it ran past the {cell_timeout:.0f} s limit"
            pending.discard(exercise_id)

    watchdog: Watchdog | None = None
    try:
        # The kernel's own stderr (ZMQ/TF start-up chatter) is not the learner's output: that comes over iopub.
        with client.setup_kernel(env=kernel_env(device), cwd=str(workdir), stderr=subprocess.DEVNULL):
            watchdog = Watchdog(client.km.provisioner.pid, limits, folders=(workdir,),
                                private=PRIVATE_TMP if sandbox is not None else ())
            watchdog.start()
            try:
                for index, cell in enumerate(nb.cells[:scratch]):
                    if cell.cell_type == "code":
                        error = run(cell, index)
                        if error:
                            errors[index] = error
                            for kind, exercise_id in exercise_tags(cell):
                                if kind == "solution" and exercise_id in facts:
                                    facts[exercise_id].cell_error = error
                    run_probes(index)
                run_probes(None)
            except _Stop as stop:
                report.stopped = str(stop)
    except DeadKernelError:
        report.stopped = f"the kernel died while running {current[0]} (the notebook crashed or exited)"
    except Exception as exc:  # noqa: BLE001 - a kernel that cannot even start costs this notebook, not the class
        report.stopped = report.stopped or f"the kernel failed: {type(exc).__name__}: {exc}"
    finally:
        if watchdog is not None:
            watchdog.stop()
            watchdog.kill_all()  # whatever the notebook started (servers, forks) goes with it
            if sandbox is not None:  # and whatever left the tree (double forks, setsid) but kept the sandbox's user
                kill_user(user_of(watchdog.pid))
            report.peak_memory_mb = watchdog.peak_mb
            if watchdog.reason:
                report.stopped = f"the kernel was stopped while running {current[0]}: {watchdog.reason}"
    shutil.rmtree(ipc_dir, ignore_errors=True)
    del nb.cells[scratch]
    for exercise_id in pending:
        facts[exercise_id].not_reached = facts[exercise_id].not_reached or report.stopped or "it was not reached"
    report.duration_s = time.monotonic() - started
    return report


class _Stop(Exception):
    """Stop executing this notebook (time limit, unresponsive kernel)."""


def _ensure_responsive(client: NotebookClient, scratch_cell, scratch: int, last_error: list) -> None:
    """After a timeout the kernel was interrupted; if it still does not answer, give up on it."""
    client.timeout = 15
    last_error.clear()
    scratch_cell.source = "pass"
    client.execute_cell(scratch_cell, scratch, store_history=False)
    if any(e.get("ename") == TIMEOUT_ENAME for e in last_error):
        raise _Stop("a cell kept running after it was interrupted, so the kernel was stopped")
