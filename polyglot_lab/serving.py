"""A REST server for a TensorFlow SavedModel, compatible with TensorFlow Serving's REST API.

    POST /v1/models/<name>:predict     {"instances": [...]} (rows) or {"inputs": ...} (columns)
    GET  /v1/models/<name>             the model's status
    GET  /v1/models/<name>/metadata    its serving signature

The server owns what every deployment needs: routing, loading the model, limits on the request size,
running the model off the event loop, and turning every failure into a JSON ``{"error": ...}`` with a
status code; it never dies on a request. A *codec* owns what the lesson is about (module 04):

    codec.request_to_tensors(body: bytes, inputs: dict) -> (feed: dict[str, np.ndarray], layout: "row" | "columnar")
    codec.response_from_tensors(outputs: dict[str, np.ndarray], layout) -> dict (JSON-ready)

``inputs`` describes the signature: ``{name: {"dtype": "float32", "shape": [None, 64]}}``. A codec raises
``BadRequest`` for a request it refuses (answered with 400); anything else it raises is a bug in the
server and answered with 500.

    python -m polyglot_lab.serving MODEL_DIR --codec CODEC.py [--name digits] [--port 8501]
    with Server(MODEL_DIR, CODEC.py) as server: ...      # from a notebook or a test: its own process
"""

import argparse
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

MAX_BODY_BYTES = 8 * 1024 * 1024
LOG = logging.getLogger("polyglot_lab.serving")


class BadRequest(ValueError):
    """The request is invalid (wrong shape, dtype, key, ...): the client gets 400 and this message."""


def load_codec(path: str | Path) -> ModuleType:
    """Import a codec from a .py file (a learner's, written by the notebook)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"codec_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("request_to_tensors", "response_from_tensors"):
        if not callable(getattr(module, name, None)):
            raise ImportError(f"{path.name} must define {name}()")
    return module


class ServedModel:
    """A SavedModel's serving signature, with its inputs and outputs described in plain Python."""

    def __init__(self, model_dir: str | Path, name: str, signature: str = "serving_default"):
        import tensorflow as tf

        self.name, self.signature_name, self.version = name, signature, "1"
        self.loaded = tf.saved_model.load(str(model_dir))
        if signature not in self.loaded.signatures:
            raise ValueError(f"{model_dir} has no '{signature}' signature (it has {list(self.loaded.signatures)})")
        self.function = self.loaded.signatures[signature]
        _, input_specs = self.function.structured_input_signature
        self.inputs = {k: _describe(v) for k, v in input_specs.items()}
        self.outputs = {k: _describe(v) for k, v in self.function.structured_outputs.items()}

    def predict(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf
        tensors = {k: tf.constant(v, dtype=self.inputs[k]["dtype"]) for k, v in feed.items()}
        return {k: v.numpy() for k, v in self.function(**tensors).items()}

    def status(self) -> dict:
        return {"model_version_status": [{"version": self.version, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self) -> dict:
        def tensor_info(spec):
            return {"dtype": spec["datatype"], "name": spec["name"],
                    "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec["shape"]],
                                     "unknown_rank": False}}
        signature = {"inputs": {k: tensor_info(v) for k, v in self.inputs.items()},
                     "outputs": {k: tensor_info(v) for k, v in self.outputs.items()},
                     "method_name": "tensorflow/serving/predict"}
        return {"model_spec": {"name": self.name, "signature_name": "", "version": self.version},
                "metadata": {"signature_def": {"signature_def": {self.signature_name: signature}}}}


def _describe(spec) -> dict:
    from tensorflow.core.framework import types_pb2

    return {"dtype": spec.dtype.name, "shape": list(spec.shape.as_list()), "name": spec.name or "",
            "datatype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum)}  # DT_FLOAT, as TF Serving says


def create_app(model: ServedModel, codec, max_body_bytes: int = MAX_BODY_BYTES):
    """The ASGI app (FastAPI) serving `model` through `codec`."""
    from fastapi import (  # at call time; no `from __future__ import annotations` here,
        FastAPI,
        Request,
    )

    # so that FastAPI sees the Request annotation itself
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    app = FastAPI(title=f"{model.name} (TensorFlow Serving REST API)", docs_url=None, redoc_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def unknown(name: str) -> JSONResponse:
        return error(404, f"Servable not found for request: Latest({name})")

    @app.get("/v1/models/{name}")
    def status(name: str):
        return model.status() if name == model.name else unknown(name)

    @app.get("/v1/models/{name}/metadata")
    def metadata(name: str):
        return model.metadata() if name == model.name else unknown(name)

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request):
        if name != model.name:
            return unknown(name)
        body = await request.body()
        if len(body) > max_body_bytes:
            return error(413, f"the request body has {len(body):,} bytes, over the limit of {max_body_bytes:,}")
        try:
            feed, layout = codec.request_to_tensors(body, model.inputs)
            outputs = await run_in_threadpool(model.predict, feed)
            return JSONResponse(codec.response_from_tensors(outputs, layout))
        except BadRequest as exc:
            return error(400, str(exc))
        except Exception as exc:
            LOG.exception("predict failed")
            return error(500, f"internal error: {type(exc).__name__}: {exc}")

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """Run the server in its own process on 127.0.0.1; wait until it answers; stop it (and its children).

        with Server("digits_savedmodel", "serving_codec.py") as server:
            httpx.post(server.url(":predict"), json={"instances": ...})
    """

    def __init__(self, model_dir: Path, codec: Path, name: str = "digits", startup_s: float = 90.0,
                 cwd: Path | None = None):
        self.model_dir, self.codec, self.name, self.startup_s, self.cwd = model_dir, codec, name, startup_s, cwd
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, suffix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/v1/models/{self.name}{suffix}"

    def __enter__(self) -> "Server":
        import httpx

        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
        # stderr to a file, not a pipe: a process the codec left behind may hold the pipe open forever, and a
        # chatty codec would fill it and stall the server
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "polyglot_lab.serving", str(self.model_dir), "--codec", str(self.codec),
             "--name", self.name, "--port", str(self.port)],
            cwd=self.cwd, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode}: {self.stderr_tail()}")
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
            self.stderr.close()

    def stderr_tail(self, chars: int = 800) -> str:
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - chars))
        return self.stderr.read().decode(errors="replace")

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polyglot_lab.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--codec", required=True, help="a .py file defining request_to_tensors and response_from_tensors")
    parser.add_argument("--name", default="digits")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args(argv)
    try:
        codec, model = load_codec(args.codec), ServedModel(args.model_dir, args.name)
    except Exception as exc:  # noqa: BLE001 - a clear line instead of a traceback
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn
    print(json.dumps({"serving": args.name, "url": f"http://{args.host}:{args.port}/v1/models/{args.name}"}), flush=True)
    uvicorn.run(create_app(model, codec), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: codecs raise polyglot_lab.serving.BadRequest,
    # which must be the class the server catches.
    from polyglot_lab.serving import main as serving_main
    sys.exit(serving_main())
