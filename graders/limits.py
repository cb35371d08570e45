"""Limits on a graded kernel (and on the checker), enforced from the grader's side: resident memory and number of
processes of the whole process tree (watched a few times a second), what it wrote to disk (its working folder and,
in the sandbox, its private /tmp, /dev/shm and /var/tmp; watched about once a second), captured output per cell,
and no process left behind when the notebook is done. Time limits live in the executor."""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

import psutil

from polyglot_lab.checking import folder_bytes  # the watchdog's measure, shared with the checks


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 8000       # TensorFlow + torch + a model take about 2.5 GB; module 04 adds a server process
    processes: int = 64         # the kernel and everything it starts
    output_mb: float = 20.0     # captured output per cell; the rest is dropped with a note
    disk_mb: int = 4000         # written to its working folder and private temporary folders, together


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _resident_mb(process: psutil.Process) -> float:
    """Resident size (cheap: proportional set size would count forked copies fairly, but reading it takes 18 ms
    for a TensorFlow process, at every poll). Forked copies are counted once each; the process limit comes first."""
    try:
        return process.memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


class Watchdog(threading.Thread):
    """Polls the kernel's process tree; past a limit, records why and kills the tree (nbclient then sees a dead kernel)."""

    def __init__(self, pid: int, limits: Limits, interval_s: float = 0.2, folders: tuple = (),
                 private: tuple = ()):
        """`folders`: where it writes, counted file by file; `private`: its own tmpfs mounts (seen from here through
        /proc/<pid>/root), counted by what they hold."""
        super().__init__(daemon=True, name=f"watchdog-{pid}")
        self.pid, self.limits, self.interval_s = pid, limits, interval_s
        self.folders, self.private = tuple(folders), tuple(private)
        self.reason: str | None = None
        self.peak_mb = 0.0
        self.seen: dict[int, psutil.Process] = {}  # every process of the tree, to kill even after the kernel is gone
        self.group: int | None
        try:
            self.group = os.getpgid(pid)
        except ProcessLookupError:
            self.group = None
        self._stopped = threading.Event()

    def run(self) -> None:
        polls = 0
        while not self._stopped.wait(self.interval_s):
            polls += 1
            tree = process_tree(self.pid)
            if not tree:
                return
            self.seen.update((p.pid, p) for p in tree)
            if len(tree) > self.limits.processes:  # first: a fork bomb's copies would also look like memory
                self.reason = f"it started {len(tree) - 1} processes, over the limit of {self.limits.processes}"
            else:
                resident_mb = sum(_resident_mb(p) for p in tree)
                self.peak_mb = max(self.peak_mb, resident_mb)
                if resident_mb > self.limits.memory_mb:
                    self.reason = (f"it used {resident_mb:,.0f} MB of memory, over the limit of "
                                   f"{self.limits.memory_mb:,} MB")
            if not self.reason and polls % 5 == 0 and (self.folders or self.private):
                written_mb = self.written_mb()
                if written_mb > self.limits.disk_mb:
                    self.reason = (f"it wrote {written_mb:,.0f} MB to disk (its folder and temporary folders), over "
                                   f"the limit of {self.limits.disk_mb:,} MB")
            if self.reason:
                self.kill_all()
                return

    def written_mb(self) -> float:
        total = sum(folder_bytes(folder) for folder in self.folders)
        for folder in self.private:
            try:
                stat = os.statvfs(f"/proc/{self.pid}/root{folder}")
                total += (stat.f_blocks - stat.f_bfree) * stat.f_frsize
            except OSError:
                pass
        return total / 2**20

    def stop(self) -> None:
        self._stopped.set()

    def kill_all(self) -> None:
        """SIGKILL the kernel's process group and every process seen in its tree (even one that started a session
        of its own), never the grader's own group."""
        processes = {**self.seen, **{p.pid: p for p in process_tree(self.pid)}}
        if self.group is not None and self.group != os.getpgid(0):
            try:
                os.killpg(self.group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for process in processes.values():
            try:
                if process.is_running():  # psutil compares creation times: a reused PID is left alone
                    process.kill()
            except psutil.Error:
                pass


def kill_user(uid: int, rounds: int = 5) -> int:
    """SIGKILL every process running as `uid` (a sandbox's own user: double-forked and setsid processes included,
    which the tree of the kernel no longer shows). Rounds, because a process may fork while the others die.
    Returns how many were killed."""
    killed = 0
    for _ in range(rounds):
        found = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
        if not found:
            break
        for process in found:
            try:
                process.kill()
                killed += 1
            except psutil.Error:
                pass
        psutil.wait_procs(found, timeout=2)
    return killed
