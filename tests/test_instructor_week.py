"""The instructor's week (issue 17): `make grade` one module at a time into the same reports, every input checked
before any work, near matches of a notebook's name, and a console log that reads in a file. Grading itself is
replaced by a stand-in (`fake_grading`): what is under test is what `make grade` does around it, in milliseconds."""
from __future__ import annotations

import csv
import json
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import graders.grade
from graders.cli import _cpus, main
from graders.results import FAILED, NO_DEVICE, PASSED, SKIPPED, CheckResult, ModuleResult

SETUP, KERAS = "00_setup", "01_keras_prototype"


@pytest.fixture
def graded(monkeypatch):
    """grade_module replaced: every check of a submitted notebook passes but those whose id the notebook's text
    names (so a test can make a learner lose points), GPU checks are skipped on the CPU. Records what it graded."""
    calls: list[tuple[str, str, str]] = []

    def fake_grading(path, spec, learner="learner", device="cpu", seed=None, limits=None, hide=(), **_):
        calls.append((learner, spec.id, Path(path).name if path else ""))
        text = Path(path).read_text(encoding="utf-8") if path else ""
        result = ModuleResult(learner=learner, module=spec.id, title=spec.title, submitted=path is not None,
                              problem=None if path else f"not submitted: {spec.notebook_name} was not found",
                              execution_s=12.0, grading_s=3.0, protection="sandbox: a stand-in for the test")
        for exercise in spec.exercises:
            for check in exercise.checks:
                if check.device == "gpu" and device != "cuda":
                    status, score, message = SKIPPED, 0.0, NO_DEVICE
                elif path is None or f"{exercise.id}.{check.id}" in text:
                    status, score, message = FAILED, 0.0, "no"
                else:
                    status, score, message = PASSED, check.points, "ok"
                result.checks.append(CheckResult(spec.id, exercise.id, check.id, check.title, score, check.points,
                                                 status, message=message, hidden=check.hidden, device=device))
        return result

    monkeypatch.setattr(graders.grade, "grade_module", fake_grading)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    return calls


def klass(root: Path, notebooks: dict[str, list[str]], text: str = "{}") -> Path:
    """A class folder: {learner: [notebook file names]}."""
    folder = root / "class"
    folder.mkdir()
    for learner, names in notebooks.items():
        (folder / learner).mkdir()
        for name in names:
            (folder / learner / name).write_text(text, encoding="utf-8")
    return folder


def grade(submissions: Path, reports: Path, *extra: str, modules: str = SETUP) -> int:
    return main(["grade", "--submissions", str(submissions), "--reports", str(reports), "--device", "cpu",
                 "--modules", modules, *extra])


def gradebook(reports: Path) -> list[list[str]]:
    with (reports / "gradebook.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def points(module: str) -> float:
    from polyglot_lab.catalogue import load_catalogue
    return sum(c.points for e in load_catalogue()[module].exercises for c in e.checks if c.device != "gpu")


# -- one module a week -------------------------------------------------------------------------------------------


def test_grading_one_module_a_week_keeps_every_module_in_every_report(tmp_path, graded, capsys):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb", f"{KERAS}.ipynb"], "ben": [f"{SETUP}.ipynb"]})
    reports = tmp_path / "reports"
    assert grade(submissions, reports, modules=SETUP) == 0                    # week 1
    assert gradebook(reports)[0] == ["learner", SETUP, "total", "max_total"]
    assert grade(submissions, reports, modules=KERAS) == 0                    # week 2: only the new module
    said = capsys.readouterr().out

    rows = gradebook(reports)
    assert rows[0] == ["learner", SETUP, KERAS, "total", "max_total"]       # last week's column is still there
    full = points(SETUP) + points(KERAS)
    assert rows[1] == ["ada", f"{points(SETUP):g}", f"{points(KERAS):g}", f"{full:g}", f"{full:g}"]
    assert rows[2][:3] == ["ben", f"{points(SETUP):g}", "0"]

    results = json.loads((reports / "ada" / "results.json").read_text(encoding="utf-8"))
    assert {t["tags"][0] for t in results["tests"]} == {SETUP, KERAS} and results["score"] == full
    this_run = {m["module"]: m["graded_this_run"] for m in results["extra_data"]["modules"]}
    assert this_run == {SETUP: False, KERAS: True}
    assert f"{SETUP}: {points(SETUP):g}/{points(SETUP):g} (kept from an earlier run: graded on " in results["output"]
    page = (reports / "ada" / "feedback.html").read_text(encoding="utf-8")
    assert page.index("Kept from an earlier run") < page.index("Graded this run")  # 00 first, as the catalogue
    suites = ET.parse(reports / "junit.xml").getroot()
    assert sorted(s.get("name") for s in suites) == ["ada.00_setup", "ada.01_keras_prototype", "ben.00_setup",
                                                     "ben.01_keras_prototype"]
    assert f"kept from earlier runs: {SETUP}" in said and f"{KERAS}*" in said  # the summary says which is which


def test_grading_last_weeks_module_again_keeps_the_later_ones(tmp_path, graded):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb", f"{KERAS}.ipynb"]})
    reports = tmp_path / "reports"
    assert grade(submissions, reports, modules=f"{SETUP},{KERAS}") == 0
    before = gradebook(reports)
    (submissions / "ada" / f"{SETUP}.ipynb").write_text("versions.all_five_correct", encoding="utf-8")  # resubmitted
    assert grade(submissions, reports, "--no-resume", modules=SETUP) == 0  # FRESH=1 too
    after = gradebook(reports)
    assert after[0] == before[0] and after[1][2] == before[1][2]          # 01 kept
    assert float(after[1][1]) < float(before[1][1])                       # 00 graded again, with its mistake


def test_a_notebook_no_longer_there_does_not_replace_its_result(tmp_path, graded, capsys):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb"], "ben": [f"{SETUP}.ipynb"]})
    reports = tmp_path / "reports"
    assert grade(submissions, reports) == 0
    (submissions / "ada" / f"{SETUP}.ipynb").unlink()
    graded.clear()
    assert grade(submissions, reports) == 0
    assert gradebook(reports)[1][:2] == ["ada", f"{points(SETUP):g}"]
    assert ("ada", SETUP, "") not in graded
    out = capsys.readouterr().out
    assert "ada/00_setup: 8/8 points, the notebook was not found, so the result graded on" in out, "\n".join(out.splitlines()[-12:])


def test_a_gradebook_the_store_does_not_back_stops_before_any_work(tmp_path, graded, capsys):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb"]})
    reports = tmp_path / "reports"
    reports.mkdir()
    old = f"learner,{SETUP},{KERAS},total,max_total\nada,8,10,18,18\n"
    (reports / "gradebook.csv").write_text(old, encoding="utf-8")          # the store was deleted
    assert grade(submissions, reports) == 2
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "gradebook.csv shows 2 score(s)" in errors[0] and "would lose them" in errors[0]
    assert graded == [] and (reports / "gradebook.csv").read_text(encoding="utf-8") == old
    assert sorted(p.name for p in reports.iterdir()) == ["gradebook.csv"]  # nothing made, not even a store


# -- errors before work, never after -------------------------------------------------------------------------------


def refused(capsys, code: int, *words: str) -> str:
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2, out
    assert len(errors) == 1, out
    assert all(word in errors[0] for word in words), errors[0]
    assert "Reports:" not in out and "Grading" not in out and "Traceback" not in out
    return errors[0]


def test_an_empty_submissions_folder_is_refused(tmp_path, graded, capsys):
    (tmp_path / "class").mkdir()
    code = grade(tmp_path / "class", tmp_path / "reports")
    refused(capsys, code, "holds no learner folders (nothing)", "<dir>/<learner>/<NN_slug>.ipynb")
    assert graded == [] and not (tmp_path / "reports").exists()


def test_one_learners_folder_given_as_the_class_is_refused(tmp_path, graded, capsys):
    ada = tmp_path / "ada"
    ada.mkdir()
    for name in (f"{SETUP}.ipynb", f"{KERAS}.ipynb", "notes.txt"):
        (ada / name).write_text("{}")
    (ada / "data").mkdir()  # a subfolder of the learner's: not a learner
    code = grade(ada, tmp_path / "reports")
    refused(capsys, code, "looks like one learner's folder", f"{SETUP}.ipynb", "(data)", "<dir>/<learner>/")
    assert graded == [] and not (tmp_path / "reports").exists()


def test_learner_folders_without_a_notebook_are_refused(tmp_path, graded, capsys):
    submissions = klass(tmp_path, {"ada": [], "ben": ["notes.txt"]})
    code = grade(submissions, tmp_path / "reports")
    refused(capsys, code, "none of the 2 learner folder(s)", "ada, ben", "holds a notebook")


@pytest.mark.parametrize("jobs", ["0", "-4", "9999"])
def test_jobs_out_of_range_is_refused(tmp_path, graded, capsys, jobs):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb"]})
    code = grade(submissions, tmp_path / "reports", "--jobs", jobs)
    refused(capsys, code, f"JOBS={jobs}: give 1 to {_cpus()} worker processes")
    assert graded == [] and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("fresh", [[], ["--no-resume"]])
def test_reports_that_is_a_file_is_refused(tmp_path, graded, capsys, fresh):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb"], "ben": [f"{SETUP}.ipynb"]})
    (tmp_path / "reports").write_text("not a folder")
    code = grade(submissions, tmp_path / "reports", *fresh)
    refused(capsys, code, f"REPORTS {tmp_path / 'reports'} is a file, not a folder")
    assert graded == [] and (tmp_path / "reports").read_text() == "not a folder"


@pytest.mark.parametrize("fresh", [[], ["--no-resume"]])
def test_reports_in_a_read_only_folder_is_refused(tmp_path, graded, capsys, fresh):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb"], "ben": [f"{SETUP}.ipynb"]})
    if os.geteuid() == 0:  # root writes through a folder's mode: use a read-only file system
        if not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and _writable("/sys"):
            pytest.skip("no read-only folder to try as root")
        reports = Path("/sys/polyglot-reports")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        os.chmod(locked, 0o555)
        reports = locked / "reports"
    code = grade(submissions, reports, *fresh)
    refused(capsys, code, f"REPORTS {reports}: cannot write in {reports.parent}")
    assert graded == []


def _writable(folder: str) -> bool:
    import tempfile
    try:
        handle, path = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(path)
    return True


def test_reports_inside_the_submissions_is_refused(tmp_path, graded, capsys):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb"]})
    code = grade(submissions, submissions / "reports")
    refused(capsys, code, "is inside SUBMISSIONS", "taken for a learner's folder")
    assert not (submissions / "reports").exists()


def test_a_file_that_is_not_a_store_is_refused(tmp_path, graded, capsys):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb"]})
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "grades.sqlite").write_text("not a database")
    code = grade(submissions, tmp_path / "reports")
    refused(capsys, code, "grades.sqlite: not a usable grades store")
    assert graded == []


def test_every_bad_input_is_named_at_once(tmp_path, graded, capsys):
    (tmp_path / "class").mkdir()
    (tmp_path / "reports").write_text("")
    code = grade(tmp_path / "class", tmp_path / "reports", "--jobs", "0", modules="no_such_module")
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 4, out
    assert [e.split()[1].split("=")[0].rstrip(":") for e in errors] == ["MODULES", "JOBS", "SUBMISSIONS", "REPORTS"]


# -- near matches and stray files ----------------------------------------------------------------------------------


def test_near_matches_are_taken_when_unambiguous_and_said(tmp_path, graded, capsys):
    submissions = klass(tmp_path, {"ada": ["00_Setup (1).ipynb"], "ben": ["00_setup (1).ipynb", "00_setup (2).ipynb"],
                                   "cy": [f"{SETUP}.ipynb", "00_setup.new.ipynb"], "dee": ["Copy of 00_setup.ipynb"]})
    (submissions / "README.md").write_text("the class")
    (submissions / "00_setup.ipynb").write_text("{}")
    reports = tmp_path / "reports"
    assert grade(submissions, reports) == 0
    out = capsys.readouterr().out
    assert sorted(graded) == [("ada", SETUP, "00_Setup (1).ipynb"), ("ben", SETUP, ""), ("cy", SETUP, "00_setup.ipynb"),
                              ("dee", SETUP, "Copy of 00_setup.ipynb")]
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert any("ignored 2 file(s) at the top of" in w and "00_setup.ipynb, README.md" in w
               and "belongs in its learner's folder" in w for w in warnings), warnings
    assert any(w.startswith("warning: ada/00_setup: 00_setup.ipynb was not found: graded 00_Setup (1).ipynb instead")
               for w in warnings), warnings
    assert any("ben/00_setup" in w and "00_setup (1).ipynb, 00_setup (2).ipynb" in w and "none was graded" in w
               for w in warnings), warnings
    assert not any("cy/" in w for w in warnings)  # the course's update beside the learner's work is no near match

    rows = {row[0]: row for row in gradebook(reports)[1:]}
    assert rows["ada"][1] == rows["dee"][1] == f"{points(SETUP):g}" and rows["ben"][1] == "0"
    page = (reports / "ada" / "feedback.html").read_text(encoding="utf-8")
    assert "graded 00_Setup (1).ipynb instead, the only notebook whose name is close to it" in page
    page = (reports / "ben" / "feedback.html").read_text(encoding="utf-8")
    assert "Rename that one 00_setup.ipynb" in page


def test_near_matching_rules():
    from graders.grade import notebook_key
    assert notebook_key("00_Setup (1).ipynb") == "00_setup_1"
    assert notebook_key("Copy of 00-setup.ipynb") == notebook_key("00 setup.ipynb") == "00_setup"
    assert notebook_key("00_setup.ipynb.ipynb") == "00_setup_ipynb"


def test_a_gradescope_upload_under_another_name_is_graded_with_a_note(tmp_path, catalogue):
    from graders.gradescope import find

    spec = catalogue[SETUP]
    (tmp_path / "my work.ipynb").write_text("{}")
    path, note = find(tmp_path, spec, [spec])
    assert path == tmp_path / "my work.ipynb" and "the only notebook uploaded" in note
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "00_Setup (1).ipynb").write_text("{}")
    path, note = find(tmp_path, spec, [spec])
    assert path == tmp_path / "sub" / "00_Setup (1).ipynb" and "sub/00_Setup (1).ipynb instead" in note
    (tmp_path / "sub" / "00_Setup (1).ipynb").unlink()
    (tmp_path / "other.ipynb").write_text("{}")
    assert find(tmp_path, spec, [spec]) == (None, None)  # two unrelated notebooks: nothing to guess from


# -- the log, in a file -------------------------------------------------------------------------------------------


def test_a_log_in_a_file_has_a_line_per_notebook_and_a_whole_summary(tmp_path, graded, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")  # what a file gets: no terminal width
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb", f"{KERAS}.ipynb"], "a-learner-with-a-long-name": [
        f"{SETUP}.ipynb"]})
    assert grade(submissions, tmp_path / "reports", modules=f"{SETUP},{KERAS}") == 0
    lines = capsys.readouterr().out.splitlines()
    graded_lines = [line for line in lines if line.startswith("[")]
    assert graded_lines == [
        "[1/4] a-learner-with-a-long-name/00_setup: 8/8 points, 15 s, sandbox",
        f"[2/4] a-learner-with-a-long-name/01_keras_prototype: 0/{points(KERAS):g} points, not submitted",
        "[3/4] ada/00_setup: 8/8 points, 15 s, sandbox",
        f"[4/4] ada/01_keras_prototype: {points(KERAS):g}/{points(KERAS):g} points, 15 s, sandbox"]
    header = next(line for line in lines if line.startswith("learner "))
    assert header.split() == ["learner", "00_setup*", "01_keras_prototype*", "total"]
    row = next(line for line in lines if line.startswith("a-learner-with-a-long-name "))
    assert row.split() == ["a-learner-with-a-long-name", "8/8", f"0/{points(KERAS):g}", "(missing)",
                           f"8/{points(SETUP) + points(KERAS):g}"]
    assert not any("…" in line or "━" in line for line in lines)  # nothing cut, no progress bar


def test_the_grading_process_drops_framework_noise(tmp_path):
    """tf.function's retracing warning (TensorFlow's Python logger), absl's, and a framework's Python warning, as the
    grader's own reference code triggers them: none reaches the console."""
    import subprocess
    import sys
    code = """
import logging, warnings
from graders.grade import quiet_frameworks
quiet_frameworks()
logging.basicConfig()
logging.getLogger("tensorflow").warning("5 out of the last 5 calls to <function f> triggered tf.function retracing")
logging.getLogger("absl").warning("absl noise")
exec(compile("import warnings\\nwarnings.warn('a keras deprecation')", "keras/src/layers.py", "exec"),
     {"__name__": "keras.src.layers"})
logging.getLogger("graders").warning("the grader's own words")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1],
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "WARNING:graders:the grader's own words", done.stderr


# -- files anyone may read ------------------------------------------------------------------------------------------


def test_every_file_and_folder_make_grade_writes_is_readable_whatever_the_umask(tmp_path, graded):
    submissions = klass(tmp_path, {"ada": [f"{SETUP}.ipynb"]})
    reports = tmp_path / "new" / "reports"
    old = os.umask(0o077)
    try:
        assert grade(submissions, reports) == 0
    finally:
        os.umask(old)
    made = [reports.parent, *reports.rglob("*"), reports]
    assert {p.relative_to(reports).as_posix() for p in reports.rglob("*")} == {
        "gradebook.csv", "gradebook-excel.csv", "junit.xml", "grades.sqlite", "ada", "ada/results.json",
        "ada/feedback.html"}
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path
