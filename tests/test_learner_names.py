"""Learner folder names: shown in Unicode NFC; two folders that collide under NFC are refused before grading."""
import csv
import json
import unicodedata
import xml.etree.ElementTree as ET

import pytest

import graders.grade
from graders.grade import discover_learners, grade_class
from graders.reports import write_class_reports, write_learner_reports
from graders.results import PASSED, CheckResult, LearnerResult, ModuleResult

NFC, NFD = "Jos\u00e9", "Jose\u0301"


def _class(tmp_path, *names):
    submissions = tmp_path / "class"
    for name in names:
        (submissions / name).mkdir(parents=True)
        (submissions / name / "00_setup.ipynb").write_text("")
    return submissions


def test_the_two_spellings_are_really_two_folders(tmp_path):
    assert NFC != NFD and unicodedata.normalize("NFC", NFD) == NFC
    submissions = _class(tmp_path, NFC, NFD)
    assert len(list(submissions.iterdir())) == 2  # the filesystem keeps both (it does not normalise)


def test_colliding_names_are_refused_naming_both(tmp_path):
    submissions = _class(tmp_path, NFC, NFD, "ada")
    with pytest.raises(ValueError, match="Unicode normalisation") as info:
        discover_learners(submissions)
    message = str(info.value)
    assert NFC in message and NFD in message and "rename one" in message
    assert "Jos\\xe9" in message and "Jose\\u0301" in message  # tells the two apart where a terminal cannot


def test_colliding_names_stop_grade_class_before_any_grading(tmp_path, monkeypatch, toy_spec):
    def must_not_grade(*args, **kwargs):
        raise AssertionError("graded although two learner folders collide")

    monkeypatch.setattr(graders.grade, "grade_module", must_not_grade)
    seen = []
    with pytest.raises(ValueError, match="same name after Unicode normalisation"):
        grade_class(_class(tmp_path, NFD, NFC), [toy_spec], "cpu", on_result=seen.append, on_learner=seen.append)
    assert seen == []


def test_the_cli_reports_a_collision_in_one_line(tmp_path, monkeypatch, capsys):
    from graders.cli import main

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # --device cpu sets it; restored after the test
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal must not wrap the error
    submissions, reports = _class(tmp_path, NFC, NFD), tmp_path / "reports"
    code = main(["grade", "--submissions", str(submissions), "--reports", str(reports), "--device", "cpu",
                 "--modules", "00_setup"])
    out = capsys.readouterr().out
    assert code == 2
    lines = [line for line in out.splitlines() if "error:" in line]
    assert len(lines) == 1 and NFC in lines[0] and NFD in lines[0] and "Traceback" not in out
    assert not reports.exists()  # nothing written, nothing graded


def test_markup_like_names_do_not_break_the_cli_error(tmp_path, monkeypatch, capsys):
    from graders.cli import main

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    submissions = _class(tmp_path, "[red]" + NFC, "[red]" + NFD)  # a folder name is text, not rich markup
    assert main(["grade", "--submissions", str(submissions), "--reports", str(tmp_path / "r"), "--device", "cpu",
                 "--modules", "00_setup"]) == 2
    assert "[red]" + NFC in capsys.readouterr().out


def test_an_nfd_folder_is_found_on_disk_and_shown_in_nfc(tmp_path):
    submissions = _class(tmp_path, NFD, "zoe")
    learners = discover_learners(submissions)
    assert learners == [NFD, "zoe"]  # the name on disk: it still finds the notebook
    assert (submissions / learners[0] / "00_setup.ipynb").exists()

    checks = [CheckResult("m1", "ex", "a", "first", 1, 1, PASSED)]
    learner = LearnerResult(NFD, [ModuleResult(NFD, "m1", "Module one", True, checks)])
    reports = tmp_path / "reports"
    write_learner_reports(reports, learner)
    write_class_reports(reports, [learner], ["m1"])

    with (reports / "gradebook.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["learner"] for row in rows] == [NFC]
    assert NFD not in (reports / "gradebook.csv").read_text(encoding="utf-8")
    assert sorted(p.name for p in reports.iterdir() if p.is_dir()) == [NFC]  # the learner's report folder, in NFC
    results = json.loads((reports / NFC / "results.json").read_text(encoding="utf-8"))
    assert results["output"].startswith(f"{NFC}: ")
    page = (reports / NFC / "feedback.html").read_text(encoding="utf-8")
    assert f"Feedback for {NFC}" in page and NFD not in page
    suites = ET.parse(reports / "junit.xml").getroot()
    assert suites[0].get("name") == f"{NFC}.m1" and suites[0][0].get("classname").startswith(f"{NFC}.")


def test_names_sort_by_their_nfc_form(tmp_path):
    # On disk "jose\u0301" sorts before "josf" (e < f); shown in NFC as "jos\u00e9" it sorts after (\u00e9 > f):
    # the order follows what the instructor reads.
    learners = discover_learners(_class(tmp_path, "zoe", "josf", "jose\u0301", "ada"))
    assert learners == ["ada", "josf", "jose\u0301", "zoe"]
