"""The kernel's sandbox (graders/sandbox.py), tested on a plain Python process started the way a kernel is:
what it can see, write and reach. The corpus (test_corpus.py) grades the same attacks from inside notebooks."""
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO

from graders import sandbox
from graders.sandbox import Sandbox, availability, protection

PROBE = r'''
import json, os, socket, sys
facts = {"uid": os.getuid(), "repo": sorted(os.listdir(sys.argv[1])), "home": os.environ["HOME"],
         "home_writable": os.access(os.environ["HOME"], os.W_OK), "tmp": sorted(os.listdir("/tmp"))}
def attempt(name, action):
    try:
        action()
        facts[name] = "ok"
    except Exception as exc:
        facts[name] = type(exc).__name__
attempt("read_solutions", lambda: open(os.path.join(sys.argv[1], "solutions", "00_setup.ipynb")).read())
attempt("import_graders", lambda: __import__("graders.checks"))
attempt("import_polyglot_lab", lambda: __import__("polyglot_lab.catalogue"))
attempt("write_package", lambda: open(os.path.join(sys.argv[1], "polyglot_lab", "planted.py"), "w"))
attempt("write_workdir", lambda: open("made-in-the-sandbox.txt", "w").write("ok"))
attempt("grader_port", lambda: socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5))
def own_loopback():
    server = socket.create_server(("127.0.0.1", 0))
    socket.create_connection(server.getsockname(), timeout=5).close()
attempt("own_loopback", own_loopback)
attempt("signal_parent", lambda: os.kill(os.getppid(), 0))
print(json.dumps(facts))
'''


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    if availability() is not None:
        pytest.skip(f"the kernel sandbox is not available here: {availability()}")
    workdir, ipc = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("ipc")
    with socket.create_server(("127.0.0.1", 0)) as grader_side, tempfile.NamedTemporaryFile(dir="/tmp") as secret:
        argv = [sys.executable, "-c", PROBE, str(REPO), str(grader_side.getsockname()[1])]
        done = subprocess.run(Sandbox(workdir, ipc).wrap(argv), check=False, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout), "workdir": workdir, "secret": Path(secret.name).name}


def test_the_repository_holds_only_what_learners_have(facts):
    assert set(facts["repo"]) <= {"polyglot_lab", "exercises", "notebooks", ".venv", "tests"}  # tests: the toy
    assert facts["read_solutions"] == "FileNotFoundError"
    assert facts["import_graders"] == "ModuleNotFoundError"
    assert facts["import_polyglot_lab"] == "ok"


def test_it_writes_only_its_working_directory(facts):
    assert facts["write_package"] == "OSError"  # read-only file system
    assert facts["write_workdir"] == "ok"
    assert (facts["workdir"] / "made-in-the-sandbox.txt").read_text() == "ok"
    assert not (REPO / "polyglot_lab" / "planted.py").exists()


def test_it_has_its_own_user_home_and_tmp(facts):
    assert facts["uid"] >= 200_000
    assert facts["home_writable"] and facts["home"].startswith("/tmp/")
    # the grader's /tmp is not there: only the path down to the working directory and the new home
    assert facts["secret"] not in facts["tmp"]
    kept_in_tmp = {Path(k["path"]).parts[2] for k in Sandbox(facts["workdir"], facts["workdir"]).keep()
                   if Path(k["path"]).parts[1] == "tmp"}
    assert set(facts["tmp"]) == {"polyglot-home", *kept_in_tmp}


def test_no_network_but_its_own_loopback(facts):
    assert facts["grader_port"] == "ConnectionRefusedError"  # a server of the grader's, on the host's loopback
    assert facts["own_loopback"] == "ok"                      # a notebook's own server still works (module 04)


def test_it_cannot_signal_the_grader(facts):
    assert facts["signal_parent"] == "PermissionError"


def test_it_never_covers_the_root_or_a_system_folder(tmp_path):
    cover = Sandbox(tmp_path, tmp_path, hide=(Path("/"), Path("/usr"), Path("/usr/lib"), tmp_path / "class")).cover()
    assert "/" not in cover and not any(c == "/usr" or c.startswith("/usr/") for c in cover)
    assert {str(REPO.resolve()), "/tmp", str(tmp_path.resolve() / "class")} <= set(cover)
    assert cover == sorted(cover, key=lambda c: len(Path(c).parts))  # outer folders first


def test_without_it_every_result_says_so(monkeypatch):
    monkeypatch.setenv(sandbox.DISABLE, "off")
    sandbox.availability.cache_clear()
    try:
        assert "turned off" in availability()
        assert protection().startswith("no sandbox (turned off")
    finally:
        monkeypatch.undo()
        sandbox.availability.cache_clear()


# -- rootless: the same launcher as an unprivileged user (a laptop, a container without root) ------------------------
ROOTLESS_PROBE = """
import os, socket, subprocess, sys
print('uid', os.getuid(), 'pid', os.getpid())
print('procs', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
for what, attempt in [('hidden', lambda: open(sys.argv[1]).read()),
                      ('network', lambda: socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=3)),
                      ('write_outside', lambda: open('/usr/planted-by-rootless', 'w')),
                      ('write_own', lambda: open('own.txt', 'w').write('ok'))]:
    try:
        attempt()
        print(what, 'DONE')
    except Exception as exc:
        print(what, type(exc).__name__)
subprocess.Popen(['sleep', '600', sys.argv[3]], start_new_session=True)  # left behind on purpose
"""


@pytest.fixture
def public_tmp():
    """A folder `nobody` can reach (pytest's own are private to root)."""
    import shutil
    folder = Path(tempfile.mkdtemp(prefix="polyglot-rootless-test-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_rootless_sandbox_as_an_unprivileged_user(public_tmp):
    """The launcher's rootless mode (a user namespace, used when the grader is not root), run as `nobody` with the
    system's Python: no network, the grader's files hidden, only the working folder writable, its own processes only,
    and nothing left running once its first process ends."""
    import json
    import shutil
    import socket

    import psutil

    from graders.sandbox import LAUNCHER
    python = shutil.which("python3", path="/usr/bin")
    if os.geteuid() != 0 or not python or not shutil.which("setpriv"):
        pytest.skip("needs root (to become nobody), setpriv and /usr/bin/python3")
    userns = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "--user",
                             "--map-current-user", "true"], capture_output=True, text=True, cwd="/")
    if userns.returncode != 0:
        pytest.skip(f"unprivileged user namespaces are not available here: {userns.stderr.strip()}")
    launcher = public_tmp / "sandbox_launch.py"  # a copy: the repository may be private to its owner
    shutil.copyfile(LAUNCHER, launcher)
    work, secret = public_tmp / "work", public_tmp / "secret.txt"
    work.mkdir(mode=0o777)
    os.chmod(work, 0o777)
    secret.write_text("the grader's")
    os.chmod(secret, 0o644)  # readable by nobody on the host: only the sandbox hides it
    marker = f"polyglot-rootless-{os.getpid()}"
    sandbox = Sandbox(work, work)
    config = {**sandbox.config(), "keep": [{"path": str(work), "writable": True}], "rootless": True}
    with socket.create_server(("127.0.0.1", 0)) as listening:
        run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-I", "-S",
                              str(launcher), json.dumps(config), "--", python, "-c", ROOTLESS_PROBE, str(secret),
                              str(listening.getsockname()[1]), marker],
                             capture_output=True, text=True, timeout=60, cwd="/")
    assert run.returncode == 0, run.stderr
    said = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines())
    assert said["uid"].split()[0] == "65534" and said["uid"].endswith("pid 1")
    assert said["procs"] == "[1]"  # no process of the host, the grader's included
    assert said["hidden"] == "FileNotFoundError" and said["network"] == "ConnectionRefusedError"
    assert said["write_outside"] in ("PermissionError", "OSError") and said["write_own"] == "DONE"
    assert (work / "own.txt").read_text() == "ok"
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
