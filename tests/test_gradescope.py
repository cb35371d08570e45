"""The Gradescope bundle: built, unpacked into a simulated /autograder, and run as Gradescope runs it."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from polyglot_lab.catalogue import REPO, load_catalogue
from graders.gradescope import build_bundle


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    """/autograder with the bundle for module 00 unpacked in source/."""
    root = tmp_path_factory.mktemp("autograder")
    bundle = build_bundle([load_catalogue()["00_setup"]], root / "autograder.zip")
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        assert {"setup.sh", "run_autograder", "MODULES", "pyproject.toml"} <= set(names)
        assert not any(n.startswith(("solutions/", "notebooks/", "examples/", "tests/")) for n in names)
        assert archive.getinfo("run_autograder").external_attr >> 16 & 0o111
        archive.extractall(root / "source")
    return root


def run_autograder(root, notebook=None):
    submission = root / "submission"
    shutil.rmtree(submission, ignore_errors=True)
    submission.mkdir()
    if notebook:
        shutil.copy(notebook, submission / notebook.name)
    shutil.rmtree(root / "results", ignore_errors=True)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "PYTHON": sys.executable}
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, timeout=600)
    return json.loads((root / "results" / "results.json").read_text())


def test_a_solved_notebook_gets_full_marks(autograder):
    results = run_autograder(autograder, REPO / "solutions" / "00_setup.ipynb")
    spec = load_catalogue()["00_setup"]
    from polyglot_lab.devices import cuda_available
    counted = sum(c.points for e in spec.exercises for c in e.checks if c.device != "gpu" or cuda_available())
    assert results["score"] == counted
    assert len(results["tests"]) == sum(len(e.checks) for e in spec.exercises)
    assert {t["visibility"] for t in results["tests"]} == {"visible", "hidden"}


def test_an_empty_submission_says_so(autograder):
    results = run_autograder(autograder)
    assert results["score"] == 0
    assert "not submitted" in results["output"]


def test_an_autograder_failure_still_writes_results(autograder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(autograder, broken)
    (broken / "source" / "MODULES").write_text("no_such_module")
    results = run_autograder(broken)
    assert results["score"] == 0 and "autograder failed" in results["output"]
