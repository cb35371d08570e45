"""The in-notebook grader, in the spirit of otter-grader's ``grader.check("q1")``.

    grader = polyglot_lab.Notebook("01_keras_prototype")
    grader.check("split")     # after the exercise's cell: pass/fail, expected, found, hint
    grader.hint("split")      # the exercise's next hint, one more each call
    grader.score()            # the module's score so far (public checks)

This is feedback while you work, from the checks that ship with the course (polyglot_lab/checks/). Your grade
comes from the course's grader, which runs your submitted notebook again in a fresh kernel and decides every verdict
in its own process: the checks that need the grader's own data or reference code, and the hidden ones, run only there
("checked when you submit"). Nothing here imports the grader.
"""
from __future__ import annotations

import inspect
import os
import secrets
import shutil
from pathlib import Path

from polyglot_lab.feedback import CheckReport, fmt_points, show
from polyglot_lab import progress as _progress


def check_in_notebook(spec, exercise_id: str, namespace: dict, workdir: Path, device: str) -> list:
    """Probe the live namespace, then run the exercise's in-notebook checks: a CheckResult for each, in catalogue
    order. Checks that run only at submission are not run here (the catalogue says which: `runs`)."""
    from polyglot_lab.checking import CheckContext, load_registry, run_check
    from polyglot_lab.probe import probe_io
    from polyglot_lab.probe import run as run_probe

    exercise = spec.exercise(exercise_id)
    registry = load_registry(spec.notebook_checks_module)
    ctx = CheckContext(Path(workdir).resolve(), secrets.randbits(63), device)  # the checker runs elsewhere
    if exercise_id in registry.input_makers:
        io = probe_io(exercise_id, workdir)
        shutil.rmtree(io.inputs_dir, ignore_errors=True)
        io.write_inputs(**registry.input_makers[exercise_id](ctx))
    run_probe(spec.probes_module, exercise_id, namespace, workdir)
    try:
        return [run_check(registry, ctx, spec, exercise, check, device)
                for check in exercise.checks if check.in_notebook]
    finally:
        ctx.close()


class Notebook:
    def __init__(self, module_id: str, workdir: str | os.PathLike = "."):
        from polyglot_lab.catalogue import CATALOGUE_DIR, load_module

        self.spec = load_module(CATALOGUE_DIR / f"{module_id}.toml")
        self.workdir = Path(workdir)
        self.results: dict[str, list] = {}
        self.hints_shown: dict[str, int] = {}

    @staticmethod
    def grading() -> bool:
        return os.environ.get("POLYGLOT_GRADING") == "1"

    def check(self, exercise_id: str, namespace: dict | None = None) -> None:
        exercise = self.spec.exercise(exercise_id)
        if self.grading():
            print(f"{exercise_id}: checked by the autograder")
            return
        from polyglot_lab.devices import resolve_device

        if namespace is None:
            caller = inspect.currentframe()
            caller = caller.f_back if caller is not None else None
            assert caller is not None, "check() without a namespace needs the caller's frame (CPython)"
            namespace = caller.f_globals
        results = check_in_notebook(self.spec, exercise_id, namespace, self.workdir, resolve_device("auto"))
        self.results[exercise_id] = results
        _progress.record(self.workdir, self.spec.id, exercise_id, results)
        show(CheckReport(exercise, results, len(self._hints(exercise_id))))

    @staticmethod
    def _format(exercise, results) -> str:
        """The plain-text twin of what check() shows (consoles, logs, tests)."""
        return CheckReport(exercise, results, len(exercise.hints)).text()

    def _hints(self, exercise_id: str) -> list[str]:
        """The exercise's hints from the catalogue (the idea first, then closer to the code), then what the failing
        checks of the last grader.check suggest, the most specific of all."""
        hints = list(self.spec.exercise(exercise_id).hints)
        for result in self.results.get(exercise_id, []):
            if result.status == "failed" and result.hint and result.hint not in hints:
                hints.append(f"{result.hint} (for: {result.title})")
        return hints

    def hint(self, exercise_id: str) -> None:
        """The exercise's next hint, one more each call (as rustlings' `hint`)."""
        hints = self._hints(exercise_id)
        if not hints:
            print(f"{exercise_id}: this exercise has no hints")
            return
        shown = min(self.hints_shown.get(exercise_id, 0), len(hints) - 1)
        self.hints_shown[exercise_id] = shown + 1
        more = (f" (call grader.hint({exercise_id!r}) again for the next)" if shown + 1 < len(hints)
                else " (the last one)")
        print(f"{exercise_id}, hint {shown + 1} of {len(hints)}: {hints[shown]}{more}")

    def score(self, part: str | None = None) -> None:
        """The score from the public checks run so far: the module's, or one part's (a sitting of a long module,
        `grader.score("A")`)."""
        if part is None:
            exercises, heading = self.spec.exercises, f"{self.spec.id}: {self.spec.title}"
        else:
            chosen = self.spec.part(part)
            exercises = tuple(self.spec.exercise(e) for e in chosen.exercises)
            heading = f"{self.spec.id}, part {chosen.id}: {chosen.title}"
        lines = [heading]
        total = maximum = 0.0
        for exercise in exercises:
            public = sum(c.points for c in exercise.checks if c.in_notebook)
            if self.grading() or exercise.id not in self.results:
                lines.append(f"  {exercise.id:<12} not checked yet ({fmt_points(public)} pt)")
                maximum += public
                continue
            results = self.results[exercise.id]
            got, top = sum(r.score for r in results), sum(r.counted_max for r in results)
            total, maximum = total + got, maximum + top
            lines.append(f"  {exercise.id:<12} {fmt_points(got)}/{fmt_points(top)}")
        later = sum(e.points + e.hidden_removed for e in exercises) - sum(
            c.points for e in exercises for c in e.checks if c.in_notebook)
        hidden_note = f" (+ {fmt_points(later)} pt checked when you submit)" if later else ""
        lines.append(f"  {'total':<12} {fmt_points(total)}/{fmt_points(maximum)}{hidden_note}")
        print("\n".join(lines))
