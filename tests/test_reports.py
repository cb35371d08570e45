"""Reports: one results model, rendered as gradebook.csv, results.json, feedback.html and junit.xml."""
import csv
import json
import xml.etree.ElementTree as ET

from conftest import SOLVED_TOY
from graders.reports import write_class_reports, write_learner_reports
from graders.results import LearnerResult


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
        assert set(test) >= {"name", "score", "max_score", "status", "output", "visibility"}
    hidden = [t for t in results["tests"] if t["visibility"] == "hidden"]
    assert hidden and all(t["output"].startswith("hidden check:") for t in hidden)
    assert all("dtype changed" not in t["output"] for t in results["tests"])  # hidden message stays hidden

    page = (reports / "<bob>" / "feedback.html").read_text()
    assert "&lt;bob&gt;" in page and "<bob>" not in page and "dtype changed" not in page
    assert "double(x) is not 2 * x." in page

    suites = ET.parse(reports / "junit.xml").getroot()
    assert suites.tag == "testsuites" and len(suites) == 2
    assert int(suites[1].get("failures")) >= 1 and int(suites[0].get("skipped")) == 1
