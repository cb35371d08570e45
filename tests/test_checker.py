"""The checker: what a submission produced is opened and run only there. Attacks through the learner's converter and
codec (code the grader would otherwise run) are stopped the way a user would check it: the secret is not read, the
file is not planted, the grader's processes are not seen, nothing survives; the grader still decides the verdict from
plain data. A call that hangs costs that call only."""
import os
import socket

import numpy as np
import psutil
import pytest

from graders.checker import Checker
from polyglot_lab.checker.client import CheckerError
from graders.checks import CheckContext
from graders.checks import m04_tensorflow_serving as m04
from graders.sandbox import availability, user_of
from mistakes import fails_with
from test_artifact_safety import legit_pt2  # noqa: F401 - a fixture
from polyglot_lab.catalogue import REPO

PLANTED = "planted-by-a-checker-attack.txt"
TOKEN = f"checker-token-{os.getpid()}"
SURVIVOR = f"polyglot-checker-survivor-{os.getpid()}"

# Import-time code of a hostile converter or codec: tries each attack, then reports what happened in its error.
ATTACKS = """
import os, socket, subprocess, sys
outcomes = {}
def attempt(name, fn):
    try:
        fn()
        outcomes[name] = 'DONE'
    except BaseException as exc:
        outcomes[name] = type(exc).__name__
attempt('solutions', lambda: open('@REPO@/solutions/00_setup.ipynb').read())
attempt('graders', lambda: __import__('graders.checks.m00_setup'))
attempt('plant', lambda: open('@REPO@/tests/@PLANTED@', 'w').write('x'))
attempt('store', lambda: open('@STORE@', 'a').write('x'))
attempt('network', lambda: socket.create_connection(('127.0.0.1', @PORT@), timeout=3))
attempt('grader_proc', lambda: open('/proc/@GRADER_PID@/cmdline').read())
outcomes['token'] = 'LEAKED' if '@TOKEN@' in os.environ.values() else 'clean'
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '@SURVIVOR@'])
    os._exit(0)
raise RuntimeError('outcomes ' + repr(sorted(outcomes.items())))
"""

pytestmark = pytest.mark.skipif(availability() is not None, reason=f"no sandbox here: {availability()}")


def survivors() -> list:
    return [p for p in psutil.process_iter(["cmdline"]) if SURVIVOR in (p.info["cmdline"] or [])]


@pytest.fixture
def hostile(tmp_path_factory, monkeypatch):
    """(context with a checker of its own, the attack's source); a secret in the grader's environment, a results
    store beside the run's folder and a server of the test's on the host's loopback while it runs."""
    monkeypatch.setenv("GRADER_TOKEN", TOKEN)
    tmp_path, store = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("reports") / "grades.sqlite"
    store.write_bytes(b"the grader's rows")
    with socket.create_server(("127.0.0.1", 0)) as listening:
        fill = {"@REPO@": str(REPO), "@PLANTED@": PLANTED, "@PORT@": str(listening.getsockname()[1]),
                "@STORE@": str(store),
                "@GRADER_PID@": str(os.getpid()), "@TOKEN@": TOKEN, "@SURVIVOR@": SURVIVOR}
        source = ATTACKS
        for key, value in fill.items():
            source = source.replace(key, value)
        checker = Checker([tmp_path], "cpu")
        yield CheckContext(tmp_path, seed=5, device="cpu", checker=checker), source
        checker.close()
    assert not (REPO / "tests" / PLANTED).exists()
    assert store.read_bytes() == b"the grader's rows"
    assert survivors() == []  # the checker's user had every process killed


def gemm_conformance(ctx):
    """Module 04's Gemm check on ONNX's backend cases alone (the real path: converter_run, then the grader's
    verdict per case), without the grader's own convnet exports, which take seconds and add nothing here."""
    from polyglot_lab.checking.converter import conformance_check, converter_run

    run = lambda ctx: converter_run(ctx, ["Gemm"], lambda ctx, folder: [], m04.HINTS[m04.CONVERTER_FILE])  # noqa: E731
    return conformance_check(["Gemm"], run, lambda failed: m04.diagnose("gemm", failed))(ctx)


def assert_all_stopped(message: str) -> None:
    print(message)
    assert "outcomes [" in message, message
    assert "'DONE'" not in message and "LEAKED" not in message, message
    assert "('token', 'clean')" in message, message


def test_a_hostile_converter_reads_writes_reaches_nothing(hostile):
    ctx, source = hostile
    (ctx.workdir / m04.CONVERTER_FILE).write_text(source + "\ndef convert(path):\n    raise NotImplementedError\n")
    failure = fails_with(gemm_conformance, ctx, "importing onnx_to_tf.py failed")
    assert_all_stopped(failure.message)
    ctx.checker.close()


def test_a_hostile_codec_reads_writes_reaches_nothing(hostile):
    ctx, source = hostile
    (ctx.workdir / m04.CODEC_FILE).write_text(source)
    failure = fails_with(m04.serve_predictions, ctx, "did not start with serving_codec.py")
    assert_all_stopped(failure.message)
    ctx.checker.close()


def test_a_converter_cannot_forge_its_verdict(tmp_path):
    """A converter that answers every case with zeros: the grader compares the outputs with ONNX's own expected
    values, so it fails (there is no result file to write: the checker returns outputs, never verdicts)."""
    (tmp_path / m04.CONVERTER_FILE).write_text(
        "import numpy as np\nclass Fake:\n    def run(self, *inputs):\n        return [np.zeros((1,), np.float32)]\n"
        "def convert(model):\n    return Fake()\n")
    ctx = CheckContext(tmp_path, seed=5, device="cpu")
    failure = fails_with(gemm_conformance, ctx, "Gemm")
    assert "values differ" in failure.found or "shape" in failure.found


def test_a_call_that_hangs_costs_that_call_only(tmp_path):
    (tmp_path / "hangs.py").write_text("import time\ntime.sleep(600)\n")
    (tmp_path / "fine.py").write_text("def convert(model):\n    raise ValueError('no handler')\n")
    with Checker([tmp_path], "cpu") as checker:
        with pytest.raises(CheckerError) as hung:
            checker.call("convert", timeout_s=5, converter=tmp_path / "hangs.py", cases=[], models=[])
        assert hung.value.kind == "timeout" and "5 s" in hung.value.message
        from polyglot_lab.conformance import case_files
        folder = checker.folder("cases")
        answer = checker.call("convert", converter=tmp_path / "fine.py", cases=case_files(["Relu"], folder), models=[])
        assert checker.starts == 2  # a new process for the next call
        assert all("no handler" in case["error"] for case in answer["cases"].values())


def test_answers_are_plain_data(tmp_path):
    """Arrays come back as .npy without pickle; an object array (which needs pickle) is refused, not unpickled."""
    from polyglot_lab.checker.client import read_array as _read_array

    np.save(tmp_path / "plain.npy", np.arange(3))
    assert _read_array(tmp_path / "plain.npy").tolist() == [0, 1, 2]
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckerError, match="not a plain .npy"):
        _read_array(tmp_path / "objects.npy")
    os.symlink("/etc/passwd", tmp_path / "link.npy")
    with pytest.raises(CheckerError, match="link"):
        _read_array(tmp_path / "link.npy")


def test_the_checker_runs_as_its_own_user_without_the_graders_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_TOKEN", TOKEN)
    (tmp_path / "probe.py").write_text(
        "import os\nraise RuntimeError(f\"uid={os.getuid()} token={'GRADER_TOKEN' in os.environ} "
        "procs={sorted(p for p in os.listdir('/proc') if p.isdigit() and os.stat('/proc/' + p).st_uid != os.getuid())}\")\n")
    with Checker([tmp_path], "cpu") as checker:
        answer = checker.call("convert", converter=tmp_path / "probe.py", cases=[], models=[])
        own_user = user_of(checker.process.pid)
    message = answer["import_error"]
    assert f"uid={own_user} " in message, message  # neither root nor the grader's user
    assert "token=False" in message and "procs=[]" in message, message  # no other user's process is listed


def test_a_savedmodel_that_writes_files_is_refused_before_it_is_opened(tmp_path):
    """It would have written (as the grader, before: as root) when its signature was called."""
    import tensorflow as tf

    from test_artifact_safety import module_savedmodel

    marker = tmp_path / "written-by-a-signature.txt"
    module_savedmodel(tf, tmp_path / m04.SAVEDMODEL_DIR,
                      lambda y: (tf.io.write_file(str(marker), tf.strings.as_string(y[0, 0])), y)[1])
    ctx = CheckContext(tmp_path, seed=5, device="cpu")
    fails_with(m04.saved_model_names, ctx, "refused before being opened", "WriteFile")
    fails_with(m04.saved_model_parity, ctx, "refused before being opened")
    assert not marker.exists()


def test_a_pt2_that_asks_for_pickle_is_refused_before_it_is_opened(legit_pt2, tmp_path):  # noqa: F811
    """torch.export.load would unpickle its weight and run the payload (test_artifact_safety proves it)."""
    from graders.checks import m02_pytorch_eager as m02
    from test_artifact_safety import marker_code, pickled_weight, tampered

    marker = tmp_path / "unpickled.txt"
    tampered(legit_pt2, tmp_path / m02.PROGRAM_FILE, lambda members: pickled_weight(members, marker_code(marker)))
    ctx = CheckContext(tmp_path, seed=5, device="cpu")
    fails_with(m02.program_loads, ctx, "refused before being opened", "unpickle")
    assert not marker.exists()
