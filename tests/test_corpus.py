"""A corpus of hostile and broken submissions, graded together as one class (in parallel, under limits), with
the expected outcome of each. Every learner gets a row; the damage stays with the exercises a submission broke;
the honest learners graded beside them are not affected. The attacks on the grader itself (reading the solutions,
writing its files, the network, signals, a real fork bomb) are graded where the kernel is sandboxed (as root on
Linux, as in CI); elsewhere they are skipped with the reason, since they would succeed."""
import json
import os
import socket
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import REPO, SOLVED_TOY, make_notebook, scores

from graders.grade import grade_class
from graders.limits import Limits
from graders.sandbox import availability

pytestmark = pytest.mark.slow  # grades a class of 30 submissions under limits: `make test-fast` leaves it out

PLANTED = "planted-by-a-submission.txt"

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


def answer_after(attempt: str):
    """The solved notebook whose `answer` cell first tries something the sandbox forbids."""
    return make_notebook([IMPORT, DOUBLE, CHECK, (f"{attempt}\nanswer = 42", ["solution:answer"]), ARTIFACT])



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
    # the grader copies the notebook alone into the kernel's folder: an artifact must come from the graded run
    "artifact_beside_notebook": (make_notebook([IMPORT, DOUBLE, CHECK, ANSWER]),
                                 {"scores": {**FULL, "artifact": 0}, "beside": {"result.txt": "ok"}}),
    # its own folder (a private /tmp in the sandbox): harmless, and nobody else's grade changes
    "writes_beside_its_folder": (with_cell("open('../stolen.txt', 'w').write('x')"), {"scores": FULL}),
    # a link to a file beside the notebook (which the sandbox hides) would be followed by the grader: links out of
    # the working directory are dropped before the checks
    "links_its_artifact_outside": (
        make_notebook([IMPORT, DOUBLE, CHECK, ANSWER, (
            "import os\nos.symlink('@CORPUS_DIR@/links_its_artifact_outside/result.txt', 'result.txt')",
            ["solution:artifact"])]),
        {"scores": {**FULL, "artifact": 0}, "beside": {"result.txt": "ok"}}),
    # the grader's environment stays the grader's: a token set for `make grade` is not the kernel's to read
    "reads_the_graders_token": (answer_after("import os\nassert 'GRADER_TOKEN' not in os.environ, 'token leaked'\n"
                                             "assert not any(os.environ.get(k) == '@TOKEN@' for k in os.environ)"),
                                {"scores": FULL}),
    "honest_b": (make_notebook(SOLVED_TOY), {"scores": FULL}),
}


def lost_answer(error: str) -> dict:
    return {"scores": {**FULL, "answer": 0}, "cell_error": error, "reason": error}


# Graded only where the kernel is sandboxed (graders/sandbox.py): elsewhere these would really read the solutions,
# write into the repository or kill the grader. CORPUS_DIR and CORPUS_PORT are set by the fixture.
SANDBOX_CORPUS = {
    "reads_the_solutions": (answer_after(f"open('{REPO}/solutions/00_setup.ipynb').read()"),
                            lost_answer("FileNotFoundError")),
    "imports_the_hidden_checks": (answer_after("import graders.checks.m00_setup"),
                                  lost_answer("ModuleNotFoundError")),
    "reads_another_submission": (answer_after("open('@CORPUS_DIR@/honest_a/toy_module.ipynb').read()"),
                                 lost_answer("FileNotFoundError")),
    "writes_the_grader_files": (answer_after(f"open('{REPO}/tests/{PLANTED}', 'w').write('x')"),
                                lost_answer("PermissionError")),
    "reaches_the_network": (answer_after("import socket\nsocket.create_connection(('127.0.0.1', @CORPUS_PORT@))"),
                            lost_answer("ConnectionRefusedError")),
    "signals_the_grader": (answer_after("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
                           lost_answer("PermissionError")),
    # its /proc lists its own user's processes only: not the grader, nor any other process and its arguments
    "lists_the_hosts_processes": (answer_after(
        "import os\nassert not os.path.exists('/proc/@GRADER_PID@'), 'the grader is visible'\n"
        "assert all(os.stat(f'/proc/{p}').st_uid == os.getuid() for p in os.listdir('/proc') if p.isdigit())"),
        {"scores": FULL}),
    # a double-forked process in a session of its own outlives the kernel's tree; it must not outlive the grading
    "leaves_a_process_behind": (answer_after(
        "import os, subprocess, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '@SURVIVOR@'])\n"
        "    os._exit(0)\nimport time\ntime.sleep(1)"),
        {"scores": FULL}),
    "copies_artifact_from_its_folder": (
        make_notebook([IMPORT, DOUBLE, CHECK, ANSWER, (
            "import os, shutil\nshutil.copy('@CORPUS_DIR@/copies_artifact_from_its_folder/result.txt',"
            " 'result.txt')", ["solution:artifact"])]),
        {"scores": {**FULL, "artifact": 0}, "cell_error": "FileNotFoundError", "beside": {"result.txt": "ok"}}),
}
LIMITS = Limits(memory_mb=600, processes=5, output_mb=1)  # far below what the hostile cells reach


def sandboxed() -> bool:
    return availability() is None


SURVIVOR = f"polyglot-corpus-survivor-{os.getpid()}"  # the argument a left-behind process carries
TOKEN = f"token-{os.getpid()}-do-not-leak"


def write_class(folder: Path, cases: dict, notebook_name: str, port: int = 0) -> None:
    """Each case's notebook in <folder>/<learner>/, with @CORPUS_DIR@, @CORPUS_PORT@, @GRADER_PID@, @SURVIVOR@ and
    @TOKEN@ filled in (the kernel inherits nothing of the grader's environment to find them in)."""
    fill = {"@CORPUS_DIR@": str(folder), "@CORPUS_PORT@": str(port), "@GRADER_PID@": str(os.getpid()),
            "@SURVIVOR@": SURVIVOR, "@TOKEN@": TOKEN}
    for learner, (content, expected) in cases.items():
        (folder / learner).mkdir()
        path = folder / learner / notebook_name
        if isinstance(content, nbformat.NotebookNode):
            content = nbformat.from_dict(json.loads(json.dumps(content)))
            for cell in content.cells:
                for key, value in fill.items():
                    cell.source = cell.source.replace(key, value)
            nbformat.write(content, path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        for name, text in expected.get("beside", {}).items():
            (folder / learner / name).write_text(text)


@pytest.fixture(scope="module")
def graded_corpus(tmp_path_factory, toy_spec):
    folder = tmp_path_factory.mktemp("corpus")
    cases = {**CORPUS, **(SANDBOX_CORPUS if sandboxed() else {})}
    with socket.create_server(("127.0.0.1", 0)) as listening, pytest.MonkeyPatch.context() as env:
        write_class(folder, cases, toy_spec.notebook_name, port=listening.getsockname()[1])
        env.setenv("GRADER_TOKEN", TOKEN)  # a secret in the grader's environment
        results = grade_class(folder, [toy_spec], "cpu", jobs=2, limits=LIMITS)
    return {r.learner: r.modules[0] for r in results}


def survivors() -> list:
    """Processes that carry this run's SURVIVOR argument (only ever started by the corpus; looked at, not killed)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if SURVIVOR in (process.info["cmdline"] or []):
            found.append(process)
    return found


def test_nothing_a_submission_started_outlives_its_grading(graded_corpus):
    needs_sandbox()
    assert graded_corpus["leaves_a_process_behind"].checks  # it was graded, and its double fork ran
    assert survivors() == []


def test_the_graders_token_reaches_no_report(graded_corpus, tmp_path):
    from graders.reports import write_class_reports, write_learner_reports
    from graders.results import LearnerResult

    results = [LearnerResult(learner, [module]) for learner, module in graded_corpus.items()]
    for result in results:
        write_learner_reports(tmp_path, result)
    write_class_reports(tmp_path, results, ["toy_module"])
    assert not any(TOKEN in path.read_text(errors="replace") for path in tmp_path.rglob("*") if path.is_file())


def test_every_learner_has_a_row(graded_corpus):
    assert sorted(graded_corpus) == sorted({**CORPUS, **(SANDBOX_CORPUS if sandboxed() else {})})


def toy_scores(result) -> dict:
    return {k: scores(result).get(k, 0) for k in FULL}


def needs_sandbox():
    if not sandboxed():
        pytest.skip(f"the kernel sandbox is not available here: {availability()}")


@pytest.mark.parametrize("learner", list(CORPUS) + list(SANDBOX_CORPUS))
def test_expected_outcome(graded_corpus, learner):
    if learner in SANDBOX_CORPUS:
        needs_sandbox()
    result, expected = graded_corpus[learner], {**CORPUS, **SANDBOX_CORPUS}[learner][1]
    if "problem" in expected:
        assert expected["problem"] in (result.problem or "") and result.score == 0
        assert all(c.message for c in result.checks)  # each zero says why
        return
    assert result.problem is None
    assert toy_scores(result) == expected["scores"]
    if "stopped" in expected:
        assert expected["stopped"] in (result.stopped or "")
        lost = [c for c in result.checks if c.exercise in ("answer", "artifact")]
        assert all(expected["stopped"].split(",")[0] in c.message or "not graded" in c.message for c in lost)
    if "cell_error" in expected:
        assert expected["cell_error"] in " ".join(result.cell_errors.values())
    if "reason" in expected:  # the zero says why, in the learner's terms
        lost = [c for c in result.checks if c.exercise == "answer"]
        assert all(expected["reason"] in c.message for c in lost)
    assert not (REPO / "tests" / PLANTED).exists()
    if sandboxed():
        assert result.protection.startswith("sandbox")


FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
TEN_GB = "import numpy as np\nhuge = np.ones(10 * 2**30, dtype=np.uint8)"


def test_a_real_fork_bomb_and_a_10_gb_allocation_cost_only_what_follows(graded_corpus, tmp_path, toy_spec):
    # Proof first that the limits are in force in this run: their bounded versions were stopped by them ...
    assert "processes, over the limit of 5" in graded_corpus["process_spree"].stopped
    assert "MB of memory, over the limit of 600 MB" in graded_corpus["memory_hog"].stopped
    # ... and that a sandboxed kernel's user has a task limit, which bounds a fork bomb between two polls.
    needs_sandbox()
    import subprocess
    import sys

    from graders.sandbox import MAX_TASKS, Sandbox
    sandbox = Sandbox(tmp_path, tmp_path)
    limit = subprocess.run(sandbox.wrap([sys.executable, "-c", "import resource; "
                                         "print(resource.getrlimit(resource.RLIMIT_NPROC)[0])"]),
                           capture_output=True, text=True, check=True).stdout
    assert int(limit) == MAX_TASKS

    folder = tmp_path / "class"
    folder.mkdir()
    write_class(folder, {"fork_bomb": (with_cell(FORK_BOMB), {}), "ten_gb": (with_cell(TEN_GB), {}),
                         "honest": (make_notebook(SOLVED_TOY), {})}, toy_spec.notebook_name)
    graded = {r.learner: r.modules[0] for r in grade_class(folder, [toy_spec], "cpu", jobs=1, limits=LIMITS)}
    after_the_cell = {**FULL, "answer": 0, "artifact": 0}
    assert "processes, over the limit of 5" in graded["fork_bomb"].stopped
    assert toy_scores(graded["fork_bomb"]) == after_the_cell
    assert "MB of memory, over the limit of 600 MB" in graded["ten_gb"].stopped
    assert toy_scores(graded["ten_gb"]) == after_the_cell
    assert graded["ten_gb"].peak_memory_mb < 4000  # stopped on the way, far from 10 GB
    assert toy_scores(graded["honest"]) == FULL
