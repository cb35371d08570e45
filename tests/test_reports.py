"""Reports: one results model, rendered as gradebook.csv, results.json, feedback.html and junit.xml; files 0644,
formula-like names neutralised in gradebook.csv."""
import csv
import html
import json
import os
import stat
import xml.etree.ElementTree as ET

import pytest

from conftest import SOLVED_TOY
from graders.reports import csv_text, write_class_reports, write_learner_reports
from graders.results import FAILED, PASSED, CheckResult, LearnerResult, ModuleResult


def test_reports_from_a_graded_toy(grade_toy, tmp_path, toy_spec):
    import_cell, double, check, answer, artifact = SOLVED_TOY
    wrong = ("def double(x):\n    return x.astype('float32')", ["solution:double"])
    good = LearnerResult("ada", [grade_toy(SOLVED_TOY)])
    poor = LearnerResult("<bob>", [grade_toy([import_cell, wrong, answer, artifact])])
    reports = tmp_path / "reports"
    for learner in (good, poor):
        write_learner_reports(reports, learner)
    write_class_reports(reports, [good, poor], [toy_spec.id])

    rows = list(csv.DictReader((reports / "gradebook.csv").open()))
    assert list(rows[0]) == ["learner", "toy_module", "total", "max_total"]
    assert rows[0] == {"learner": "ada", "toy_module": "5", "total": "5", "max_total": "5"}
    assert rows[1]["total"] == "2"

    results = json.loads((reports / "<bob>" / "results.json").read_text())
    assert set(results) >= {"score", "execution_time", "output", "tests"}
    for test in results["tests"]:
        assert set(test) >= {"name", "output", "visibility"}
        assert set(test) >= {"score", "max_score", "status"} or test["output"].startswith("skipped: no device")
    hidden = [t for t in results["tests"] if t["visibility"] == "hidden"]
    assert hidden and all(t["output"].startswith("hidden check:") for t in hidden)
    assert all("dtype changed" not in t["output"] for t in results["tests"])  # hidden message stays hidden

    page = (reports / "<bob>" / "feedback.html").read_text()
    assert "&lt;bob&gt;" in page and "<bob>" not in page and "dtype changed" not in page
    assert "double(x) is not 2 * x." in page

    suites = ET.parse(reports / "junit.xml").getroot()
    assert suites.tag == "testsuites" and len(suites) == 2
    assert int(suites[1].get("failures")) >= 1 and int(suites[0].get("skipped")) == 1


# -- no notebook runs below: results are built by hand -----------------------------------------


def _learner(name: str, score: float = 3, max_score: float = 5) -> LearnerResult:
    checks = [CheckResult("m1", "ex", "a", "first", score, score, PASSED),
              CheckResult("m1", "ex", "b", "second", 0, max_score - score, FAILED, message="no")]
    return LearnerResult(name, [ModuleResult(name, "m1", "Module one", True, checks)])


def test_report_files_are_world_readable_whatever_the_umask(tmp_path):
    reports = tmp_path / "new" / "reports"  # two folders to make
    old = os.umask(0o077)  # mkstemp makes 0600 files; a strict umask must not leak into the reports either
    try:
        write_learner_reports(reports, _learner("ada"))
        write_class_reports(reports, [_learner("ada")], ["m1"])
    finally:
        os.umask(old)
    for path in ("gradebook.csv", "junit.xml", "ada/results.json", "ada/feedback.html"):
        assert stat.S_IMODE(os.stat(reports / path).st_mode) == 0o644, path
    for folder in (tmp_path / "new", reports, reports / "ada"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755, folder
    assert not [p for p in reports.rglob(".*.tmp")]  # no temporary file left behind


def test_an_existing_reports_folder_keeps_its_mode(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir(mode=0o700)
    os.chmod(reports, 0o700)
    write_class_reports(reports, [_learner("ada")], ["m1"])
    assert stat.S_IMODE(os.stat(reports).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(reports / "gradebook.csv").st_mode) == 0o644


FORMULAS = ["=1+1", "@SUM(A1)", "+cmd", "-2", "\tx", "\rx", "=cmd|' /C calc'!A0"]


@pytest.mark.parametrize("name", FORMULAS)
def test_gradebook_neutralises_formula_names(tmp_path, name):
    write_class_reports(tmp_path, [_learner(name, score=3, max_score=5)], ["m1"])
    with (tmp_path / "gradebook.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    assert rows[0]["learner"] == "'" + name
    assert rows[0] == {"learner": "'" + name, "m1": "3", "total": "3", "max_total": "5"}  # scores stay plain numbers
    assert float(rows[0]["m1"]) == 3 and float(rows[0]["max_total"]) == 5


def test_csv_text_leaves_ordinary_and_inner_characters_alone():
    for text in ("ada", "a-b", "x=1", "o'brien", "José", "1", "1.5", ""):
        assert csv_text(text) == text
    assert [csv_text(t) for t in ("=", "-", "@a")] == ["'=", "'-", "'@a"]


def test_gradebook_scores_are_numbers_for_every_name(tmp_path):
    learners = [_learner(name, score=2.5, max_score=4) for name in ["ada", *FORMULAS]]
    write_class_reports(tmp_path, learners, ["m1"])
    with (tmp_path / "gradebook.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["learner", "m1", "total", "max_total"]
    assert [row[0] for row in rows[1:]] == ["ada", *("'" + n for n in FORMULAS)]
    assert all(row[1:] == ["2.5", "2.5", "4"] for row in rows[1:])


def test_gradebook_rows_survive_line_breaks_in_names(tmp_path):
    names = ["a\rb", "c\nd", "e\r\nf", "plain"]
    write_class_reports(tmp_path, [_learner(n) for n in names], ["m1"])
    text = (tmp_path / "gradebook.csv").read_bytes().decode("utf-8")
    assert text.startswith("learner,m1,total,max_total\n") and text.endswith("plain,3,3,5\n")  # "\n" line ends kept
    with (tmp_path / "gradebook.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert [row[0] for row in rows[1:]] == names and all(len(row) == 4 for row in rows)


def test_feedback_states_each_exercise_as_the_catalogue_does(catalogue):
    from graders.reports import feedback_html

    split = catalogue["01_keras_prototype"].exercise("split")
    checks = [CheckResult("01_keras_prototype", "split", c.id, c.title, 0, c.points, FAILED, message="no")
              for c in split.checks]
    page = feedback_html(LearnerResult("ada", [ModuleResult("ada", "01_keras_prototype", "Keras", True, checks)]),
                         catalogue)
    row = html.escape(split.asks)
    assert page.count(row) == 1 and html.escape(split.checked) in page and html.escape(split.title) in page
    assert page.index(row) < page.index(html.escape(split.checks[0].title))


def test_a_skipped_check_is_neither_passed_nor_failed_on_gradescope():
    """Gradescope's specification: "status" is optional, "passed" or "failed", and a test without one whose score
    equals its max_score shows as passed. A check skipped for want of a GPU has no status and no points, and says
    why."""
    from graders.reports import gradescope_results
    from graders.results import NO_DEVICE, SKIPPED

    checks = [CheckResult("m1", "ex", "a", "first", 1, 1, PASSED),
              CheckResult("m1", "ex", "b", "second", 0, 2, FAILED, message="no"),
              CheckResult("m1", "gpu", "c", "on the GPU", 0, 1, SKIPPED, message=NO_DEVICE, device="cpu")]
    results = gradescope_results(LearnerResult("ada", [ModuleResult("ada", "m1", "Module one", True, checks)]))
    passed, failed, skipped = results["tests"]
    assert (passed["status"], passed["score"], passed["max_score"]) == ("passed", 1, 1)
    assert (failed["status"], failed["score"], failed["max_score"]) == ("failed", 0, 2)
    assert not {"status", "score", "max_score"} & set(skipped)
    assert skipped["output"].startswith("skipped: no device") and "counts neither for nor against" in skipped["output"]
    assert "skipped" in skipped["tags"] and results["score"] == 1


def test_gradebook_for_excel_has_a_byte_order_mark_and_the_plain_one_none(tmp_path):
    """Excel reads a .csv without a BOM in the legacy code page ("José" -> "JosÃ©"); scripts read the plain one."""
    write_class_reports(tmp_path, [_learner("José"), _learner("Zoë")], ["m1"])
    plain, excel = (tmp_path / "gradebook.csv").read_bytes(), (tmp_path / "gradebook-excel.csv").read_bytes()
    assert not plain.startswith(b"\xef\xbb\xbf") and excel.startswith(b"\xef\xbb\xbf")
    assert excel[3:] == plain and excel.decode("utf-8-sig") == plain.decode("utf-8")
    assert "José" in plain.decode("utf-8") and "JosÃ©" in plain.decode("cp1252")  # what Excel would show without it
    with (tmp_path / "gradebook.csv").open(newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle))[0] == "learner"  # no BOM glued to the first header
    assert stat.S_IMODE(os.stat(tmp_path / "gradebook-excel.csv").st_mode) == 0o644


def test_the_store_and_its_folders_are_readable_whatever_the_umask(tmp_path):
    from graders.store import ResultStore

    old = os.umask(0o077)
    try:
        store = ResultStore(tmp_path / "new" / "reports" / "grades.sqlite")
        store.put(_learner("ada").modules[0], "cpu", "abc")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o644
    for folder in (tmp_path / "new", tmp_path / "new" / "reports"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755, folder


def test_feedback_says_what_was_graded_this_run_what_was_kept_and_the_note():
    from graders.reports import feedback_html

    kept, now = _learner("ada").modules[0], _learner("ada").modules[0]
    kept.graded_at = 1_700_000_000.0
    now.module, now.this_run, now.note = "m2", True, "00_setup.ipynb was not found: graded 00_Setup (1).ipynb instead"
    page = feedback_html(LearnerResult("ada", [kept, now]), catalogue={})
    assert "Kept from an earlier run: graded on 2023-11-" in page and "Graded this run." in page
    assert html.escape(now.note) in page
