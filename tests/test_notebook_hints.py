"""The catalogue's hints reach the learner one at a time (grader.hint), as rustlings' `hint` does."""
from polyglot_lab.notebook import Notebook


def test_each_call_reveals_the_next_hint_and_the_last_one_stays(capsys, catalogue):
    hints = catalogue["01_keras_prototype"].exercise("split").hints
    assert len(hints) >= 2
    grader = Notebook("01_keras_prototype")
    for i, hint in enumerate(hints, start=1):
        grader.hint("split")
        said = capsys.readouterr().out
        assert f"hint {i} of {len(hints)}: {hint}" in said
        assert all(other not in said for other in hints if other != hint)
    grader.hint("split")
    again = capsys.readouterr().out
    assert f"hint {len(hints)} of {len(hints)}: {hints[-1]}" in again and "the last one" in again


# -- hints, catalogue and notebook text agree --------------------------------------------------------------------
import json  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402

from polyglot_lab.catalogue import REPO, load_catalogue  # noqa: E402

_CODE_STEP = re.compile(r"\w\s*=[^=]|\)\s*;")  # an assignment, a keyword argument, two statements: code, not an idea
_KEYWORD = re.compile(r"\b(\w+)=([\w.'\[\]{}:-]+)")


def _master(module_id: str) -> tuple[str, dict[str, str]]:
    """(the whole master's text, {exercise id: the source of its solution cells}) of a module's master notebook."""
    from polyglot_lab.progress import solution_sources

    path = REPO / "solutions" / f"{module_id}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = ["".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"] for cell in cells]
    return "\n".join(text), solution_sources(path)


def _quotes(text: str) -> str:
    return text.replace('"', "'")


_EXERCISES = [(m, e.id) for m, spec in load_catalogue().items() for e in spec.exercises]


def hint_problems(hints, text: str, solution: str) -> list[str]:
    """What is wrong with an exercise's hints against its master notebook (`text`: the whole master, `solution`:
    the exercise's solution cells): the first hint is code or the answer rather than the idea; a hint names an API
    the notebook never uses; a keyword argument in a hint has another value than in the solution."""
    problems = []
    solution = _quotes(solution)
    if not hints:
        return problems
    first = _quotes(hints[0])
    if _CODE_STEP.search(first):
        problems.append(f"the first hint is code, not the idea: {first}")
    if [line.strip() for line in solution.splitlines() if len(line.strip()) >= 12 and line.strip() in first]:
        problems.append(f"the first hint is a line of the solution: {first}")
    given = dict(_KEYWORD.findall(solution))
    for hint in map(_quotes, hints):
        names = {m.group(1) for m in re.finditer(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z]\w*_\w*)\b", hint)}
        unknown = sorted(n for n in names if n.split(".")[-1] not in text)
        if unknown:
            problems.append(f"the hint names {unknown}, which the notebook never uses: {hint}")
        for keyword, value in _KEYWORD.findall(hint):
            value = value.rstrip(".")
            if keyword in given and "..." not in value and value not in solution:
                problems.append(f"the hint says {keyword}={value} where the solution has {keyword}={given[keyword]}")
    return problems


@pytest.mark.parametrize(("module_id", "exercise_id"), _EXERCISES)
def test_hints_teach_before_they_tell_and_agree_with_the_notebook(module_id, exercise_id):
    exercise = load_catalogue()[module_id].exercise(exercise_id)
    text, solutions = _master(module_id)
    assert hint_problems(exercise.hints, text, solutions.get(exercise_id, "")) == [], f"{module_id}/{exercise_id}"


def test_the_hint_check_finds_an_answer_first_a_stale_api_and_a_contradiction():
    """Module 01's `save`: the notebook explains why the variance must be scaler.scale_ ** 2, not scaler.var_."""
    text, solutions = _master("01_keras_prototype")
    solution = solutions["save"]
    assert hint_problems(["Put the scaling inside the model."], text, solution) == []
    said = hint_problems(["keras.layers.Normalization(mean=scaler.mean_, variance=scaler.var_)",
                          "Call scaler.get_feature_names_out() first."], text, solution)
    assert len(said) == 3, said
    assert "code, not the idea" in said[0]
    assert any("variance=scaler.var_ where the solution has variance=scaler.scale_" in s for s in said)
    assert any("names ['scaler.get_feature_names_out']" in s for s in said)


# -- what grader.check shows -------------------------------------------------------------------------------------
def _results(spec, exercise_id: str, failing: str, hint: str):
    from polyglot_lab.checking import CheckResult

    exercise = spec.exercise(exercise_id)
    results = []
    for check in exercise.checks:
        if not check.in_notebook:
            continue
        failed = check.id == failing
        results.append(CheckResult(module=spec.id, exercise=exercise_id, check=check.id, title=check.title,
                                   score=0.0 if failed else check.points, max_score=check.points,
                                   status="failed" if failed else "passed",
                                   message="The scaler was fit on the test rows <b>" if failed else "passed",
                                   expected="statistics of X_train" if failed else None,
                                   found="statistics of X_test" if failed else None, hint=hint if failed else None))
    return results


def test_a_failure_names_the_problem_and_how_to_get_a_hint_without_the_answer(catalogue):
    """The report (HTML and its text twin) shows ✘, the problem, expected and found, and points to grader.hint;
    neither a catalogue hint nor the check's own fix is printed until asked for."""
    from polyglot_lab.feedback import CheckReport

    spec = catalogue["01_keras_prototype"]
    exercise = spec.exercise("split")
    fix = "scaler = StandardScaler().fit(X_train)"
    report = CheckReport(exercise, _results(spec, "split", "leak_free_scaling", fix), len(exercise.hints) + 1)
    for said in (report.text(), report._repr_html_()):
        assert "✘" in said and "✔" in said and "expected" in said and "found" in said
        assert 'grader.hint("split")' in said or "grader.hint(&quot;split&quot;)" in said
        assert fix not in said and not any(hint in said for hint in exercise.hints)
    html = report._repr_html_()
    assert "<b>" not in html and "&lt;b&gt;" in html      # learner data is escaped
    assert "<details open" in html                        # the failure is unfolded, passes fold
    text = report.text()
    assert text.splitlines()[0] == f"split: 3/5 points — {exercise.title}"
    passing = CheckReport(exercise, _results(spec, "split", "none", fix), len(exercise.hints))
    assert "grader.hint" not in passing.text() and "✘" not in passing.text()


def test_hints_come_one_at_a_time_the_failing_checks_fix_last(capsys, catalogue):
    """After a failed check, grader.hint gives the exercise's hints (the idea first), then the check's own fix."""
    spec = catalogue["01_keras_prototype"]
    grader = Notebook("01_keras_prototype")
    fix = "scaler = StandardScaler().fit(X_train)"
    grader.results["split"] = _results(spec, "split", "leak_free_scaling", fix)
    hints = spec.exercise("split").hints
    for _ in hints:
        grader.hint("split")
    assert fix not in capsys.readouterr().out
    grader.hint("split")
    last = capsys.readouterr().out
    assert f"hint {len(hints) + 1} of {len(hints) + 1}: {fix}" in last and "the last one" in last


def test_feedback_html_gives_an_exercises_hint_once_above_its_checks(catalogue):
    from graders.reports import feedback_html
    from graders.results import LearnerResult, ModuleResult

    spec = catalogue["01_keras_prototype"]
    checks = _results(spec, "split", "leak_free_scaling", None)
    for check in checks:  # two failures in one exercise: its hint still comes once
        if check.check == "float32_features":
            check.status, check.score = "failed", 0.0
    module = ModuleResult(learner="ada", module=spec.id, title=spec.title, submitted=True, checks=checks)
    page = feedback_html(LearnerResult(learner="ada", modules=[module]), catalogue)
    assert page.count(f"Hint: {spec.exercise('split').hints[0]}") == 1
