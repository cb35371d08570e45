"""The grader's checks: the check core (polyglot_lab.checking), with the grader's own context, whose checker runs
in the sandbox, and what only the grader holds (the held-out digits).

A module's checks file (graders/checks/mNN_slug.py) holds one ``Registry``; the checks a learner can run in the
notebook sit in its `# <notebook>` blocks, which `make notebooks` writes to polyglot_lab/checks/ (the learner side).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from polyglot_lab.checking import (  # noqa: F401 - the core's names, where the grader's code looks for them
    LEARNER_TEXT, PROBE_OUTPUT_BYTES, CheckFailed, CheckSkipped, ExecutionFacts, Outputs, Registry,
    UndeclaredArtifact, describe_array, load_registry, run_check,
)
from polyglot_lab.checking import CheckContext as _CoreContext

# Tests set this to a factory of one checker shared by many contexts (starting one per test would cost seconds).
shared_checker: Callable[[], object] | None = None


class CheckContext(_CoreContext):
    """The grader's context: its checker is the sandboxed one (graders/checker.py), or a test session's shared one."""

    def new_checker(self) -> tuple[object, bool]:
        if shared_checker is not None:
            return shared_checker(), False
        from graders.checker import Checker
        return Checker([self.workdir], self.device), True

    def sample_digits(self) -> tuple[np.ndarray, np.ndarray]:
        from graders.data import holdout_digits
        return holdout_digits()


def check_holdout_accuracy(predict: Callable[[np.ndarray], np.ndarray], bar: float, hint: str) -> str:
    """Score a saved model, through predict(raw pixels) -> class scores, on the digits only the grader holds."""
    from graders.data import holdout_digits

    X, y = holdout_digits()
    accuracy = float((np.asarray(predict(X)).argmax(1) == y).mean())
    if accuracy < bar:
        raise CheckFailed(f"Accuracy on the grader's held-out digits is under the bar: {accuracy:.3f} < {bar}.",
                          expected=f">= {bar}", found=f"{accuracy:.3f}", hint=hint)
    return f"held-out accuracy {accuracy:.3f} (bar {bar})"
