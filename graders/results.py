"""One results model: a CheckResult per (learner, module, exercise, check), grouped by module.

Every output (the in-notebook message, feedback.html, results.json, junit.xml, gradebook.csv)
is rendered from these objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from polyglot_lab.checking import FAILED, NO_DEVICE, PASSED, SKIPPED, CheckResult  # noqa: F401 - one results model

@dataclass
class ModuleResult:
    learner: str
    module: str
    title: str
    submitted: bool
    checks: list[CheckResult] = field(default_factory=list)
    stopped: str | None = None            # why execution ended early, if it did
    problem: str | None = None            # why the notebook could not be graded at all (unreadable, ...)
    execution_s: float = 0.0
    grading_s: float = 0.0
    seed: int = 0
    peak_memory_mb: float = 0.0           # the kernel's process tree at its largest
    worker_peak_mb: float = 0.0           # the grading process (checks, reference models) at its largest so far
    checker_starts: int = 0               # checker processes this module needed (1; more after a crash or timeout)
    protection: str = ""                  # the kernel's sandbox, or why there was none (graders/sandbox.py)
    note: str | None = None               # about the file graded: a near match taken for the module's notebook, ...
    graded_at: float = 0.0                # when it was graded (time.time(); set by the store)
    grader: str = ""                      # the grader version that graded it (graders.store.grader_version)
    this_run: bool = field(default=False, compare=False)  # graded (or found unchanged) by the run writing the reports
    reused: str = field(default="", compare=False)  # this run took it from the store: "unchanged" or "missing"
    cell_errors: dict = field(default_factory=dict)                 # cell index -> "ename: evalue"
    notebook: object = field(default=None, repr=False, compare=False)  # the executed notebook

    @property
    def score(self) -> float:
        return sum(c.score for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.counted_max for c in self.checks)

    def exercises(self) -> dict[str, list[CheckResult]]:
        grouped: dict[str, list[CheckResult]] = {}
        for check in self.checks:
            grouped.setdefault(check.exercise, []).append(check)
        return grouped


@dataclass
class LearnerResult:
    learner: str
    modules: list[ModuleResult]

    @property
    def score(self) -> float:
        return sum(m.score for m in self.modules)

    @property
    def max_score(self) -> float:
        return sum(m.max_score for m in self.modules)

    @property
    def execution_s(self) -> float:
        return sum(m.execution_s + m.grading_s for m in self.modules)


def format_points(value: float) -> str:
    return f"{value:g}"
