"""The grader's side of the checker: a process, in the kernel's sandbox, that opens and runs what a submission
produced (polyglot_lab/checker). One per graded module, started on first use and reused by every check.

    checker = Checker([workdir], device="cpu")
    y = checker.call("keras_predict", path=str(workdir / "model.keras"), x=X)["y"]

The checker reads the run's working directory, writes only its scratch folder, has no network, no grader files and
an environment from an allow-list. Answers are plain data: JSON values on one line (bounded), arrays as .npy files
read without pickle, symbolic links refused. A call that fails raises CheckerError with the checker's bounded
message; one that runs too long, or a checker that dies or passes a limit, costs that call only: the process is
killed (every process of its user) and the next call starts a new one.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from graders.limits import Limits, Watchdog, kill_user
from graders.sandbox import PRIVATE_TMP, Sandbox, availability, clean_env, user_of
from polyglot_lab.checker.client import CheckerClient, checker_env

CHECKER_LIMITS = Limits(memory_mb=6000, processes=32, disk_mb=2000)


class Checker(CheckerClient):
    """The checker in the kernel's sandbox (its own user, no network, no grader files, an allow-listed
    environment), watched for memory, processes and disk."""

    def __init__(self, readable: list[Path], device: str = "cpu", hide: tuple[Path, ...] = (),
                 limits: Limits = CHECKER_LIMITS):
        super().__init__(device)
        self.readable = tuple(Path(p).resolve() for p in readable)
        self.hide, self.limits = tuple(hide), limits
        self.watchdog: Watchdog | None = None
        self.sandboxed = False

    def _launch(self, argv: list[str], scratch: Path) -> subprocess.Popen:
        self.sandboxed = availability() is None
        if self.sandboxed:
            argv = Sandbox(scratch, scratch, self.hide, self.readable).wrap(argv)
        process = subprocess.Popen(argv, cwd=scratch, env=checker_env(self.device, clean_env()),
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        self.watchdog = Watchdog(process.pid, self.limits, folders=(scratch,),
                                 private=PRIVATE_TMP if self.sandboxed else ())
        self.watchdog.start()
        return process

    def _stop(self) -> None:
        """Stop the checker and every process of its user."""
        assert self.process is not None
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog.kill_all()
        if self.sandboxed:
            kill_user(user_of(self.process.pid))

    def _stopped_why(self) -> str | None:
        return self.watchdog.reason if self.watchdog is not None and self.watchdog.reason else None

    def _open_to_checker(self, value) -> None:
        """Let the checker's user read a path it is given: its folders from the readable root down, and its files
        (a kernel's own user wrote them, a test's temporary folders are private). Nothing outside `readable`."""
        if isinstance(value, (list, tuple, dict)):  # paths inside a job's description (converter cases)
            for item in value.values() if isinstance(value, dict) else value:
                self._open_to_checker(item)
            return
        if not isinstance(value, (str, Path)) or not os.path.isabs(value) or not os.path.exists(value):
            return
        path = Path(os.path.realpath(value))
        roots = (*self.readable, *([Path(os.path.realpath(self.scratch))] if self.scratch else []))
        root = next((r for r in roots if r == path or r in path.parents), None)
        if root is None:
            return
        for folder in [root, *(a for a in path.parents if root in a.parents)]:
            os.chmod(folder, os.stat(folder).st_mode | 0o555)
        for found in [path, *(path.rglob("*") if path.is_dir() else [])]:
            if not found.is_symlink():
                os.chmod(found, os.stat(found).st_mode | (0o555 if found.is_dir() else 0o444))
