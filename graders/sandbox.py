"""The graded kernel's sandbox: what it can see, reach and change.

When the grader runs as root on Linux (a grading machine, a container), each kernel starts through
graders/sandbox_launch.py and gets:
  - no network: a network namespace of its own with only a loopback (a notebook's own server on 127.0.0.1 works);
  - a file system without the grader: the repository is replaced by an empty folder in which only the learner's
    package (polyglot_lab/), the catalogue (exercises/), the learner notebooks (notebooks/), the Python installation
    and folders on PYTHONPATH come back, read-only; no solutions/, graders/, tests/, examples/ or reports/. /tmp, /dev/shm and
    /var/tmp are empty and its own; the grading user's home and the class's submissions folder are hidden too;
  - a user id of its own: it cannot write the grader's files or signal the grader or another kernel, and setuid
    programs cannot give it root back; at most MAX_TASKS processes and threads (a fork bomb stops there);
  - its working directory (the submission and the grader's inputs) is the only place it can write that outlives it.
It talks to the grader over Unix sockets in a folder of its own (the kernel's TCP ports would be in its namespace).

Not root, on Linux with unprivileged user namespaces: the same launcher in a user namespace (rootless), with mount,
network and PID namespaces of its own, as the grading user (no user id of its own). Elsewhere (macOS, containers
that forbid namespaces) the kernel runs without it, with the limits of graders/limits.py only. Every result says
which protection applied. POLYGLOT_SANDBOX=off turns it off. The checker (graders/checker.py) runs in the same.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client import AsyncKernelManager

import polyglot_lab
from polyglot_lab.catalogue import REPO

LAUNCHER = Path(__file__).with_name("sandbox_launch.py")
VISIBLE_IN_REPO = ("polyglot_lab", "exercises", "notebooks")
PRIVATE_TMP = ("/tmp", "/dev/shm", "/var/tmp")
SYSTEM = tuple(Path(p) for p in ("/usr", "/etc", "/lib", "/lib64", "/bin", "/sbin", "/dev", "/proc", "/sys"))
MAX_TASKS = 4096        # processes and threads of one kernel's user (TensorFlow and torch start a few dozen threads)
TMPFS_MB = 2048         # each private /tmp-like folder; it is memory, outside the watchdog's view of resident size
HOME = "/tmp/polyglot-home"
DISABLE = "POLYGLOT_SANDBOX"
UID_BASE = 200_000      # as in sandbox_launch.py: a sandboxed process runs as UID_BASE + its launcher's pid


@dataclass(frozen=True)
class Sandbox:
    workdir: Path                          # the submission's folder: the kernel's working directory, writable
    ipc_dir: Path                          # the kernel's sockets and connection file, writable
    hide: tuple[Path, ...] = field(default=())  # more folders to hide (the submissions, the result store)
    readable: tuple[Path, ...] = field(default=())  # more folders it may read, not write (the checker: the run's)

    def keep(self) -> list[dict]:
        visible = [REPO / name for name in VISIBLE_IN_REPO if (REPO / name).is_dir()]
        visible += [Path(polyglot_lab.__file__).parent, installed_package()]  # the grader's and the kernel's
        visible += [Path(p) for p in {sys.prefix, sys.base_prefix}]
        visible += [p for p in python_path() if p.is_dir() and p != REPO and p not in REPO.parents]
        visible += list(self.readable)
        folders = [{"path": str(p.resolve()), "writable": False} for p in visible]
        return folders + [{"path": str(p.resolve()), "writable": True} for p in (self.workdir, self.ipc_dir)]

    def cover(self) -> list[str]:
        """Folders replaced by an empty tmpfs, outermost first (one inside another is then already gone)."""
        covered = [Path(p) for p in PRIVATE_TMP] + [Path.home(), REPO, *self.hide]
        safe = [p.resolve() for p in covered if _may_hide(p.resolve())]
        return [str(p) for p in sorted(set(safe), key=lambda p: len(p.parts))]

    def config(self, network_off: bool = True) -> dict:
        return {"keep": self.keep(), "cover": self.cover(), "cwd": str(self.workdir.resolve()), "home": HOME,
                "network_off": network_off, "max_tasks": MAX_TASKS, "tmpfs_mb": TMPFS_MB, "rootless": rootless()}

    def wrap(self, argv: list[str]) -> list[str]:
        return [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(self.config()), "--", *argv]


def user_of(pid: int) -> int:
    """The user id sandbox_launch.py gives the process it starts as `pid` (every process it starts has it)."""
    return UID_BASE + pid


# What a kernel or checker inherits of the grader's environment: what Python, the frameworks and the course need to
# run as configured, nothing else (a token set for `make grade` must not be readable by learner code).
ENV_ALLOWED = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "PYTHONPATH", "PYTHONHASHSEED",
               "VIRTUAL_ENV", "LD_LIBRARY_PATH", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "KINETO_LOG_LEVEL", "TF_FORCE_GPU_ALLOW_GROWTH",
               "TF_ENABLE_ONEDNN_OPTS", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
               "NVPL_BLAS_DEBUG_CPU_TYPE", "MPLBACKEND", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
               "PYDEVD_DISABLE_FILE_VALIDATION", "JUPYTER_PLATFORM_DIRS")
ENV_PREFIXES = ("POLYGLOT_",)


def clean_env(**extra: str) -> dict[str, str]:
    """The grader's environment reduced to ENV_ALLOWED (and POLYGLOT_* settings), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOWED or k.startswith(ENV_PREFIXES)}
    env.update(extra)
    return env


@functools.lru_cache(maxsize=1)
def installed_package() -> Path:
    """The polyglot_lab a kernel imports (the grader may run from another copy, e.g. a Gradescope bundle)."""
    found = subprocess.run([sys.executable, "-I", "-c", "import polyglot_lab; print(polyglot_lab.__path__[0])"],
                           cwd="/", check=False, capture_output=True, text=True, timeout=60).stdout.strip()
    return Path(found) if found else Path(polyglot_lab.__file__).parent


def python_path() -> list[Path]:
    """Folders on the kernel's PYTHONPATH (an instructor's extra packages, the test suite's toy module): kept
    read-only, unless one would bring the whole repository back."""
    return [Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


def _may_hide(path: Path) -> bool:
    """Never hide the root, a system folder or anything in one. (Python, its virtual environment and the learner's package come
    back even from inside a hidden folder: they are bound back after the covers.)"""
    return path != Path("/") and not any(path == s or path in s.parents or s in path.parents for s in SYSTEM)


@functools.lru_cache(maxsize=1)
def availability() -> str | None:
    """None when kernels can be sandboxed here, else why not (said in every result)."""
    if os.environ.get(DISABLE, "").lower() in ("0", "off", "no", "false"):
        return f"turned off ({DISABLE}={os.environ[DISABLE]})"
    if sys.platform != "linux":
        return "it needs Linux namespaces"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="polyglot-sandbox-probe-") as tmp:
        probe = Sandbox(Path(tmp), Path(tmp))
        try:
            done = subprocess.run(probe.wrap([sys.executable, "-I", "-S", "-c", "pass"]),
                                  check=False, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"it could not start: {exc}"
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode
        if rootless():
            return f"the grader is not root and unprivileged user namespaces are not available here ({why})"
        return f"it could not start: {why}"
    return None


def rootless() -> bool:
    """Not root: the sandbox then rests on an unprivileged user namespace (same user, no user id of its own)."""
    return os.geteuid() != 0


def protection() -> str:
    """One line for results and reports: what protected the grader from this kernel."""
    why_not = availability()
    if why_not is None and rootless():
        return ("rootless sandbox: no network, grader files hidden, own /tmp and processes (a user namespace); "
                "the grading user's id")
    if why_not is None:
        return "sandbox: no network, grader files hidden, own user and /tmp"
    return f"no sandbox ({why_not}): time, memory, process and output limits only"


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager that starts its kernel inside a Sandbox, over Unix sockets."""

    sandbox: Sandbox | None = None

    def format_kernel_cmd(self, extra_arguments=None) -> list[str]:
        argv = super().format_kernel_cmd(extra_arguments)
        return self.sandbox.wrap(argv) if self.sandbox is not None else argv


def kernel_manager(ipc_dir: Path, sandbox: Sandbox | None, kernel_name: str = "python3") -> AsyncKernelManager:
    """A kernel manager whose kernel listens on Unix sockets in ipc_dir, in the sandbox when there is one. Sockets
    also with no sandbox: TCP ports picked by two grading workers at once could collide and kill a kernel."""
    km = SandboxedKernelManager(kernel_name=kernel_name, transport="ipc", ip=str(ipc_dir / "kernel"),
                                connection_file=str(ipc_dir / "connection.json"))
    km.sandbox = sandbox
    return km
