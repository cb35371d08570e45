"""The learner's tools outside the checks: the workspace (`polyglot-lab get`/`lab`), the quiet kernel, progress."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat

from polyglot_lab.__main__ import course_notebooks, get, install_kernel, lab_command
from polyglot_lab.progress import listing, record
from polyglot_lab.quiet import kept_lines, quiet_environment

STARTUP = """WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795732874.251927   15063 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1795732874.256798   15063 cudart_stub.cc:31] Could not find cuda drivers on your machine.
I0000 00:00:1795732874.982045   15063 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.
W0000 00:00:1795732880.026208   15063 some_op.cc:12] a real warning
E0000 00:00:1795732884.335854   15063 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)
a line of the learner's own
"""


def test_startup_log_lines_below_the_level_are_dropped_the_rest_kept():
    assert kept_lines(STARTUP, 3) == "a line of the learner's own\n"
    warned = kept_lines(STARTUP, 1)
    assert "a real warning" in warned and "cuInit" in warned and "I0000" not in warned and "To enable" not in warned
    assert "absl::InitializeLog" not in kept_lines(STARTUP, 0) and "oneDNN" in kept_lines(STARTUP, 0)


def test_importing_tensorflow_after_the_course_prints_no_startup_log(tmp_path):
    """The real import, in a fresh process without TF_CPP_MIN_LOG_LEVEL (as on Colab): stderr stays empty."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", "import polyglot_lab, tensorflow as tf; print(tf.constant(2.0) * 2)"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4.0" in done.stdout and done.stderr == "", done.stderr


def test_a_probe_for_tensorflow_before_its_import_leaves_the_import_quiet(tmp_path):
    """torch._dynamo asks `importlib.util.find_spec("tensorflow")` when it loads (torch.export, torch.compile: the
    grader's module-04 checks): the import that follows must still be quiet (it printed absl's start-up lines)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("import importlib.util, polyglot_lab; importlib.util.find_spec('tensorflow'); import tensorflow as tf; "
            "print(tf.constant(2.0) * 2)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4.0" in done.stdout and done.stderr == "", done.stderr


def test_the_course_kernel_spec_carries_the_quiet_settings(tmp_path):
    where = install_kernel(prefix=str(tmp_path))
    spec = json.loads((tmp_path / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").read_text())
    assert str(tmp_path) in where and spec["env"] == quiet_environment()
    assert spec["argv"][0] == sys.executable and spec["display_name"] == "Python 3 (Polyglot Lab)"


def test_jupyterlab_is_started_on_loopback_in_the_workspace_and_as_root_with_allow_root(tmp_path):
    command = lab_command(tmp_path, 8899)
    assert "--ip=127.0.0.1" in command and "--port=8899" in command and f"--notebook-dir={tmp_path}" in command
    assert ("--allow-root" in command) == (hasattr(os, "geteuid") and os.geteuid() == 0)


def test_the_workspace_is_made_once_and_a_course_update_lands_beside_the_learners_work(tmp_path):
    first = get(tmp_path)
    assert len(first) == len(course_notebooks()) and all(line.startswith("new") for line in first)
    mine = tmp_path / course_notebooks()[0].name
    mine.write_text(mine.read_text() + " ")                  # the learner's edits
    said = get(tmp_path)
    assert mine.read_text().endswith(" ")                    # never overwritten
    newer = tmp_path / f"{mine.stem}.new.ipynb"
    assert newer.read_bytes() == course_notebooks()[0].read_bytes() and f"beside it: {newer.name}" in said[0]


def test_progress_lists_each_exercise_not_started_written_or_its_last_score(tmp_path, catalogue):
    from polyglot_lab.checking import CheckResult

    spec = catalogue["00_setup"]
    get(tmp_path)
    notebook = nbformat.read(tmp_path / "00_setup.ipynb", as_version=4)
    for cell in notebook.cells:
        if "solution:versions" in cell.metadata.get("tags", []) or "solution:devices" in cell.metadata.get("tags", []):
            cell.source = "def solved():\n    return 1\n"
    nbformat.write(notebook, tmp_path / "00_setup.ipynb")
    record(tmp_path, spec.id, "versions", [CheckResult(module=spec.id, exercise="versions", check="c", title="t",
                                                       score=1.0, max_score=2.0, status="failed")])
    said = listing(tmp_path, [spec])
    rows = {line.split()[0]: line for line in said.splitlines()[1:-1]}
    assert "✘ 1/2 at the last check" in rows["versions"]
    assert "written, not checked yet" in rows["devices"]
    assert "not started" in rows["seeding"] and "not started" in rows["threads"]


def test_a_check_in_the_notebooks_own_folder_finds_its_artifacts(tmp_path, monkeypatch, capsys):
    """grader.check as a notebook calls it: the working directory is the notebook's folder (workdir "."), and the
    checker, a process of its own elsewhere, still opens the model the probe saved there."""
    import keras

    from polyglot_lab.notebook import Notebook

    def build_model():
        features = keras.Input(shape=(64,))
        return keras.Model(features, keras.layers.Dense(10, activation="softmax")(features))

    monkeypatch.chdir(tmp_path)
    grader = Notebook("01_keras_prototype")
    grader.check("model", {"build_model": build_model})
    said = capsys.readouterr().out
    assert [r.status for r in grader.results["model"]] == ["passed"] * len(grader.results["model"]), said
    assert said.startswith("model: 3/3 points")


def test_submit_grades_the_workspace_as_make_grade_does_and_says_where_the_feedback_is(tmp_path, capsys):
    """`make submit`: module 00 of a workspace, solved, graded in a fresh kernel with every check; a folder that is
    not a workspace, or one without the course's notebooks, is refused before any work."""
    import getpass
    import shutil

    from graders.cli import main as polyglot
    from polyglot_lab.catalogue import REPO

    assert polyglot(["submit", "--workspace", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert polyglot(["submit", "--workspace", str(tmp_path)]) == 2
    assert "holds none of the course's notebooks" in capsys.readouterr().err
    shutil.copyfile(REPO / "examples" / "submissions" / "ada" / "00_setup.ipynb", tmp_path / "00_setup.ipynb")
    assert polyglot(["submit", "--workspace", str(tmp_path), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    learner = "".join(ch for ch in getpass.getuser() if ch.isalnum() or ch in "-_.") or "learner"
    feedback = tmp_path / "feedback" / learner / "feedback.html"
    assert feedback.exists() and f"Your feedback: {feedback}" in said
    results = json.loads((tmp_path / "feedback" / learner / "results.json").read_text())
    assert results["score"] == 8 and all(test["status"] == "passed" for test in results["tests"] if "status" in test)
    skipped = [test for test in results["tests"] if "status" not in test]  # GPU checks on a machine without one
    assert all(test["output"].startswith("skipped: no device") and "score" not in test for test in skipped), skipped
