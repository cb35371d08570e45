"""`make verify`: like rustlings' dev check and nbgrader's `validate --invert`.

First the course's static checks (graders/authoring.py: lint_course); then every master (solutions/) must score
full marks; every learner edition (notebooks/) must score zero, and be graded without crashing the grader.
"""
from __future__ import annotations

from polyglot_lab.catalogue import REPO, ModuleSpec
from graders.authoring import lint_course
from polyglot_lab.devices import resolve_device
from graders.grade import grade_module
from graders.results import PASSED, SKIPPED, ModuleResult, format_points


def verify_problems(master: ModuleResult, learner: ModuleResult) -> list[str]:
    problems = []
    for check in master.checks:
        if check.status not in (PASSED, SKIPPED):
            problems.append(f"master fails {check.exercise}.{check.check}: {check.message}")
    if master.problem or master.stopped:
        problems.append(f"master did not run through: {master.problem or master.stopped}")
    for check in learner.checks:
        if check.score > 0:
            problems.append(f"learner edition passes {check.exercise}.{check.check} unsolved")
    if learner.problem:
        problems.append(f"learner edition could not be graded: {learner.problem}")
    return problems


def verify(modules: list[ModuleSpec], device: str = "auto") -> int:
    lint = lint_course(REPO, modules=[spec.id for spec in modules])
    print(f"{'ok  ' if not lint else 'FAIL'} course lint: {len(lint)} problem(s)")
    for problem in lint:
        print(f"     {problem}")
    device = resolve_device(device)
    failures = int(bool(lint))
    for spec in modules:
        master = grade_module(REPO / "solutions" / spec.notebook_name, spec, "master", device)
        learner = grade_module(REPO / "notebooks" / spec.notebook_name, spec, "learner-edition", device)
        problems = verify_problems(master, learner)
        failures += bool(problems)
        print(f"{'ok  ' if not problems else 'FAIL'} {spec.id}: master {format_points(master.score)}/"
              f"{format_points(master.max_score)} ({master.execution_s:.0f} s), learner edition "
              f"{format_points(learner.score)}/{format_points(learner.max_score)} ({learner.execution_s:.0f} s)")
        for problem in problems:
            print(f"     {problem}")
    return 1 if failures else 0
