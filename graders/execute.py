"""Execute a submission in a fresh kernel, in its own working directory, with probes placed by tags.

Cells run one by one (nbclient) with a per-cell and a total time limit. After the last cell
tagged ``check:<id>`` (else ``solution:<id>``) the exercise's probe runs; exercises whose cells
were deleted are probed at the end. An error costs the exercises that depend on it, not the run;
a dead kernel stops the run and costs the exercises not yet probed.

`execute_submission` is the entry point. An `Execution` is one run, in named steps: set up (the client, the
scratch cell the probes run in, the facts, the clock), `run` (start the kernel and its watchdog, `run_notebook`:
each cell with `run_cell`, then the probes placed after it with `probe`), `stop_watchdog` (kill whatever the
notebook left running) and `finish` (the report).
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
    last: dict[str, dict[str, int]] = {kind: {} for kind in ("solution", "check")}
    for index, cell in enumerate(nb.cells):
        for kind, exercise_id in exercise_tags(cell):
            last[kind][exercise_id] = index
    return {e.id: last["check"].get(e.id, last["solution"].get(e.id)) for e in spec.exercises}


def probe_schedule(nb, spec: ModuleSpec) -> dict[int | None, list[str]]:
    """The exercises probed after each cell index (None: at the end), in catalogue order so that end-of-notebook
    probes run in a predictable order."""
    anchors = probe_anchors(nb, spec)
    schedule: dict[int | None, list[str]] = {}
    for exercise in spec.exercises:
        schedule.setdefault(anchors[exercise.id], []).append(exercise.id)
    return schedule


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
    execution = Execution(nb, spec, workdir, device, cell_timeout, total_timeout, limits, hide)
    execution.run()
    return execution.finish()


class _Stop(Exception):
    """Stop executing this notebook (time limit, unresponsive kernel)."""


class Execution:
    """One run of a submission: the kernel's client, the scratch cell the probes run in, the facts, the clock."""

    def __init__(self, nb, spec: ModuleSpec, workdir: Path, device: str, cell_timeout: float | None,
                 total_timeout: float | None, limits: Limits | None, hide: tuple[Path, ...]):
        self.nb, self.spec, self.workdir, self.device = nb, spec, workdir, device
        self.cell_timeout = cell_timeout or spec.cell_timeout
        self.total_timeout = total_timeout or spec.total_timeout
        self.probes_after = probe_schedule(nb, spec)
        self.facts = {e.id: ExecutionFacts() for e in spec.exercises}
        self.report = ExecutionReport(notebook=nb, facts=self.facts, protection=protection())
        self.replies: list[dict] = []  # the error replies of the cell being run
        self.limits = limits or Limits()
        self.ipc_dir = Path(tempfile.mkdtemp(prefix="polyglot-kernel-"))
        self.sandbox = Sandbox(Path(workdir), self.ipc_dir, tuple(hide)) if availability() is None else None
        self.client = self.make_client()
        self.started = time.monotonic()
        self.pending = {e.id for e in spec.exercises}  # not probed yet
        self.current = ""  # what the kernel is running, for the messages
        self.watchdog: Watchdog | None = None
        self.scratch = self.add_scratch_cell()

    def make_client(self) -> CappedClient:
        """nbclient on a kernel manager of ours (sandboxed where it can be), errors and timeouts recorded, not raised."""
        client = CappedClient(
            self.nb, km=kernel_manager(self.ipc_dir, self.sandbox), timeout=int(self.cell_timeout),
            kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
            error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": f"the cell ran longer than {self.cell_timeout:.0f} s",
                              "traceback": []},
            resources={"metadata": {"path": str(self.workdir)}}, on_cell_error=self.on_cell_error,
            record_timing=False, shell_timeout_interval=1,
        )
        client.output_cap_bytes = int(self.limits.output_mb * 2**20)
        client.owns_km = True  # the manager is ours to give, but nbclient must still shut its kernel down
        return client

    def on_cell_error(self, cell, cell_index, execute_reply) -> None:
        self.replies.append(execute_reply["content"])

    def add_scratch_cell(self) -> int:
        """Probes run in a scratch cell appended for the run (nbclient routes outputs by cell index), so nothing they
        print lands in the learner's cells; `finish` removes it."""
        self.nb.cells.append(nbformat.v4.new_code_cell(""))
        return len(self.nb.cells) - 1

    def run(self) -> None:
        """Start the kernel in the working folder, watched, and run the notebook; a crash or a limit ends the run."""
        try:
            # The kernel's own stderr (ZMQ/TF start-up chatter) is not the learner's output: that comes over iopub.
            with self.client.setup_kernel(env=kernel_env(self.device), cwd=str(self.workdir),
                                          stderr=subprocess.DEVNULL):
                self.start_watchdog()
                self.run_notebook()
        except DeadKernelError:
            self.report.stopped = f"the kernel died while running {self.current} (the notebook crashed or exited)"
        except Exception as exc:  # noqa: BLE001 - a kernel that cannot even start costs this notebook, not the class
            self.report.stopped = self.report.stopped or f"the kernel failed: {type(exc).__name__}: {exc}"
        finally:
            self.stop_watchdog()

    def start_watchdog(self) -> None:
        kernel_pid = self.client.km.provisioner.pid  # type: ignore[union-attr]  # set once setup_kernel has started it
        self.watchdog = Watchdog(kernel_pid, self.limits, folders=(self.workdir,),
                                 private=PRIVATE_TMP if self.sandbox is not None else ())
        self.watchdog.start()

    def run_notebook(self) -> None:
        """Each code cell, then the probes placed after it; then those placed at the end. A time limit or a kernel
        that no longer answers stops the run."""
        try:
            for index, cell in enumerate(self.nb.cells[:self.scratch]):
                if cell.cell_type == "code":
                    self.run_learner_cell(cell, index)
                self.probe(after=index)
            self.probe(after=None)
        except _Stop as stop:
            self.report.stopped = str(stop)

    def run_learner_cell(self, cell, index: int) -> None:
        """Run one of the learner's cells; an error is recorded for the cell and for the exercises it solves."""
        error = self.run_cell(cell, index)
        if error:
            self.report.cell_errors[index] = error
            for kind, exercise_id in exercise_tags(cell):
                if kind == "solution" and exercise_id in self.facts:
                    self.facts[exercise_id].cell_error = error

    def probe(self, after: int | None) -> None:
        """Run the probes of the exercises placed after cell `after` (None: at the end), in the scratch cell."""
        scratch_cell = self.nb.cells[self.scratch]
        for exercise_id in self.probes_after.get(after, []):
            scratch_cell.source = probe_source(self.spec, exercise_id)
            error = self.run_cell(scratch_cell, self.scratch)
            if error and error.startswith(TIMEOUT_ENAME):
                self.facts[exercise_id].not_reached = f"checking it ran past the {self.cell_timeout:.0f} s limit"
            self.pending.discard(exercise_id)

    def run_cell(self, cell, index: int) -> str | None:
        """Execute one cell within what is left of the time limits; returns 'ename: evalue' when it failed."""
        remaining = self.total_timeout - (time.monotonic() - self.started)
        if remaining <= 0:
            raise _Stop(self.out_of_time())
        self.client.timeout = max(1, int(min(self.cell_timeout, remaining)))
        self.replies.clear()
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "")[:80]
        self.current = f"cell {index + 1} (`{first_line}`)" if index != self.scratch else "the check of an exercise"
        self.client.execute_cell(cell, index, store_history=index != self.scratch)
        if not self.replies:
            return None
        content = self.replies[-1]
        if content.get("ename") == TIMEOUT_ENAME:
            if time.monotonic() - self.started >= self.total_timeout:
                raise _Stop(self.out_of_time())
            self.ensure_responsive()
        return f"{content.get('ename')}: {first_line_of(content.get('evalue'))}"

    def out_of_time(self) -> str:
        return f"the total time limit of {self.total_timeout:.0f} s was reached"

    def ensure_responsive(self) -> None:
        """After a timeout the kernel was interrupted; if it still does not answer, give up on it."""
        self.client.timeout = 15
        self.replies.clear()
        scratch_cell = self.nb.cells[self.scratch]
        scratch_cell.source = "pass"
        self.client.execute_cell(scratch_cell, self.scratch, store_history=False)
        if any(e.get("ename") == TIMEOUT_ENAME for e in self.replies):
            raise _Stop("a cell kept running after it was interrupted, so the kernel was stopped")

    def stop_watchdog(self) -> None:
        """Stop watching, kill whatever the notebook started (servers, forks), keep the peak and why it killed."""
        if self.watchdog is None:
            return
        self.watchdog.stop()
        self.watchdog.kill_all()
        if self.sandbox is not None:  # and whatever left the tree (double forks, setsid) but kept the sandbox's user
            kill_user(user_of(self.watchdog.pid))
        self.report.peak_memory_mb = self.watchdog.peak_mb
        if self.watchdog.reason:
            self.report.stopped = f"the kernel was stopped while running {self.current}: {self.watchdog.reason}"

    def finish(self) -> ExecutionReport:
        """Remove the scratch cell; the exercises never probed say why; the report, timed."""
        shutil.rmtree(self.ipc_dir, ignore_errors=True)
        del self.nb.cells[self.scratch]
        for exercise_id in self.pending:
            facts = self.facts[exercise_id]
            facts.not_reached = facts.not_reached or self.report.stopped or "it was not reached"
        self.report.duration_s = time.monotonic() - self.started
        return self.report
