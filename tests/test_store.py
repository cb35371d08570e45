"""Nothing graded twice, nothing lost: results kept in SQLite by submission and grader version; a killed run
resumes; parallel grading (worker processes) gives the serial results."""
import pytest

import graders.grade as grade
import graders.store as store
from graders.store import ResultStore


def summary(results):
    return [(m.learner, c.exercise, c.check, c.status, c.score, c.message) for r in results for m in r.modules
            for c in m.checks]


def graded(classroom, toy_spec, db, **kwargs):
    return grade.grade_class(classroom, [toy_spec], "cpu", store=ResultStore(db), **kwargs)


def forbid_grading(monkeypatch):
    def fail(task):
        raise AssertionError(f"graded again: {task[2]}")
    monkeypatch.setattr(grade, "_grade_task", fail)


def test_unchanged_submissions_are_not_graded_twice(classroom, toy_spec, tmp_path, monkeypatch):
    first = graded(classroom, toy_spec, tmp_path / "grades.sqlite")
    assert [r.score for r in first] == [first[0].max_score, first[0].max_score - 2, 0]
    forbid_grading(monkeypatch)
    assert summary(graded(classroom, toy_spec, tmp_path / "grades.sqlite")) == summary(first)


def test_a_changed_submission_or_grader_is_graded_again(classroom, toy_spec, tmp_path, monkeypatch):
    db = tmp_path / "grades.sqlite"
    graded(classroom, toy_spec, db)
    fixed = classroom / "bob" / toy_spec.notebook_name
    fixed.write_text(fixed.read_text().replace("3 * x", "2 * x"))
    calls = []
    real = grade._grade_task
    monkeypatch.setattr(grade, "_grade_task", lambda task: calls.append(task[2]) or real(task))
    again = graded(classroom, toy_spec, db)
    assert calls == ["bob"] and again[1].score == again[0].score
    calls.clear()
    monkeypatch.setattr(store, "grader_version", lambda: "a-new-grader")
    graded(classroom, toy_spec, db)
    assert sorted(calls) == ["ann", "bob", "cat"]


def test_a_killed_run_resumes_where_it_stopped(classroom, toy_spec, tmp_path, monkeypatch):
    db = tmp_path / "grades.sqlite"

    def killed_after_first(result):
        raise KeyboardInterrupt  # make grade killed right after its first result was stored
    with pytest.raises(KeyboardInterrupt):
        graded(classroom, toy_spec, db, on_result=killed_after_first)
    calls = []
    real = grade._grade_task
    monkeypatch.setattr(grade, "_grade_task", lambda task: calls.append(task[2]) or real(task))
    results = graded(classroom, toy_spec, db)
    assert calls == ["bob", "cat"]  # ann's result survived the kill
    assert [r.learner for r in results] == ["ann", "bob", "cat"]


def test_parallel_grading_gives_the_serial_results(classroom, toy_spec, tmp_path):
    serial = grade.grade_class(classroom, [toy_spec], "cpu", jobs=1)
    parallel = grade.grade_class(classroom, [toy_spec], "cpu", jobs=2)
    assert summary(parallel) == summary(serial)


def test_seeds_follow_the_submission(classroom):
    a = store.content_hash(classroom / "ann" / "toy_module.ipynb")
    b = store.content_hash(classroom / "bob" / "toy_module.ipynb")
    assert store.derived_seed(a, "toy_module") == store.derived_seed(a, "toy_module")
    assert store.derived_seed(a, "toy_module") != store.derived_seed(b, "toy_module")
    assert store.content_hash(classroom / "cat" / "toy_module.ipynb") == store.MISSING


def test_fresh_grades_everything_again_and_still_keeps_it(classroom, toy_spec, tmp_path, monkeypatch):
    """FRESH=1 (`fresh`): nothing is reused, and every result is stored, so the reports keep it afterwards."""
    db = tmp_path / "grades.sqlite"
    graded(classroom, toy_spec, db)
    calls = []
    real = grade._grade_task
    monkeypatch.setattr(grade, "_grade_task", lambda task: calls.append(task[2]) or real(task))
    graded(classroom, toy_spec, db, fresh=True)
    assert calls == ["ann", "bob", "cat"]
    kept = ResultStore(db).latest()
    assert sorted(kept) == ["ann", "bob", "cat"] and all(set(m) == {toy_spec.id} for m in kept.values())
    assert all(r.graded_at > 0 and r.grader for m in kept.values() for r in m.values())


def test_a_notebook_gone_keeps_the_result_it_had(classroom, toy_spec, tmp_path, monkeypatch):
    db = tmp_path / "grades.sqlite"
    first = graded(classroom, toy_spec, db)
    (classroom / "ann" / toy_spec.notebook_name).unlink()
    forbid_grading(monkeypatch)
    again = graded(classroom, toy_spec, db)
    ann = again[0].modules[0]
    assert ann.score == first[0].score and ann.submitted and ann.reused == "missing"
    assert ResultStore(db).latest()["ann"][toy_spec.id].score == first[0].score  # the store did not lose it either


def test_a_near_match_is_graded_and_noted(classroom, toy_spec, tmp_path):
    (classroom / "ann" / toy_spec.notebook_name).rename(classroom / "ann" / "Toy_Module (1).ipynb")
    results = graded(classroom, toy_spec, tmp_path / "grades.sqlite")
    ann = results[0].modules[0]
    assert ann.score == ann.max_score and "graded Toy_Module (1).ipynb instead" in ann.note


def test_jobs_below_one_is_refused_before_any_grading(classroom, toy_spec, monkeypatch):
    forbid_grading(monkeypatch)
    with pytest.raises(ValueError, match="jobs must be 1 or more"):
        grade.grade_class(classroom, [toy_spec], "cpu", jobs=0)
