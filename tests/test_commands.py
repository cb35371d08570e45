"""`make help` lists every target; `make doctor` gives a verdict per line, and a problem where a framework is
outside pyproject.toml's range."""
import importlib.metadata
import re
import subprocess

from graders import doctor
from polyglot_lab.catalogue import REPO


def test_make_help_lists_every_target_of_the_makefile():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE)) - {"help"}
    shown = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "help"], capture_output=True, text=True,
                           check=True).stdout
    listed = set(re.findall(r"^  make ([a-z-]+)", shown, re.MULTILINE)) | set(re.findall(r"make ([a-z-]+)", shown))
    assert targets - listed == set(), f"make help does not list: {sorted(targets - listed)}"
    assert targets >= {"grade", "test", "lab", "doctor"}


def test_versions_in_range_are_ok_and_one_outside_is_a_problem(monkeypatch):
    rows = {row[0]: row for row in doctor.version_rows()}
    assert rows["tensorflow"][2] == doctor.OK and rows["ai-edge-litert"][2] == doctor.OK
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "2.19.0" if name == "tensorflow" else real(name))
    rows = {row[0]: row for row in doctor.version_rows()}
    what, value, verdict, why = rows["tensorflow"]
    assert (value, verdict) == ("2.19.0", doctor.PROBLEM)
    assert ">=2.21" in why and "make setup" in why


def test_doctor_exits_non_zero_on_a_problem(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "version_rows", lambda: [("onnx", "not installed", doctor.PROBLEM, "run make setup")])
    monkeypatch.setattr(doctor, "machine_rows", lambda: [("kernel protection", "no sandbox (x)", doctor.NOTE, "y")])
    assert doctor.doctor() == 1
    out = capsys.readouterr().out
    assert "1 problem(s)" in out and "not installed" in out and "note" in out
