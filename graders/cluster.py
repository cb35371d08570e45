"""Where a class is graded: Dask distributed, at every scale (issue 18).

Each (learner, module) is one task. `open_cluster` gives a `Cluster`, a Dask client and what it runs on:

- JOBS=1, no SCHEDULER: one Dask worker inside this process (a thread), as `make grade` always graded: no second
  process of TensorFlow and torch, nothing to start (about 0.1 s);
- JOBS=N, no SCHEDULER: an embedded `LocalCluster` of N worker processes, one thread each, each under a nanny that
  restarts it when it grows past its memory limit (Dask's `memory_limit`, "auto": the machine's memory / N);
- SCHEDULER=tcp://host:8786: an existing cluster (`dask scheduler` and `dask worker --nthreads 1` on each machine,
  dask-jobqueue on Slurm or PBS, Dask's Kubernetes operator), started in the same environment as this checkout.

The client (graders.grade.grade_class) keeps the truth: it sends each task the notebook's bytes and receives the
result; the store and the reports never leave it. At most one task per worker thread is in flight, so a killed client
leaves no queue behind, a slow disk read never holds a class's notebooks in memory, and workers that join later (an
adaptive cluster) are used as they come. `ProcessCluster` starts a scheduler and workers as processes of their own on
127.0.0.1 (make bench, tests/test_dask.py).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The embedded clusters' Dask settings. The event loop of a worker that grades in this process shares the GIL with the
# grading; Dask's "event loop was unresponsive" warning would then be noise in the console.
EMBEDDED_CONFIG = {"distributed.admin.tick.limit": "1h", "distributed.scheduler.allowed-failures": 3}
POLL_S = 2.0  # how often the client looks for workers that joined an external cluster


class ClusterError(ValueError):
    """The cluster cannot be used (no scheduler answers, workers of another grader version): one line, before work."""


@dataclass
class Stats:
    """What a run's tasks cost, summed over the tasks graded on workers: `task_s`, the seconds each spent in the
    worker-side function; `overhead_s`, the rest of each task's round trip as the client saw it (serialising the
    payload, the scheduler's transitions, both network hops, deserialising the result); the largest payload sent and
    result received, in bytes."""
    tasks: int = 0
    task_s: float = 0.0
    overhead_s: float = 0.0
    payload_bytes: int = 0
    result_bytes: int = 0

    def add(self, round_trip_s: float, task_s: float, payload: int, result: int) -> None:
        self.tasks += 1
        self.task_s += task_s
        self.overhead_s += max(round_trip_s - task_s, 0.0)
        self.payload_bytes, self.result_bytes = max(self.payload_bytes, payload), max(self.result_bytes, result)

    def line(self) -> str:
        if not self.tasks:
            return "Dask: no task was graded on a worker"
        per_task, overhead = self.task_s / self.tasks, self.overhead_s / self.tasks
        share = 100 * overhead / per_task if per_task else 0.0
        return (f"Dask: {self.tasks} task(s), {per_task:.1f} s each on a worker; scheduling and transfer "
                f"{1000 * overhead:.0f} ms per task ({share:.2f}% of a task); largest task {_size(self.payload_bytes)}, "
                f"largest result {_size(self.result_bytes)}")


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"


class Cluster:
    """A Dask client and what it grades on: "inline" (one worker thread in this process), "local" (an embedded
    LocalCluster of worker processes) or "external" (a scheduler at an address). Close it (or use `with`)."""

    def __init__(self, client, kind: str, local=None, threads: int | None = None, address: str = ""):
        import queue

        self.client, self.kind, self.local, self.fixed_threads, self.address = client, kind, local, threads, address
        self.stats = Stats()
        self._done: queue.Queue = queue.Queue()  # futures as they finish (their done-callbacks put them here)

    def submit(self, fn, arg, key: str):
        """One task; its future is handed to wait_some when it finishes (result, error or cancellation)."""
        future = self.client.submit(fn, arg, key=key, pure=False)
        future.add_done_callback(self._done.put)
        return future

    def capacity(self) -> int:
        """How many tasks may be in flight: one per worker thread (at least one, so that a cluster whose workers are
        still starting gets its first task)."""
        if self.fixed_threads is not None:
            return self.fixed_threads
        return max(1, sum(self.client.nthreads().values()))

    def wait_some(self, futures, timeout: float | None = None) -> list:
        """The futures of `futures` that finished, waiting until one has (or `timeout` seconds: then maybe none).
        (distributed.wait(return_when="FIRST_COMPLETED") was seen to miss a completion until its timeout here: the
        futures' own done-callbacks are used instead.)"""
        import queue

        wanted, finished = set(futures), []
        try:
            first = self._done.get(timeout=timeout)
        except queue.Empty:
            return []
        for future in [first, *self._drain()]:
            if future in wanted and future not in finished:
                finished.append(future)
        return finished

    def _drain(self) -> list:
        import queue

        drained = []
        while True:
            try:
                drained.append(self._done.get_nowait())
            except queue.Empty:
                return drained

    def poll_s(self) -> float:
        """How long the client waits for a result before it looks again: for workers that joined an external cluster,
        and for tasks past their deadline (graders.grade.task_deadline_s)."""
        return POLL_S

    def dashboard(self) -> str | None:
        """The scheduler's dashboard address, where it runs one (it needs bokeh on the scheduler's machine)."""
        try:
            info = self.client.scheduler_info()
        except Exception:  # noqa: BLE001 - the dashboard is information only; a scheduler that does not say has none
            return None
        port = (info.get("services") or {}).get("dashboard")
        if not port:
            return None
        host = self.address.split("://")[-1].rsplit(":", 1)[0] or "127.0.0.1"
        return f"http://{host}:{port}/status"

    def describe(self) -> str:
        if self.kind == "inline":
            return "one Dask worker in this process"
        if self.kind == "local":
            workers = self.client.scheduler_info().get("workers", {}).values()
            memory = {w.get("memory_limit", 0) for w in workers}
            limit = f", memory limit {_size(max(memory))} each" if memory and max(memory) else ""
            return f"an embedded Dask cluster of {self.fixed_threads} worker process(es){limit}"
        threads = self.client.nthreads()
        said = f"Dask scheduler {self.address}: {len(threads)} worker(s), {sum(threads.values())} thread(s)"
        dashboard = self.dashboard()
        return said + (f"; dashboard {dashboard}" if dashboard else "; no dashboard")

    def worker_facts(self) -> dict[str, dict]:
        """{worker address: {"grader": version, "protection": kernels' sandbox, "threads": n}} of the workers now
        connected (none for the in-process worker: it is this process)."""
        if self.kind == "inline":
            return {}
        threads = self.client.nthreads()
        facts = self.client.run(_facts)
        for address, fact in facts.items():
            fact["threads"] = threads.get(address, 1)
        return facts

    def warm(self) -> None:
        """Import the grader on every connected worker now, all at once (seconds: TensorFlow, torch): a worker that
        joins later pays it on its first task. Then a task's round trip measures Dask, not a first import."""
        if self.kind != "inline":
            self.client.run(_warm)
            self.client.run_on_scheduler(_warm)  # the scheduler unpickles each task's graph: the first needs graders

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.local is not None:
                self.local.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _warm(**_) -> None:
    from graders.grade import quiet_frameworks

    quiet_frameworks()


def _facts() -> dict:
    """Run on each worker: the grader version it would grade with, and how it protects its kernels."""
    from graders.sandbox import protection
    from graders.store import grader_version

    return {"grader": grader_version(), "protection": protection()}


def check_workers(cluster: Cluster) -> tuple[list[str], list[str]]:
    """(problems, warnings) about an external cluster's workers, each one line: a worker that cannot import this
    grader or runs another version of it would grade under a version the store does not record (a problem); a worker
    with several threads grades several notebooks in one process (a warning: start workers with --nthreads 1)."""
    from graders.store import grader_version

    try:
        facts = cluster.worker_facts()
    except Exception as exc:  # noqa: BLE001 - whatever a worker raised, the run must not start: say it in one line
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return [f"SCHEDULER={cluster.address}: a worker could not report its grader ({type(exc).__name__}: {first}); "
                "start the workers in this checkout's environment"], []
    problems, warnings = [], []
    ours = grader_version()
    for address, fact in sorted(facts.items()):
        if fact["grader"] != ours:
            problems.append(f"SCHEDULER={cluster.address}: worker {address} runs grader {fact['grader']}, this run "
                            f"is {ours}: start the workers from the same checkout and environment")
        if fact["threads"] > 1:
            warnings.append(f"worker {address} has {fact['threads']} threads: it grades that many notebooks in one "
                            "process (start workers with --nthreads 1 and --nworkers N)")
    if not facts:
        warnings.append(f"no worker is connected to {cluster.address} yet: tasks wait until one is")
    return problems, warnings


def open_cluster(jobs: int = 1, scheduler: str | None = None, worker_memory: str = "auto",
                 timeout_s: float = 10.0) -> Cluster:
    """The cluster a run grades on (module docstring). ClusterError when no scheduler answers at `scheduler`."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
        try:
            client = Client(address, timeout=timeout_s, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"SCHEDULER={scheduler}: no Dask scheduler answers there within {timeout_s:.0f} s "
                               f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}); start one "
                               "with `dask scheduler`") from None
        return Cluster(client, "external", address=address)
    if jobs < 1:
        raise ValueError(f"jobs must be 1 or more, not {jobs}")
    # A Dask scheduler runs whatever task a client sends it, with the grader's rights (root, where the sandbox is):
    # the embedded cluster must not be reachable by anyone else. In this process it listens on no socket (inproc);
    # with worker processes, on 127.0.0.1 only and with mutual TLS from a certificate made for this run, so another
    # user of the machine cannot connect. The dashboards listen on 127.0.0.1 only (Dask's default is every interface).
    loopback = {"dashboard_address": "127.0.0.1:0", "worker_dashboard_address": "127.0.0.1:0"}
    with dask.config.set(EMBEDDED_CONFIG):
        if jobs == 1:
            local = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, memory_limit=0,
                                 protocol="inproc://", **loopback)
            client = Client(local, set_as_default=False)
        else:
            from distributed.security import Security

            security = Security.temporary()
            local = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, memory_limit=worker_memory,
                                 host="127.0.0.1", security=security, **loopback)
            client = Client(local, security=security, set_as_default=False)
    return Cluster(client, "inline" if jobs == 1 else "local", local=local, threads=jobs, address=local.scheduler_address)


# -- a scheduler and workers as processes of their own (make bench, tests/test_dask.py) -----------------------------


def _dask_command() -> list[str]:
    return [str(Path(sys.executable).with_name("dask"))] if Path(sys.executable).with_name("dask").exists() \
        else [sys.executable, "-m", "dask"]


class ProcessCluster:
    """`dask scheduler` and `dask worker`s started here on 127.0.0.1, each in a session of its own (a free port, no
    dashboard), stopped by their own process ids. `env` is added to each process's environment; `scheduler_env` to
    the scheduler's only (a test sets Dask's allowed-failures there); `worker_args` go to every worker."""

    def __init__(self, workers: int = 2, env: dict | None = None, scheduler_env: dict | None = None,
                 worker_args: tuple[str, ...] = (), start_timeout_s: float = 60.0):
        self.folder = Path(tempfile.mkdtemp(prefix="polyglot-dask-"))
        self.env = {**os.environ, **(env or {})}
        self.worker_args, self.timeout = tuple(worker_args), start_timeout_s
        self.workers: list[subprocess.Popen] = []
        file = self.folder / "scheduler.json"
        self.scheduler = self._start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", str(file)], {**self.env, **(scheduler_env or {})}, "scheduler")
        deadline = time.monotonic() + self.timeout
        while not file.exists() or not file.read_text().strip():
            self._alive(self.scheduler, deadline)
            time.sleep(0.1)
        import json

        self.address = json.loads(file.read_text())["address"]
        for _ in range(workers):
            self.add_worker(wait=False)
        self.wait_for_workers()

    def _start(self, args: list[str], env: dict, name: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}-{len(self.workers)}.log", "wb")  # the process writes it; closed with ours
        return subprocess.Popen([*_dask_command(), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def _alive(self, process: subprocess.Popen, deadline: float) -> None:
        if process.poll() is not None or time.monotonic() > deadline:
            self.close()
            raise RuntimeError(f"a Dask process did not start (logs in {self.folder})")

    def add_worker(self, *extra: str, wait: bool = True) -> subprocess.Popen:
        """One more `dask worker` (one thread, no dashboard); with `wait`, returns once the scheduler counts it."""
        worker = self._start(["worker", self.address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                              *self.worker_args, *extra], self.env, "worker")
        self.workers.append(worker)
        if wait:
            self.wait_for_workers()
        return worker

    def wait_for_workers(self) -> None:
        """Return once the scheduler counts every worker of ours that is running."""
        from distributed import Client

        with Client(self.address, timeout=self.timeout, set_as_default=False) as client:
            client.wait_for_workers(len([w for w in self.workers if w.poll() is None]), timeout=self.timeout)

    def kill(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Signal one of our processes and everything in its session (a worker's nanny, worker and kernels)."""
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        for process in [*self.workers, self.scheduler]:
            self.kill(process, signal.SIGTERM)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ProcessCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
