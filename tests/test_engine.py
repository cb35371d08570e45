"""The grading engine on a toy module: placement by tags, failures that cost only what they touch."""
import time

import numpy as np

from conftest import SOLVED_TOY, scores
from graders.results import NO_DEVICE, SKIPPED

FULL = {"double": 3, "answer": 1, "artifact": 1, "gpu": 0}


def test_solved_toy_scores_full_marks_and_skips_gpu_check(grade_toy):
    result = grade_toy(SOLVED_TOY)
    assert scores(result) == FULL
    assert result.max_score == 5  # the GPU check counts neither for nor against
    gpu = [c for c in result.checks if c.exercise == "gpu"][0]
    assert (gpu.status, gpu.message) == (SKIPPED, NO_DEVICE)


def test_moved_deleted_and_duplicated_cells_do_not_shift_grades(grade_toy):
    import_cell, double, check, answer, artifact = SOLVED_TOY
    moved = [import_cell, artifact, answer, double, check]      # reordered
    assert scores(grade_toy(moved)) == FULL
    deleted_check = [import_cell, double, answer, artifact]      # check cell deleted
    assert scores(grade_toy(deleted_check)) == FULL
    duplicated = [import_cell, double, check, check, answer, answer, artifact]
    assert scores(grade_toy(duplicated)) == FULL


def test_probe_runs_after_the_exercise_not_at_the_end(grade_toy):
    import_cell, double, check, answer, artifact = SOLVED_TOY
    overwritten = [import_cell, double, check, answer, artifact, ("def double(x):\n    return x", [])]
    assert scores(grade_toy(overwritten))["double"] == 3


def test_untagged_solution_is_probed_at_the_end(grade_toy):
    import_cell, double, check, answer, artifact = SOLVED_TOY
    retagged = [import_cell, (double[0], []), answer, artifact]
    assert scores(grade_toy(retagged)) == FULL


def test_an_error_costs_only_its_exercise(grade_toy):
    import_cell, double, check, answer, artifact = SOLVED_TOY
    broken = ("def double(x):\n    raise ValueError('oops')", ["solution:double"])
    result = grade_toy([import_cell, broken, check, answer, artifact])
    assert scores(result) == {**FULL, "double": 0}
    message = [c for c in result.checks if c.check == "correct"][0].message
    assert "ValueError" in message and "oops" in message


def test_not_implemented_stub_says_not_done(grade_toy):
    stub = ("def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()", ["solution:double"])
    result = grade_toy([SOLVED_TOY[0], stub])
    correct = [c for c in result.checks if c.check == "correct"][0]
    assert correct.score == 0 and "NotImplementedError" in correct.message and "Not done yet" in correct.message


def test_an_endless_loop_costs_only_its_exercise(grade_toy):
    import_cell, double, check, answer, artifact = SOLVED_TOY
    loop = ("while True:\n    pass\nanswer = 42", ["solution:answer"])
    started = time.monotonic()
    result = grade_toy([import_cell, double, check, loop, artifact])
    assert time.monotonic() - started < 40
    assert scores(result) == {**FULL, "answer": 0}
    assert "CellTimeoutError" in result.cell_errors[3]


def test_a_dead_kernel_costs_the_exercises_not_yet_graded(grade_toy):
    import_cell, double, check, answer, artifact = SOLVED_TOY
    crash = ("import os; os._exit(1)", [])
    result = grade_toy([import_cell, double, check, crash, answer, artifact])
    assert scores(result) == {**FULL, "answer": 0, "artifact": 0}
    assert "kernel died" in result.stopped and "os._exit" in result.stopped
    answer_check = [c for c in result.checks if c.exercise == "answer"][0]
    assert "kernel died" in answer_check.message


def test_bad_files_get_a_row_with_a_reason(grade_toy, toy_spec):
    from graders.grade import grade_module
    for text, words in ((b"", "empty"), (b"{not json", "not valid JSON"), (b"print('hello')\n", "not valid JSON"),
                        (b'{"cells": 3}', "not a valid notebook"), (b"PK\x03\x04zipdata", "not valid JSON")):
        result = grade_toy(text=text)
        assert result.score == 0 and result.submitted and words in result.problem, (text, result.problem)
        assert "toy_module.ipynb" in result.problem
        assert len(result.checks) == 5
    missing = grade_module(None, toy_spec, "toy", "cpu")
    assert not missing.submitted and "not submitted" in missing.problem and missing.max_score == 5


def test_patching_the_kernel_gains_nothing(grade_toy):
    """Verdicts are computed in the grader's process: patched numpy, a redefined check, forged probe files."""
    import_cell, double, check, answer, artifact = SOLVED_TOY
    wrong = ("def double(x):\n    return x", ["solution:double"])
    tamper = ("""
import numpy as np, pathlib, polyglot_lab.probe as probe
np.allclose = lambda *a, **k: True
np.array_equal = lambda *a, **k: True
def check(*a, **k):
    return True
class grader:
    check = staticmethod(check)
out = pathlib.Path('.polyglot/double/outputs'); out.mkdir(parents=True, exist_ok=True)
np.save(out / 'doubled.npy', np.zeros(5)); (out.parent / 'done.json').write_text('{}')
probe.run = lambda *a, **k: True      # the probe itself replaced
""", ["check:double"])
    honest = grade_toy([import_cell, wrong, answer, artifact])
    tampered = grade_toy([import_cell, wrong, tamper, answer, artifact])
    assert [c for c in tampered.checks if c.check == "correct"][0].score == 0
    assert tampered.score <= honest.score


def test_files_beside_the_notebook_are_not_artifacts(grade_toy, tmp_path):
    (tmp_path / "result.txt").write_text("ok")  # placed by hand next to the submission
    import_cell, double, check, answer, artifact = SOLVED_TOY
    result = grade_toy([import_cell, double, check, answer])
    assert scores(result)["artifact"] == 0


def test_fresh_inputs_each_run(toy_spec, tmp_path):
    from graders.checks import CheckContext
    first = CheckContext(tmp_path, 1, "cpu").rng("double").normal(size=3)
    second = CheckContext(tmp_path, 2, "cpu").rng("double").normal(size=3)
    assert not np.allclose(first, second)


def test_an_old_nbformat_3_notebook_is_graded(grade_toy):
    """nbformat 3 (worksheets) is converted on reading, not refused."""
    import json

    import nbformat
    v3 = nbformat.v3.new_notebook(worksheets=[nbformat.v3.new_worksheet(cells=[
        nbformat.v3.new_code_cell(input=source, metadata={"tags": tags}) for source, tags in SOLVED_TOY])])
    result = grade_toy(text=json.dumps(v3))
    assert result.problem is None and result.score == result.max_score


def test_non_utf8_output_does_not_break_grading(grade_toy):
    import_cell, double, check, answer, artifact = SOLVED_TOY
    noise = ("import os, sys\nos.write(1, b'\\xff\\xfe raw bytes\\n')\nsys.stdout.write('\\udcff surrogate\\n')", [])
    result = grade_toy([import_cell, double, check, noise, answer, artifact])
    assert result.score == result.max_score and result.stopped is None


def test_a_shared_load_that_fails_fails_every_check_that_needs_it_without_loading_again(tmp_path):
    """ctx.cached: a converter that does not import costs one load (the grader's exports, a checker call), and
    every check that needs it fails with the same words."""
    import pytest

    from polyglot_lab.checking import CheckContext, CheckFailed

    calls = []

    def load():
        calls.append(1)
        raise CheckFailed("importing onnx_to_tf.py failed: SyntaxError", hint="it runs outside the notebook")

    ctx = CheckContext(tmp_path, 1, "cpu")
    for _ in range(3):
        with pytest.raises(CheckFailed) as failed:
            ctx.cached("converter", load)
        assert failed.value.message.startswith("importing onnx_to_tf.py failed") and failed.value.hint
    assert len(calls) == 1
    assert ctx.cached("other", lambda: 42) == 42 == ctx.cached("other", lambda: 0)
