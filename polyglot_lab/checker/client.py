"""The client side of the checker protocol (polyglot_lab/checker/__main__.py): start the process, send a request,
read one bounded answer. The learner's in-notebook checks use it as it is, on their own files (`LocalChecker`);
the grader runs the same protocol in its sandbox, with a watchdog (graders/checker.py).

    with LocalChecker(device="cpu") as checker:
        y = checker.call("keras_predict", path="digits.keras", x=X)["y"]

Answers are plain data: JSON values on one line (bounded), arrays as .npy files read without pickle, links refused.
A call that fails raises CheckerError with the checker's bounded message; one that runs too long, or a checker
that dies, costs that call only: the process is stopped and the next call starts a new one.
"""
from __future__ import annotations

import collections
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NoReturn

import numpy as np

CALL_TIMEOUT_S = 300
ANSWER_BYTES = 4 * 2**20        # one answer line: values only, arrays travel as files
ARRAY_BYTES = 512 * 2**20       # one array file
MESSAGE_CHARS = 400


class CheckerError(Exception):
    """The checker could not do what was asked: `kind` is the exception's type there (or "timeout", "crashed",
    "unsafe"), `message` its first line, bounded."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind, self.message = kind, message[:MESSAGE_CHARS]

    @property
    def unsafe(self) -> bool:
        return self.kind == "unsafe"


def checker_env(device: str, base: dict[str, str]) -> dict[str, str]:
    """The checker's environment: quiet TensorFlow, Keras on TensorFlow, and no GPU when the run is on the CPU."""
    env = {**base, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "POLYGLOT_GRADING": "1"}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


class CheckerClient:
    """One checker process, started on first use and restarted after a crash or a timeout. Subclasses say how it is
    launched (`_launch`) and stopped (`_stop`)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.process: subprocess.Popen | None = None
        self.scratch: Path | None = None
        self.starts = 0
        self._calls = 0
        self._stderr: collections.deque = collections.deque(maxlen=64)

    # -- life --------------------------------------------------------------------------------------
    def _launch(self, argv: list[str], scratch: Path) -> subprocess.Popen:
        return subprocess.Popen(argv, cwd=scratch, env=checker_env(self.device, dict(os.environ)),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)

    def _start(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="polyglot-checker-"))
        os.chmod(self.scratch, 0o755)
        self.process = self._launch([sys.executable, "-I", "-m", "polyglot_lab.checker"], self.scratch)
        self.starts += 1
        threading.Thread(target=self._drain_stderr, args=(self.process.stderr,), daemon=True).start()

    def _drain_stderr(self, stream) -> None:
        """Keep the last lines the checker printed (for a crash's message), never more."""
        for line in iter(stream.readline, b""):
            self._stderr.append(line[:1000].decode(errors="replace").rstrip())

    def _stop(self) -> None:
        """Stop the process (the grader's checker also stops every process of its sandbox user)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()

    def close(self) -> None:
        """Stop the checker; remove its scratch folder."""
        if self.process is not None:
            self._stop()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is None:
                    continue
                try:
                    stream.close()
                except OSError:
                    pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.process = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ensure_running(self) -> None:
        """A checker for the next call: the running one, or a new one after a crash, a timeout or a close."""
        if self.process is None or self.process.poll() is not None:
            self.close()
            self._start()

    def folder(self, name: str) -> Path:
        """A new folder in the checker's scratch for files handed over (the grader's exports, its models):
        readable there, and gone with the checker."""
        self._ensure_running()
        assert self.scratch is not None  # _ensure_running made it
        self._calls += 1
        path = self.scratch / f"{name}-{self._calls}"
        path.mkdir()
        return path

    # -- calls -------------------------------------------------------------------------------------
    def _open_to_checker(self, value) -> None:
        """Let the checker read a path it is given (the sandboxed checker runs as another user)."""

    def _stopped_why(self) -> str | None:
        """Why a watchdog stopped the checker, if one did."""
        return None

    def call(self, op: str, timeout_s: float = CALL_TIMEOUT_S, **args) -> dict:
        """Run `op` with `args` (JSON values, NumPy arrays, paths) in the checker: its values and arrays, by name."""
        self._ensure_running()
        assert self.scratch is not None and self.process is not None and self.process.stdin is not None
        self._calls += 1
        inputs, out = self.scratch / f"in-{self._calls}", self.scratch / f"out-{self._calls}"
        inputs.mkdir()
        arrays, values = {}, {}
        for name, value in args.items():
            self._open_to_checker(value)
            if isinstance(value, np.ndarray):
                np.save(inputs / f"{name}.npy", value, allow_pickle=False)
                arrays[name] = str(inputs / f"{name}.npy")
            else:
                values[name] = str(value) if isinstance(value, Path) else value
        for path in [inputs, *inputs.iterdir()]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        request = {"op": op, "args": values, "arrays": arrays, "out": str(out)}
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            answer = self._answer(timeout_s)
            if not answer.get("ok"):
                kind = "unsafe" if answer.get("unsafe") else str(answer.get("type", "Error"))[:80]
                raise CheckerError(kind, str(answer.get("message", ""))[:MESSAGE_CHARS])
            found = dict(answer.get("values") or {})
            names = answer.get("arrays") or []
            for index, name in enumerate(names):
                found[str(name)] = read_array(out / f"{index}.npy")
            return found
        except OSError as exc:
            self._crashed(f"it stopped answering ({type(exc).__name__})")
        finally:
            shutil.rmtree(inputs, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)

    def _answer(self, timeout_s: float) -> dict:
        """One line from the checker, within timeout_s and ANSWER_BYTES; else the checker is stopped."""
        assert self.process is not None and self.process.stdout is not None  # called while it runs
        fd = self.process.stdout.fileno()
        deadline, data = time.monotonic() + timeout_s, b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                self._crashed(f"it ran past the limit of {timeout_s:.0f} s", kind="timeout")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                if self._stopped_why():
                    self._crashed(f"it was stopped: {self._stopped_why()}")
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                reason = self._stopped_why()
                self._crashed(f"it was stopped: {reason}" if reason else "it crashed")
            data += chunk
            if len(data) > ANSWER_BYTES:
                self._crashed("its answer was too long")
        try:
            answer = json.loads(data.split(b"\n", 1)[0])
        except ValueError:
            self._crashed("its answer was not JSON")
        if not isinstance(answer, dict):
            self._crashed("its answer was not a JSON object")
        return answer

    def _crashed(self, why: str, kind: str = "crashed") -> NoReturn:
        last = next((line for line in reversed(self._stderr) if line.strip()), "")
        self.close()
        raise CheckerError(kind, f"the process that ran it {why}" + (f" ({last[:200]})" if last and kind != "timeout" else ""))


class LocalChecker(CheckerClient):
    """The checker as a learner's in-notebook checks start it: a plain child process of the kernel, on the learner's
    own files (no sandbox: it runs nothing but what the learner wrote, with the learner's rights)."""


def read_array(path: Path) -> np.ndarray:
    """An array the checker wrote: a regular file (no link followed), bounded in size, no pickle."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise CheckerError("crashed", f"an answer's array is missing or a link ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_size > ARRAY_BYTES:
            raise CheckerError("crashed", f"an answer's array is over {ARRAY_BYTES // 2**20} MB")
        try:
            return np.load(handle, allow_pickle=False)
        except ValueError as exc:
            raise CheckerError("crashed", f"an answer's array is not a plain .npy file: {str(exc)[:100]}") from None
