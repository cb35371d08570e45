"""Start a polyglot_lab.serving server in its own process on 127.0.0.1, wait until it answers, stop it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """with ServerProcess(model_dir, codec_path) as server: httpx.post(server.url(":predict"), ...)"""

    def __init__(self, model_dir: Path, codec: Path, name: str = "digits", startup_s: float = 90.0,
                 cwd: Path | None = None):
        self.model_dir, self.codec, self.name, self.startup_s, self.cwd = model_dir, codec, name, startup_s, cwd
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, suffix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/v1/models/{self.name}{suffix}"

    def __enter__(self) -> "ServerProcess":
        import httpx

        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "polyglot_lab.serving", str(self.model_dir), "--codec", str(self.codec),
             "--name", self.name, "--port", str(self.port)],
            cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode}: "
                                   f"{self.process.stderr.read().decode(errors='replace')[-800:]}")
            try:
                if httpx.get(self.url(), timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not answer within {self.startup_s:.0f} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process:
            for stream in (self.process.stdout, self.process.stderr):
                stream.close()

    def __exit__(self, *exc) -> None:
        self.stop()
