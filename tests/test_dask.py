"""Grading on Dask (issue 18), with real processes on 127.0.0.1 that these tests start and stop: a `dask scheduler`
and `dask worker`s (graders.cluster.ProcessCluster). A class of three toy learners (one solved, one with a mistake,
one who submitted nothing) graded through them gives a serial run's gradebook and verdicts, loses nothing when a
worker is killed mid-task or the client is killed half-way, and a task that kills every worker it is tried on
becomes a row that says why."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import nbformat
import psutil
import pytest

from conftest import SOLVED_TOY, TESTS, TOY, make_notebook
from graders.cluster import ProcessCluster, open_cluster
from graders.grade import NOT_GRADED, grade_class
from graders.reports import gradebook_csv
from graders.results import SKIPPED
from graders.store import ResultStore


def verdicts(results):
    return [(m.learner, c.exercise, c.check, c.status, c.score, c.message) for r in results for m in r.modules
            for c in m.checks]


def gradebook(results, spec) -> str:
    return gradebook_csv(results, [spec.id])


@pytest.fixture(scope="module")
def serial(tmp_path_factory, toy_spec):
    """The serial run's results (one worker in this process), for a copy of the classroom."""
    folder = tmp_path_factory.mktemp("serial") / "submissions"
    wrong = [(s.replace("2 * x", "3 * x"), t) for s, t in SOLVED_TOY]
    for learner, cells in (("ann", SOLVED_TOY), ("bob", wrong), ("cat", None)):
        (folder / learner).mkdir(parents=True)
        if cells:
            nbformat.write(make_notebook(cells), folder / learner / toy_spec.notebook_name)
    return grade_class(folder, [toy_spec], "cpu")


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and two workers without nannies (a worker killed stays dead); Dask's allowed-failures 1: a task
    is given up after its second worker died."""
    with ProcessCluster(workers=2, worker_args=("--no-nanny",),
                        scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}) as started:
        yield started


def test_a_cluster_grades_as_a_serial_run(classroom, toy_spec, serial, cluster, tmp_path):
    with open_cluster(scheduler=cluster.address) as on:
        results = grade_class(classroom, [toy_spec], "cpu", store=ResultStore(tmp_path / "grades.sqlite"), cluster=on)
        assert on.kind == "external" and on.stats.tasks == 3          # all three were tasks on the cluster's workers
        assert 0 < on.stats.payload_bytes < 64 * 1024 and 0 < on.stats.result_bytes < 64 * 1024
    assert verdicts(results) == verdicts(serial)
    assert gradebook(results, toy_spec) == gradebook(serial, toy_spec)


def test_a_worker_killed_while_it_grades_costs_only_a_retry(classroom, toy_spec, serial, cluster):
    killed: list[int] = []

    def kill_the_first_worker_that_grades():
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for worker in cluster.workers:
                try:
                    busy = worker.poll() is None and psutil.Process(worker.pid).children(recursive=True)
                except psutil.NoSuchProcess:
                    busy = False
                if busy:  # a kernel (or checker) of its grading is running: kill the worker and its session
                    cluster.kill(worker)
                    killed.append(worker.pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_first_worker_that_grades)
    killer.start()
    try:
        results = grade_class(classroom, [toy_spec], "cpu", scheduler=cluster.address)
    finally:
        killer.join()
        cluster.add_worker("--no-nanny")  # two workers again for the next test
    assert killed, "no worker was seen grading"
    assert [r.learner for r in results] == ["ann", "bob", "cat"]
    assert verdicts(results) == verdicts(serial)
    assert gradebook(results, toy_spec) == gradebook(serial, toy_spec)


CLIENT = """
import sys
from pathlib import Path
from graders.grade import grade_class
from graders.store import ResultStore
from polyglot_lab.catalogue import load_module
spec = load_module(Path(sys.argv[1]))
grade_class(Path(sys.argv[2]), [spec], "cpu", store=ResultStore(Path(sys.argv[3])), scheduler=sys.argv[4])
"""


def test_a_killed_client_resumes_from_the_store(classroom, toy_spec, serial, cluster, tmp_path):
    for learner in ("dan", "eve"):  # five learners: the client is killed once one or two are stored
        (classroom / learner).mkdir()
        (classroom / learner / toy_spec.notebook_name).write_bytes(
            (classroom / "ann" / toy_spec.notebook_name).read_bytes())
    db = tmp_path / "grades.sqlite"
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(TOY / "toy_module.toml"), str(classroom), str(db),
                               cluster.address], start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while client.poll() is None and time.monotonic() < deadline:
            if db.exists() and ResultStore(db).latest():
                break
            time.sleep(0.1)
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
        client.wait()
    kept = {learner: r[toy_spec.id].graded_at for learner, r in ResultStore(db).latest().items()}
    assert 1 <= len(kept) < 5, f"the client was not killed half-way: {sorted(kept)} stored"

    results = grade_class(classroom, [toy_spec], "cpu", store=ResultStore(db), scheduler=cluster.address)
    reused = {m.learner for r in results for m in r.modules if m.reused == "unchanged"}
    assert reused == set(kept)                               # what the killed client stored is not graded again
    assert all(ResultStore(db).latest()[learner][toy_spec.id].graded_at == at for learner, at in kept.items())
    by_name = {r.learner: r for r in results}
    assert verdicts([by_name[n] for n in ("ann", "bob", "cat")]) == verdicts(serial)
    assert verdicts([by_name["dan"]])[0][1:] == verdicts([by_name["ann"]])[0][1:]
    assert gradebook([by_name[n] for n in ("ann", "bob", "cat")], toy_spec) == gradebook(serial, toy_spec)


def test_a_task_that_kills_every_worker_becomes_a_row_that_says_why(classroom, toy_spec, serial, tmp_path):
    """Workers under nannies (a worker that dies is restarted), each loading tests/dask_fault.py: grading bob kills
    the worker. Dask's allowed-failures is 0 here, so bob's task is given up after one death (a retry on another
    worker is test_a_worker_killed_while_it_grades_costs_only_a_retry's; `make grade` keeps Dask's default, 3): the
    class still finishes, bob's row says why, and the store keeps that row under a key no later run reuses."""
    faulty = ProcessCluster(workers=2, worker_args=("--preload", str(TESTS / "dask_fault.py")),
                            env={"POLYGLOT_TEST_KILL_WORKER_FOR": "bob"},
                            scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
    with faulty:
        db = tmp_path / "grades.sqlite"
        results = grade_class(classroom, [toy_spec], "cpu", store=ResultStore(db), scheduler=faulty.address)
    rows = {r.learner: r.modules[0] for r in results}
    assert sorted(rows) == ["ann", "bob", "cat"]
    bob = rows["bob"]
    assert bob.problem.startswith("could not be graded: its worker died while grading it, on each of the 1 worker(s)")
    assert bob.score == 0 and all(c.message == bob.problem for c in bob.checks if c.status != SKIPPED)
    others = [r for r in results if r.learner != "bob"]
    assert verdicts(others) == verdicts([r for r in serial if r.learner != "bob"])
    import sqlite3
    with sqlite3.connect(db) as connection:
        key = connection.execute("SELECT submission FROM results WHERE learner='bob'").fetchone()[0]
    assert key.startswith(NOT_GRADED)


def test_no_scheduler_at_the_address_is_said_before_any_work(tmp_path):
    from graders.cluster import ClusterError

    with pytest.raises(ClusterError, match=r"SCHEDULER=tcp://127.0.0.1:1: no Dask scheduler answers there"):
        open_cluster(scheduler="tcp://127.0.0.1:1", timeout_s=1)


def _listening() -> set[tuple[str, int]]:
    """The (address, port) pairs this test process and its children listen on (processes the tests started)."""
    root = psutil.Process(os.getpid())
    return {(conn.laddr.ip, conn.laddr.port) for proc in [root, *root.children(recursive=True)]
            for conn in proc.net_connections() if conn.status == psutil.CONN_LISTEN}


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_embedded_cluster_is_reachable_by_no_one_else(jobs):
    """Its scheduler runs whatever a client sends, with the grader's rights: in-process it has no socket, with
    worker processes it takes mutual TLS on 127.0.0.1 only; the dashboards listen on 127.0.0.1 only."""
    from distributed import Client

    before = _listening()  # the module's external test cluster may be running: not this cluster's
    with open_cluster(jobs=jobs) as cluster:
        opened = _listening() - before
        assert opened and {ip for ip, _ in opened} == {"127.0.0.1"}, opened
        if jobs == 1:
            assert cluster.address.startswith("inproc://")
        else:
            assert cluster.address.startswith("tls://127.0.0.1:")
            with pytest.raises(Exception):  # noqa: B017 - no certificate, no connection, whatever Dask raises
                Client(cluster.address, timeout=3, set_as_default=False)
