"""A corpus of hostile and broken submissions, graded together as one class (in parallel, under limits), with
the expected outcome of each. Every learner gets a row; the damage stays with the exercises a submission broke;
the honest learners graded beside them are not affected."""
import json

import nbformat
import pytest

from conftest import SOLVED_TOY, make_notebook, scores
from graders.grade import grade_class
from graders.limits import Limits

IMPORT, DOUBLE, CHECK, ANSWER, ARTIFACT = SOLVED_TOY
FULL = {"double": 3, "answer": 1, "artifact": 1}


def with_cell(source, after=CHECK):
    """The solved notebook with one more cell after `after`."""
    cells = list(SOLVED_TOY)
    cells.insert(cells.index(after) + 1, (source, []))
    return make_notebook(cells)


def v3_notebook():
    return json.dumps(nbformat.v3.new_notebook(worksheets=[nbformat.v3.new_worksheet(cells=[
        nbformat.v3.new_code_cell(input=source, metadata={"tags": tags}) for source, tags in SOLVED_TOY])]))


# learner -> (the submitted file: a notebook or raw bytes/text, what must come of it)
CORPUS = {
    "honest_a": (make_notebook(SOLVED_TOY), {"scores": FULL}),
    "empty_file": (b"", {"problem": "is empty"}),
    "invalid_json": (b'{"cells": [', {"problem": "not valid JSON"}),
    "python_script": (b"def double(x):\n    return 2 * x\n", {"problem": "not valid JSON"}),
    "zip_archive": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", {"problem": "not valid JSON"}),
    "not_a_notebook": (b'{"cells": 3}', {"problem": "not a valid notebook"}),
    "nbformat_3": (v3_notebook(), {"scores": FULL}),
    "cells_moved_and_retagged": (make_notebook([IMPORT, ANSWER, DOUBLE, ARTIFACT, CHECK,
                                                ("def double(x):\n    return x", ["solution:other"])]),
                                 {"scores": FULL}),
    "cells_deleted": (make_notebook([IMPORT, ANSWER]), {"scores": {**FULL, "double": 0, "artifact": 0}}),
    "check_cell_always_passes": (make_notebook([IMPORT, ("def double(x):\n    return x", ["solution:double"]),
                                                ("print('double: 3/3 points')", ["check:double"]), ANSWER, ARTIFACT]),
                                 {"scores": {**FULL, "double": 1}}),
    "patched_allclose": (with_cell("import numpy as np\nnp.allclose = lambda *a, **k: True\n"
                                   "def double(x):\n    return x", after=DOUBLE),
                         {"scores": {**FULL, "double": 1}}),
    "faked_artifact_by_hand": (make_notebook([IMPORT, DOUBLE, CHECK, ANSWER,
                                              ("open('result.txt', 'w').write('not ok')", ["solution:artifact"])]),
                               {"scores": {**FULL, "artifact": 0}}),
    # interrupted at the cell time limit; the cells after it run as usual
    "endless_loop": (with_cell("while True:\n    pass"), {"scores": FULL, "cell_error": "CellTimeoutError"}),
    "exits_the_kernel": (with_cell("import os\nos._exit(3)"), {"scores": {**FULL, "answer": 0, "artifact": 0},
                                                               "stopped": "kernel died"}),
    "sys_exit": (with_cell("import sys\nsys.exit(1)"), {"scores": FULL}),  # an exception in a kernel, not an exit
    "memory_hog": (with_cell("import numpy as np, time\nheld = []\nfor _ in range(24):\n"
                             "    held.append(np.ones(50 * 2**20 // 8)); time.sleep(0.1)"),
                   {"scores": {**FULL, "answer": 0, "artifact": 0}, "stopped": "MB of memory, over the limit"}),
    "process_spree": (with_cell("import subprocess, time\nkids = [subprocess.Popen(['sleep', '60']) for _ in range(12)]\n"
                                "time.sleep(5)"),
                      {"scores": {**FULL, "answer": 0, "artifact": 0}, "stopped": "processes, over the limit"}),
    "output_flood": (with_cell("for _ in range(100_000):\n    print('y' * 100)"), {"scores": FULL}),
    "non_utf8_output": (with_cell("import os\nos.write(1, b'\\xff\\xfe')\nprint('\\udcff')"), {"scores": FULL}),
    # not prevented yet (no file-system sandbox, see README); it changes nothing in anyone's grades
    "writes_outside_its_folder": (with_cell("open('../stolen.txt', 'w').write('x')"), {"scores": FULL}),
    "honest_b": (make_notebook(SOLVED_TOY), {"scores": FULL}),
}
LIMITS = Limits(memory_mb=600, processes=5, output_mb=1)  # far below what the hostile cells reach


@pytest.fixture(scope="module")
def graded_corpus(tmp_path_factory, toy_spec):
    folder = tmp_path_factory.mktemp("corpus")
    for learner, (content, _) in CORPUS.items():
        (folder / learner).mkdir()
        path = folder / learner / toy_spec.notebook_name
        if isinstance(content, nbformat.NotebookNode):
            nbformat.write(content, path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    results = grade_class(folder, [toy_spec], "cpu", jobs=2, limits=LIMITS)
    return {r.learner: r.modules[0] for r in results}


def test_every_learner_has_a_row(graded_corpus):
    assert sorted(graded_corpus) == sorted(CORPUS)


@pytest.mark.parametrize("learner", list(CORPUS))
def test_expected_outcome(graded_corpus, learner):
    result, expected = graded_corpus[learner], CORPUS[learner][1]
    if "problem" in expected:
        assert expected["problem"] in (result.problem or "") and result.score == 0
        assert all(c.message for c in result.checks)  # each zero says why
        return
    assert result.problem is None
    assert {k: scores(result).get(k, 0) for k in FULL} == expected["scores"]
    if "stopped" in expected:
        assert expected["stopped"] in (result.stopped or "")
        lost = [c for c in result.checks if c.exercise in ("answer", "artifact")]
        assert all(expected["stopped"].split(",")[0] in c.message or "not graded" in c.message for c in lost)
    if "cell_error" in expected:
        assert expected["cell_error"] in " ".join(result.cell_errors.values())
