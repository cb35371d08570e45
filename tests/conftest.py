"""Shared fixtures. Each course notebook is executed once per test run (session scope) and the
graded result is shared by the verify, output-validation and tamper tests."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import nbformat
import pytest

TESTS = Path(__file__).parent
TOY = TESTS / "fixtures" / "toy"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The toy module's checks and probes must import here and in the kernels the engine starts.
sys.path.insert(0, str(TOY))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TOY), os.environ.get("PYTHONPATH")]))

from polyglot_lab.catalogue import REPO, load_catalogue, load_module  # noqa: E402
from graders.grade import grade_module  # noqa: E402

MODULES = list(load_catalogue())


@pytest.fixture(scope="session")
def catalogue():
    return load_catalogue()


class GradedOnce(Mapping):
    """{module_id: ModuleResult} of one folder's notebooks, each graded the first time a test asks for it and then
    shared (the executed notebook included): a run that selects one module's tests grades that module only."""

    def __init__(self, folder: str, learner: str, catalogue: dict):
        self.folder, self.learner, self.catalogue, self.done = folder, learner, catalogue, {}

    def __getitem__(self, module: str):
        if module not in self.done:
            self.done[module] = grade_module(REPO / self.folder / f"{module}.ipynb", self.catalogue[module],
                                             self.learner, "cpu")
        return self.done[module]

    def __iter__(self):
        return iter(self.catalogue)

    def __len__(self) -> int:
        return len(self.catalogue)


@pytest.fixture(scope="session")
def graded_masters(catalogue):
    """Every master, graded once, when first asked for."""
    return GradedOnce("solutions", "master", catalogue)


@pytest.fixture(scope="session")
def graded_learner_editions(catalogue):
    return GradedOnce("notebooks", "learner", catalogue)


# -- the toy module: tests the engine in seconds ------------------------------------------------
@pytest.fixture(scope="session")
def toy_spec():
    return load_module(TOY / "toy_module.toml")


SOLVED_TOY = [
    ("import numpy as np", []),
    ("def double(x):\n    return 2 * x", ["solution:double"]),
    ("print('checked by the autograder')", ["check:double"]),
    ("answer = 42", ["solution:answer"]),
    ("import pathlib\npathlib.Path('result.txt').write_text('ok')", ["solution:artifact"]),
]


def make_notebook(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for source, tags in cells:
        cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


@pytest.fixture
def classroom(tmp_path, toy_spec):
    """Three learners: one solved, one with `double` wrong, one who submitted nothing."""
    folder = tmp_path / "submissions"
    wrong = [(s.replace("2 * x", "3 * x"), t) for s, t in SOLVED_TOY]
    for learner, cells in (("ann", SOLVED_TOY), ("bob", wrong), ("cat", None)):
        (folder / learner).mkdir(parents=True)
        if cells:
            nbformat.write(make_notebook(cells), folder / learner / toy_spec.notebook_name)
    return folder


@pytest.fixture
def grade_toy(tmp_path, toy_spec):
    """grade_toy(cells or text) -> ModuleResult for a toy submission written to a temporary folder."""
    def grade(cells=None, text: str | bytes | None = None, name="toy_module.ipynb"):
        path = tmp_path / name
        if text is not None:
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
        else:
            nbformat.write(make_notebook(cells), path)
        return grade_module(path, toy_spec, "toy", "cpu")
    return grade


def scores(result) -> dict[str, float]:
    """{exercise: points} of a ModuleResult."""
    out: dict[str, float] = {}
    for check in result.checks:
        out[check.exercise] = out.get(check.exercise, 0) + check.score
    return out


@pytest.fixture(scope="session", autouse=True)
def shared_checker(tmp_path_factory):
    """One sandboxed checker for the whole run, reading the run's temporary folders: the checks under test open
    their crafted artifacts there (grade_module still starts its own, one per graded notebook)."""
    import graders.checks as checks
    from graders.checker import Checker

    checker = Checker([tmp_path_factory.getbasetemp()], "cpu")
    checks.shared_checker = lambda: checker
    yield checker
    checks.shared_checker = None
    checker.close()
