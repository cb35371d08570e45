"""A REST server for a TensorFlow SavedModel, compatible with TensorFlow Serving's REST API
(https://www.tensorflow.org/tfx/serving/api_rest; tensorflow_serving/g3doc/api_rest.md in tensorflow/serving).

    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict   {"instances": ...} (rows) or {"inputs": ...} (columns),
                                                                 optionally "signature_name"
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]           the model's status
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata  its signatures

One version is served: the directory's number when MODEL_DIR is a TensorFlow Serving base path (numbered version
folders: the highest, as TF Serving's default version policy serves), else 1; `--label stable` names it. Routes are
matched as TF Serving matches them (its regular expressions, `model_servers/http_rest_api_util.cc`), and every error
is a JSON ``{"error": ...}`` with the status TF Serving gives it (`model_servers/http_server.cc`): an unknown model
or version 404, a malformed path or method, an unknown label or signature, a bad body 400.

The server owns what every deployment needs: routing, versions, labels and signatures, loading the model, limits on
the request size, refusing non-finite or out-of-range numbers, running the model off the event loop, and turning every
failure into an error answer; it never dies on a request. A *codec* owns what the lesson is about (module 04):

    codec.request_to_tensors(body: bytes, inputs: dict) -> (feed: dict[str, np.ndarray], layout: "row" | "columnar")
    codec.response_from_tensors(outputs: dict[str, np.ndarray], layout) -> dict (JSON-ready)

``inputs`` describes the chosen signature: ``{name: {"dtype": "float32", "shape": [None, 64]}}``. A codec raises
``BadRequest`` for a request it refuses (answered with 400); anything else it raises, or a feed that does not fit
the signature, is a bug in the server and answered with 500.

    python -m polyglot_lab.serving MODEL_DIR --codec CODEC.py [--name digits] [--port 8501] [--label stable]
    with Server(MODEL_DIR, CODEC.py) as server: ...      # from a notebook or a test: its own process
"""

import argparse
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import numpy as np

MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_SIGNATURE = "serving_default"
LOG = logging.getLogger("polyglot_lab.serving")

# TF Serving's routes (model_servers/http_rest_api_util.cc), each matched against the whole path, ignoring case
V1_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE)
INT64_MAX = 2**63 - 1
PREDICT_METHOD = "tensorflow/serving/predict"
METHOD_NAMES = {"classify": "tensorflow/serving/classify", "regress": "tensorflow/serving/regress"}
# TensorFlow's error codes as HTTP statuses, as TF Serving maps them (model_servers/http_server.cc, ToHTTPStatusCode)
HTTP_STATUS = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400, 12: 501,
               13: 500, 14: 503, 15: 500, 16: 401}
FLOATS = ("float16", "float32", "float64")
INTEGERS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


class BadRequest(ValueError):
    """The request is invalid (wrong shape, dtype, key, ...): the client gets 400 and this message."""


class ServingError(Exception):
    """An answer other than 200: the HTTP status and the message of its {"error": ...}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class CodecBug(Exception):
    """The codec's feed does not fit the signature: a bug of the server's (500), not of the request."""


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


def version_dir(model_dir: Path) -> tuple[Path, int]:
    """The SavedModel to serve and its version: a TF Serving base path (numbered version folders) serves its highest
    version, as TF Serving's default policy does; a SavedModel folder serves as version 1 (or its number, if it is a
    numbered folder itself, as in `.../half_plus_three/00000123`)."""
    numbered = re.compile(r"[0-9]+")
    if (model_dir / "saved_model.pb").is_file() or (model_dir / "saved_model.pbtxt").is_file():
        return model_dir, int(model_dir.name) if numbered.fullmatch(model_dir.name) else 1
    versions = sorted((int(p.name), p) for p in model_dir.glob("*")
                      if numbered.fullmatch(p.name) and (p / "saved_model.pb").is_file())
    return (versions[-1][1], versions[-1][0]) if versions else (model_dir, 1)


@dataclass
class Signature:
    function: Any
    inputs: dict      # {name: {"dtype": "float32", "shape": [None, 64] or None, "name": ..., "datatype": "DT_FLOAT"}}
    outputs: dict
    method_name: str  # tensorflow/serving/predict for every signature tf.saved_model.save writes


class ServedModel:
    """A SavedModel's signatures, with their inputs and outputs described in plain Python; one version, its labels."""

    def __init__(self, model_dir: str | Path, name: str, signature: str = DEFAULT_SIGNATURE,
                 labels: Iterable[str] = ()):
        import tensorflow as tf

        self.model_dir, self.version = version_dir(Path(model_dir))
        self.name, self.signature_name = name, signature
        self.labels = {label: self.version for label in labels}
        self.loaded = tf.saved_model.load(str(self.model_dir))
        self.signature_defs = _signature_defs(self.model_dir)
        self.signatures: dict[str, Signature] = {}
        for key, function in self.loaded.signatures.items():
            _, input_specs = function.structured_input_signature
            definition = self.signature_defs.get(key)
            self.signatures[key] = Signature(
                function, {k: _describe(v) for k, v in input_specs.items()},
                {k: _describe(v) for k, v in function.structured_outputs.items()},
                definition.method_name if definition is not None else PREDICT_METHOD)
        if signature not in self.signatures:
            raise ValueError(f"{model_dir} has no '{signature}' signature (it has {list(self.signatures)})")
        default = self.signatures[signature]
        self.function, self.inputs, self.outputs = default.function, default.inputs, default.outputs

    def predict(self, feed: dict[str, np.ndarray], signature: str | None = None) -> dict[str, np.ndarray]:
        import tensorflow as tf

        chosen = self.signatures[signature or self.signature_name]
        tensors = {k: tf.constant(v, dtype=chosen.inputs[k]["dtype"]) for k, v in feed.items()}
        return {k: v.numpy() for k, v in chosen.function(**tensors).items()}

    def status(self) -> dict:
        return {"model_version_status": [{"version": str(self.version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self) -> dict:
        """TF Serving's GetModelMetadataResponse: every SignatureDef of the MetaGraph, as its JSON prints them."""
        if self.signature_defs:
            from google.protobuf import json_format

            signature_defs = {key: json_format.MessageToDict(d, preserving_proto_field_name=True,
                                                             always_print_fields_with_no_presence=True)
                              for key, d in self.signature_defs.items()}
        else:  # a saved_model.pbtxt: described from the loaded functions
            signature_defs = {key: _signature_json(s) for key, s in self.signatures.items()}
        return {"model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": signature_defs}}}


def _signature_defs(model_dir: Path) -> dict:
    """The SignatureDef protos of saved_model.pb's MetaGraph (their method_name and tensor names), or {}."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = model_dir / "saved_model.pb"
    if not path.is_file():
        return {}
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    return dict(saved_model.meta_graphs[0].signature_def) if saved_model.meta_graphs else {}


def _signature_json(signature: Signature) -> dict:
    def tensor_info(spec: dict) -> dict:
        shape = spec["shape"]
        dims = [] if shape is None else [{"size": str(-1 if d is None else d), "name": ""} for d in shape]
        return {"dtype": spec["datatype"], "name": spec["name"],
                "tensor_shape": {"dim": dims, "unknown_rank": shape is None}}
    return {"inputs": {k: tensor_info(v) for k, v in signature.inputs.items()},
            "outputs": {k: tensor_info(v) for k, v in signature.outputs.items()}, "method_name": signature.method_name}


def _describe(spec) -> dict:
    from tensorflow.core.framework import types_pb2

    shape = list(spec.shape.as_list()) if spec.shape.rank is not None else None
    return {"dtype": spec.dtype.name, "shape": shape, "name": spec.name or "",
            "datatype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum)}  # DT_FLOAT, as TF Serving says


# -- requests ---------------------------------------------------------------------------------------------------
def parse_route(method: str, path: str) -> tuple[str, int | None, str | None, str | None]:
    """(model name, version, label, verb or subresource) of a /v1/ path, as TF Serving parses it (ParseModelInfo);
    ServingError(400) for a path or method it does not serve. The verb is matched ignoring case, as TF Serving's
    regular expression does, and dispatched on its exact spelling, so `:PREDICT` is a malformed request there too."""
    malformed = ServingError(400, f"Malformed request: {method} {path}")
    pattern = PREDICTION_PATH if method == "POST" else STATUS_PATH if method == "GET" else None
    match = pattern.fullmatch(path) if pattern is not None else None
    if match is None:
        raise malformed
    name, version, label, last = match.groups()
    if method == "POST" and last not in ("predict", "classify", "regress"):
        raise malformed
    if version is not None and int(version) > INT64_MAX:
        raise ServingError(400, f"Failed to convert version: {version} to numeric.")
    return (unquote(name or ""), int(version) if version is not None else None,
            unquote(label) if label is not None else None, last)


def find_servable(model: ServedModel, name: str, version: int | None, label: str | None) -> None:
    """Raise TF Serving's error unless (name, version or label) is the served model (ServerCore, BasicManager)."""
    if label is not None:
        if name != model.name or label not in model.labels:
            raise ServingError(400, f"Unrecognized servable version label: {label}")
        version = model.labels[label]
    if name != model.name or version not in (None, model.version):
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise ServingError(404, f"Servable not found for request: {request}")


def find_status(model: ServedModel, name: str, version: int | None, label: str | None) -> None:
    """Raise TF Serving's error unless the status asked for is the served model's (GetModelStatusImpl)."""
    if label is not None:
        find_servable(model, name, None, label)
    elif version is None and name != model.name:
        raise ServingError(404, f"Could not find any versions of model {name}")
    elif version is not None and (name != model.name or version != model.version):
        raise ServingError(404, f"Could not find version {version} of model {name}")


def json_object(body: bytes) -> dict:
    """The body as a JSON object, or TF Serving's 400."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ServingError(400, f"JSON Parse error: {exc}") from None
    if isinstance(request, dict):
        return request
    raise ServingError(400, "JSON Value: the body is not an object")


def signature_name(request: dict) -> str:
    """The request's "signature_name", "" when it names none; a name that is not a string is TF Serving's 400."""
    name = request.get("signature_name", "")
    if not isinstance(name, str):
        raise ServingError(400, "'signature_name' key must be a string value.")
    return name


def requested_signature(body: bytes) -> str:
    """The signature a predict request names (the default when none). A body that is not a JSON object is the
    codec's to refuse, with its own reason."""
    try:
        request = json_object(body)
    except ServingError:
        return DEFAULT_SIGNATURE
    return signature_name(request) or DEFAULT_SIGNATURE


def conform(feed: Any, signature: Signature) -> dict[str, np.ndarray]:
    """The codec's feed, checked against the signature: a value no client may send (NaN, ±Infinity, a number outside
    the input's dtype) is the request's fault (BadRequest, 400); a feed that does not fit the signature is the codec's
    (CodecBug, 500), as it would be if the model failed on it."""
    names = sorted(signature.inputs)
    if not isinstance(feed, dict) or sorted(feed) != names:
        found = sorted(map(str, feed)) if isinstance(feed, dict) else type(feed).__name__
        raise CodecBug(f"the codec fed {found}; the signature's inputs are {names}")
    arrays = {}
    for name, spec in signature.inputs.items():
        try:
            array = np.asarray(feed[name])
        except ValueError as exc:
            raise CodecBug(f"the codec fed '{name}' as something NumPy cannot stack: {exc}") from None
        shape = spec["shape"]
        if shape is not None and (array.ndim != len(shape) or any(d not in (None, n) for d, n in zip(shape, array.shape))):
            wanted = "(" + ", ".join("n" if d is None else str(d) for d in shape) + ")"
            raise CodecBug(f"the codec fed '{name}' with shape {array.shape}; the signature takes {wanted}")
        check_range(name, array, spec["dtype"])
        arrays[name] = array
    return arrays


def check_range(name: str, array: np.ndarray, dtype: str) -> None:
    """BadRequest for numbers the input's dtype cannot hold: NaN and ±Infinity (TF Serving takes them; this server
    refuses them, since no course model means anything by them), floats beyond the dtype's range (which would become
    ±Infinity), integers beyond it (which would wrap)."""
    kind = array.dtype.kind
    if dtype in FLOATS and kind in "fiu":
        if kind == "f" and not np.isfinite(array).all():
            raise BadRequest(f"'{name}' holds NaN or Infinity: this server takes finite numbers only")
        with np.errstate(over="ignore"):
            if not np.isfinite(array.astype(dtype)).all():
                raise BadRequest(f"'{name}' holds numbers out of {dtype}'s range (magnitude at most "
                                 f"{float(np.finfo(dtype).max):.6g})")
    elif dtype in INTEGERS and kind in "iuO" and array.size:  # O: Python ints beyond int64, from a codec
        info = np.iinfo(dtype)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise BadRequest(f"'{name}' holds integers out of {dtype}'s range [{info.min}, {info.max}]")


def dumps(content: Any) -> bytes:
    """JSON as TF Serving writes it: NaN and ±Infinity outputs as the tokens NaN, Infinity, -Infinity."""
    return json.dumps(content, allow_nan=True, separators=(",", ":")).encode()


def create_app(model: ServedModel, codec, max_body_bytes: int = MAX_BODY_BYTES):
    """The ASGI app (FastAPI) serving `model` through `codec`: one route for every path and method, dispatched as
    TF Serving's HttpRestApiHandler dispatches them, so every answer is TF Serving's, errors included."""
    import tensorflow as tf
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    app = FastAPI(title=f"{model.name} (TensorFlow Serving REST API)", docs_url=None, redoc_url=None,
                  openapi_url=None)

    def answer(content: Any, status: int = 200) -> Response:
        return Response(dumps(content), status_code=status, media_type="application/json")

    def error(status: int, message: str) -> Response:
        return answer({"error": message}, status)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise ServingError(413, f"the request body has {int(declared):,} bytes, over the limit of {max_body_bytes:,}")
        chunks, size = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > max_body_bytes:
                raise ServingError(413, f"the request body is over the limit of {max_body_bytes:,} bytes")
        return b"".join(chunks)

    async def predict(body: bytes) -> Response:
        signature_name = requested_signature(body)
        if signature_name not in model.signatures:
            raise ServingError(400, f'Serving signature name: "{signature_name}" not found in signature def')
        signature = model.signatures[signature_name]
        if not signature.inputs:
            raise ServingError(400, f"Failed to get input map for signature: {signature_name}")
        try:
            feed, layout = codec.request_to_tensors(body, signature.inputs)
            feed = conform(feed, signature)
        except BadRequest as exc:
            return error(400, str(exc))
        except Exception as exc:
            LOG.exception("the codec failed")
            return error(500, f"internal error: {type(exc).__name__}: {exc}")
        try:
            outputs = await run_in_threadpool(model.predict, feed, signature_name)
        except tf.errors.OpError as exc:  # the model refused a feed that fits its signature: TF Serving's status
            status = HTTP_STATUS.get(exc.error_code, 500)
            if status >= 500:
                LOG.exception("predict failed")
            return error(status, exc.message)
        except Exception as exc:
            LOG.exception("predict failed")
            return error(500, f"internal error: {type(exc).__name__}: {exc}")
        try:
            return answer(codec.response_from_tensors(outputs, layout))
        except BadRequest as exc:
            return error(400, str(exc))
        except Exception as exc:
            LOG.exception("the codec failed on the outputs")
            return error(500, f"internal error: {type(exc).__name__}: {exc}")

    def refuse(verb: str, body: bytes) -> Response:
        """:classify and :regress, as TF Serving answers them for a model whose signatures are all predict ones."""
        name = signature_name(json_object(body))
        signature = model.signatures.get(name or DEFAULT_SIGNATURE)
        if signature is None:
            raise ServingError(400, f"No signature was found with the name: {name or DEFAULT_SIGNATURE}")
        if signature.method_name != METHOD_NAMES[verb]:
            kind = "classification" if verb == "classify" else "regression"
            raise ServingError(400, f"Expected {kind} signature method_name to be {METHOD_NAMES[verb]}. "
                                    f"Was: {signature.method_name}")
        raise ServingError(501, f"this server runs predict signatures only: '{name or DEFAULT_SIGNATURE}' is a "
                                f"{METHOD_NAMES[verb]} signature, which TensorFlow Serving itself answers")

    async def route(request: Request) -> Response:
        method = request.method
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = raw.split(b"?", 1)[0].decode("latin-1")
        try:
            if not V1_PATH.fullmatch(path):
                raise ServingError(404, f"Not found: {method} {path} (this server answers /v1/models/... only)")
            if method == "OPTIONS":  # a CORS preflight, as TF Serving answers it
                if re.search(r"https?://", request.headers.get("origin", "")):
                    return Response(status_code=200)
                raise ServingError(400, "Origin header is missing in CORS preflight")
            name, version, label, last = parse_route(method, path)
            if method == "GET":
                if not name:
                    raise ServingError(400, "Missing model name in request.")
                if last == "metadata":
                    find_servable(model, name, version, label)
                    return answer(model.metadata())
                find_status(model, name, version, label)
                return answer(model.status())
            find_servable(model, name, version, label)
            body = await read_body(request)
            return await predict(body) if last == "predict" else refuse(str(last), body)
        except ServingError as exc:
            return error(exc.status, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:  # anything the router itself refuses
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return error(status, str(getattr(exc, "detail", exc)))

    class Dispatch:  # an ASGI app, not a function, so that the route takes every method: TF Serving answers them all
        async def __call__(self, scope, receive, send) -> None:
            await (await route(Request(scope, receive)))(scope, receive, send)

    app.router.routes.append(Route("/{path:path}", Dispatch(), include_in_schema=False))
    app.add_exception_handler(HTTPException, http_error)
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


def label_name(text: str) -> str:
    if not re.fullmatch(r"[^/:]+", text):
        raise argparse.ArgumentTypeError(f"a label has no '/' or ':' (got {text!r})")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polyglot_lab.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--codec", required=True, help="a .py file defining request_to_tensors and response_from_tensors")
    parser.add_argument("--name", default="digits")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--label", action="append", default=[], type=label_name,
                        help="a version label for the served version (/v1/models/NAME/labels/LABEL); may repeat")
    args = parser.parse_args(argv)
    try:
        codec, model = load_codec(args.codec), ServedModel(args.model_dir, args.name, labels=args.label)
    except Exception as exc:  # noqa: BLE001 - a clear line instead of a traceback
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn
    print(json.dumps({"serving": args.name, "version": model.version, "labels": args.label,
                      "url": f"http://{args.host}:{args.port}/v1/models/{args.name}"}), flush=True)
    uvicorn.run(create_app(model, codec), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: codecs raise polyglot_lab.serving.BadRequest,
    # which must be the class the server catches.
    from polyglot_lab.serving import main as serving_main
    sys.exit(serving_main())
