"""The in-notebook grader, in the spirit of otter-grader's ``grader.check("q1")``.

    grader = polyglot_lab.Notebook("01_keras_prototype")
    grader.check("split")     # after the exercise's cell: pass/fail, expected, found, hint
    grader.hint("split")      # the exercise's next hint, one more each call
    grader.score()            # the module's score so far (public checks)

This is feedback while you work. Your grade comes from `make grade`, which runs your notebook
again in a fresh kernel and decides every verdict in its own process; hidden checks run only there.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

MARKS = {"passed": "✔", "failed": "✘", "skipped": "–"}


def _fmt(value: float) -> str:
    return f"{value:g}"


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
        from graders.devices import resolve_device
        from graders.grade import check_in_place

        if namespace is None:
            caller = inspect.currentframe()
            caller = caller.f_back if caller is not None else None
            assert caller is not None, "check() without a namespace needs the caller's frame (CPython)"
            namespace = caller.f_globals
        results = check_in_place(self.spec, exercise_id, namespace, self.workdir, resolve_device("auto"))
        self.results[exercise_id] = results
        hidden = [c for c in exercise.checks if c.hidden]
        print(self._format(exercise, results, hidden))

    @staticmethod
    def _format(exercise, results, hidden) -> str:
        score = sum(r.score for r in results)
        max_score = sum(r.counted_max for r in results)
        lines = [f"{exercise.id}: {_fmt(score)}/{_fmt(max_score)} points — {exercise.title}"]
        for r in results:
            points = "skipped" if r.status == "skipped" else f"{_fmt(r.score)}/{_fmt(r.max_score)}"
            lines.append(f"  {MARKS[r.status]} {r.title} ({points})")
            detail = [r.message] if r.status != "passed" else []
            if r.status == "failed":
                detail += [f"{k}: {v}" for k, v in (("expected", r.expected), ("found", r.found), ("hint", r.hint)) if v]
            lines += [f"      {d}" for d in detail]
        for check in hidden:
            lines.append(f"  • hidden check ({_fmt(check.points)} pt), graded when you submit")
        return "\n".join(lines)

    def hint(self, exercise_id: str) -> None:
        """The exercise's next hint from the catalogue, one more each call (as rustlings' `hint`): the first names the
        idea, the later ones come closer to the code."""
        hints = self.spec.exercise(exercise_id).hints
        if not hints:
            print(f"{exercise_id}: this exercise has no hints")
            return
        shown = min(self.hints_shown.get(exercise_id, 0), len(hints) - 1)
        self.hints_shown[exercise_id] = shown + 1
        more = (f" (call grader.hint({exercise_id!r}) again for the next)" if shown + 1 < len(hints)
                else " (the last one)")
        print(f"{exercise_id}, hint {shown + 1} of {len(hints)}: {hints[shown]}{more}")

    def score(self) -> None:
        """The module's score from the public checks run so far."""
        lines = [f"{self.spec.id}: {self.spec.title}"]
        total = maximum = 0.0
        for exercise in self.spec.exercises:
            public = sum(c.points for c in exercise.checks if not c.hidden)
            if self.grading() or exercise.id not in self.results:
                lines.append(f"  {exercise.id:<12} not checked yet ({_fmt(public)} pt)")
                maximum += public
                continue
            results = self.results[exercise.id]
            got, top = sum(r.score for r in results), sum(r.counted_max for r in results)
            total, maximum = total + got, maximum + top
            lines.append(f"  {exercise.id:<12} {_fmt(got)}/{_fmt(top)}")
        hidden = sum(c.points for e in self.spec.exercises for c in e.checks if c.hidden)
        hidden_note = f" (+ {_fmt(hidden)} pt of hidden checks at grading)" if hidden else ""
        lines.append(f"  {'total':<12} {_fmt(total)}/{_fmt(maximum)}{hidden_note}")
        print("\n".join(lines))
