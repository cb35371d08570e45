"""The checker's operations: each opens or runs one thing a submission produced and returns plain data.

An operation takes JSON values and NumPy arrays and returns a dict of JSON values and arrays. Loaded models are kept
for the checker's life, keyed by the file's path, size and modification time (a rewritten file is loaded again).
Nothing here knows what the right answer is.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


MESSAGE_CHARS = 400  # an error raised by learner-controlled code reaches feedback only this long
_loaded: dict = {}


def message_of(exc: BaseException) -> str:
    """The line of an error that says what went wrong (TensorFlow puts it last, after 'in user code:'), bounded."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    line = lines[-1] if lines and lines[0].startswith("in user code") else (lines or [""])[0]
    return line[:MESSAGE_CHARS]


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)[:MESSAGE_CHARS]


def _cached(kind: str, path: str, load):
    stat = os.stat(path)
    key = (kind, str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _loaded:
        _loaded[key] = load()
    return _loaded[key]


def _shape(shape) -> list | None:
    return None if shape is None else [None if d is None else int(d) for d in shape]


# -- Keras -----------------------------------------------------------------------------------------
def _keras():
    import keras
    return keras


def _keras_model(path: str):
    return _cached("keras", path, lambda: _keras().saving.load_model(path, compile=False))  # safe mode


def keras_summary(path: str) -> dict:
    model = _keras_model(path)

    def walk(layer, depth=0):
        yield layer, depth
        for inner in getattr(layer, "layers", []) or []:
            yield from walk(inner, depth + 1)

    layers = []
    for layer, depth in walk(model):
        config = layer.get_config() if hasattr(layer, "get_config") else {}
        activation = config.get("activation") if isinstance(config, dict) else None
        layers.append({"name": layer.name, "type": type(layer).__name__, "depth": depth,
                       "activation": activation if isinstance(activation, str) else None})

    def shapes(value):
        return [_shape(s) for s in value] if isinstance(value, list) and value and isinstance(value[0], (list, tuple)) \
            else _shape(value)

    return {"input_shape": shapes(model.input_shape), "output_shape": shapes(model.output_shape),
            "inputs": [_shape(t.shape) for t in model.inputs], "layers": layers, "params": int(model.count_params())}


def keras_predict(path: str, x: np.ndarray, call: bool = False, batch_size: int = 256) -> dict:
    model = _keras_model(path)
    out = model(x, training=False) if call else model.predict(x, verbose=0, batch_size=batch_size)
    return {"y": np.asarray(out)}


def keras_predict_backend(path: str, x: np.ndarray, backend: str) -> dict:
    """The same .keras file on another Keras backend: a process of its own (Keras fixes its backend on import)."""
    scratch = Path.cwd()
    np.save(scratch / "keras_backend_x.npy", x, allow_pickle=False)
    env = {**os.environ, "KERAS_BACKEND": backend}
    run = subprocess.run([sys.executable, "-I", "-m", "polyglot_lab.checker.keras_backend", path,
                          str(scratch / "keras_backend_x.npy"), str(scratch / "keras_backend_y.npy")],
                         check=False, env=env, capture_output=True, text=True, timeout=300)
    if run.returncode != 0 or not (scratch / "keras_backend_y.npy").exists():
        lines = run.stderr.strip().splitlines()
        raise RuntimeError(lines[-1][:MESSAGE_CHARS] if lines else f"exit {run.returncode}")
    return {"y": np.load(scratch / "keras_backend_y.npy", allow_pickle=False)}


# -- PyTorch ---------------------------------------------------------------------------------------
def _program(path: str):
    def load():
        import torch

        from polyglot_lab.checker.safety import refuse_unsafe_pt2
        refuse_unsafe_pt2(path)
        return torch.export.load(path)
    return _cached("pt2", path, load)


def pt2_run(path: str, x: np.ndarray, device: str = "cpu") -> dict:
    import torch
    program = _program(path)
    if device != "cpu":
        from torch.export.passes import move_to_device_pass
        program = move_to_device_pass(program, device)
    module = _cached(f"pt2-module-{device}", path, program.module)
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x)).to(device))
    return {"y": np.asarray(out.detach().cpu().numpy())}


def pt2_training_ops(path: str) -> dict:
    """The program's dropout and batch-norm calls and whether each trains, as its graph records them (export writes
    the mode it saw into the graph): what names the cause when the program's outputs are not deterministic."""
    ops = []
    for node in _program(path).graph.nodes:
        name = str(node.target)
        if node.op != "call_function" or not ("dropout" in name or "batch_norm" in name):
            continue
        flags = [a for a in node.args if isinstance(a, bool)] + [node.kwargs[k] for k in ("train", "training")
                                                                 if isinstance(node.kwargs.get(k), bool)]
        training = "functional" in name or (not name.endswith("no_training.default") and bool(flags and flags[0]))
        ops.append({"op": name, "training": training})
    return {"ops": ops}


def _tensors(state: dict, prefix: str) -> dict:
    return {f"{prefix}{key}": np.asarray(value.detach().cpu().numpy()) for key, value in state.items()}


def pt2_state(path: str) -> dict:
    return _tensors(_program(path).state_dict, "")


def torch_state(path: str) -> dict:
    """A state dict saved with torch.save, read with weights_only=True (tensors and plain containers only)."""
    import torch
    saved = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(saved, dict):
        return {"type": type(saved).__name__}
    tensors = {k: v for k, v in saved.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return {"type": "dict", "other_keys": [str(k) for k in saved if k not in tensors][:50], **_tensors(tensors, "")}


# -- ONNX ------------------------------------------------------------------------------------------
def _session(path: str, providers: list[str]):
    def load():
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.log_severity_level = 3
        return ort.InferenceSession(path, options, providers=list(providers))
    return _cached("ort:" + ",".join(providers), path, load)


def ort_info(path: str, providers: list[str] = ("CPUExecutionProvider",)) -> dict:
    session = _session(path, list(providers))
    def describe(args):
        return [{"name": a.name, "shape": [d if isinstance(d, int) else None for d in a.shape], "type": a.type}
                for a in args]

    return {"inputs": describe(session.get_inputs()), "outputs": describe(session.get_outputs()),
            "providers": session.get_providers()}


def ort_run(path: str, x: np.ndarray, providers: list[str] = ("CPUExecutionProvider",)) -> dict:
    session = _session(path, list(providers))
    return {"y": np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])}


SMALL_CONSTANT = 16  # elements: enough for flags and shapes, never a model's weights


def onnx_graph(path: str) -> dict:
    """What the structural checks read of an ONNX file, as plain data: its external data files (and which are
    missing beside it), the full checker's verdict once they are loaded, the graph's inputs (dims: an int or a
    name), outputs, nodes (op, name, inputs, int attributes), each initializer's element type, small constants, and
    its bytes on disk."""
    import onnx
    from onnx import TensorProto, numpy_helper
    from onnx.external_data_helper import _get_all_tensors, load_external_data_for_model

    folder = Path(path).parent
    proto = onnx.load(path, load_external_data=False)
    external = []
    for tensor in _get_all_tensors(proto):
        if tensor.data_location == TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            if location not in external:
                external.append(location)
    missing = [loc for loc in external if not (folder / loc).is_file()]
    answer = {"external": external, "missing": missing,
              "bytes": os.path.getsize(path) + sum(os.path.getsize(folder / loc) for loc in external if loc not in missing)}
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}

    def dims(value):
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in value.type.tensor_type.shape.dim]

    answer["inputs"] = [{"name": i.name, "dims": dims(i)} for i in graph.input if i.name not in initializers]
    answer["first_input_dims"] = dims(graph.input[0]) if graph.input else []
    answer["outputs"] = [o.name for o in graph.output]
    answer["nodes"] = [{"op": n.op_type, "name": n.name, "inputs": list(n.input), "outputs": list(n.output),
                        "ints": {a.name: int(a.i) for a in n.attribute if a.type == onnx.AttributeProto.INT}}
                       for n in graph.node]
    answer["initializer_types"] = {i.name: TensorProto.DataType.Name(i.data_type) for i in graph.initializer}
    constants = {i.name: i for i in graph.initializer}
    constants.update({n.output[0]: n.attribute[0].t for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    answer["small_constants"] = {name: numpy_helper.to_array(t).tolist() for name, t in constants.items()
                                 if int(np.prod(t.dims)) <= SMALL_CONSTANT}
    if not missing:
        load_external_data_for_model(proto, str(folder))
        try:
            onnx.checker.check_model(proto, full_check=True)
            answer["checker_error"] = None
        except Exception as exc:  # noqa: BLE001 - the verdict is the grader's; this is what the checker said
            answer["checker_error"] = message_of(exc)
    return answer


def _run_seconds(session, x: np.ndarray, warm_up: int, repeats: int) -> np.ndarray:
    """Seconds of each of `repeats` runs of an ONNX Runtime session on x, after `warm_up` untimed runs."""
    import time
    feed = {session.get_inputs()[0].name: x}
    for _ in range(warm_up):
        session.run(None, feed)
    times = []
    for _ in range(int(repeats)):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    return np.asarray(times)


def ort_latency(path: str, x: np.ndarray, repeats: int = 30, providers: list[str] = ("CPUExecutionProvider",)) -> dict:
    """Median seconds per run after a warm-up (the grader compares two files' ratio, measured here in one process)."""
    return {"median_s": float(np.median(_run_seconds(_session(path, list(providers)), x, 5, repeats)))}


def ort_latencies(path: str, x: np.ndarray, repeats: int = 200, threads: int = 1) -> dict:
    """Seconds of each of `repeats` runs on x, in a session of `threads` intra-op threads, after a warm-up: the
    samples themselves, so that the grader computes the percentiles it needs."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
    session = _cached(f"ort-threads-{threads}", path,
                      lambda: ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]))
    return {"seconds": _run_seconds(session, x, 10, repeats)}


def fastnet_speed(path: str, config: dict, x: np.ndarray, kinds: list[str], repeats: int = 30) -> dict:
    """Module 06's network with the weights of a state dict (weights_only), timed as `kinds` ask: "eager",
    "compiled" (torch.compile, the first call's seconds reported as compile_s) and "bf16" (autocast on the CPU).
    Median seconds per call after a warm-up, the calls interleaved so that a load on the machine slows all alike,
    and each kind's largest difference from eager on x."""
    import time

    import torch

    from polyglot_lab import fastnet
    torch._inductor.config.compile_threads = 1  # no pool of compile workers inside the sandbox
    torch.set_num_threads(1)  # as the notebook times: multithreaded kernels swing 10x and more on a shared machine
    state = torch.load(path, weights_only=True, map_location="cpu")
    model = fastnet.loaded(state, config)
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    first_call_s = None

    def autocast(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(batch)

    calls = {"eager": model, "bf16": autocast}
    with torch.no_grad():
        if "compiled" in kinds:
            calls["compiled"] = torch.compile(model)
            start = time.perf_counter()
            calls["compiled"](inputs)
            first_call_s = time.perf_counter() - start
        chosen = {kind: calls[kind] for kind in kinds}
        for _ in range(3):
            for call in chosen.values():
                call(inputs)
        times: dict = {kind: [] for kind in chosen}
        for _ in range(int(repeats)):
            for kind, call in chosen.items():
                start = time.perf_counter()
                call(inputs)
                times[kind].append(time.perf_counter() - start)
        reference = model(inputs)
        max_abs_diff = {kind: float((call(inputs).float() - reference).abs().max()) for kind, call in chosen.items()
                        if kind != "eager"}
    return {"median_s": {kind: float(np.median(t)) for kind, t in times.items()}, "compile_s": first_call_s,
            "max_abs_diff": max_abs_diff}


# -- TensorFlow ------------------------------------------------------------------------------------
def _signature(path: str):
    def load():
        import tensorflow as tf

        from polyglot_lab.checker.safety import refuse_unsafe_savedmodel
        refuse_unsafe_savedmodel(path)
        loaded = tf.saved_model.load(path)
        return loaded, loaded.signatures.get("serving_default") if "serving_default" in loaded.signatures else None
    return _cached("savedmodel", path, load)


def savedmodel_info(path: str) -> dict:
    loaded, signature = _signature(path)
    info = {"signatures": sorted(loaded.signatures)}
    if signature is not None:
        specs = signature.structured_input_signature[1]
        info["inputs"] = {name: {"shape": spec.shape.as_list() if spec.shape.rank is not None else None,
                                 "dtype": spec.dtype.name} for name, spec in specs.items()}
        info["outputs"] = sorted(signature.structured_outputs)
    return info


def savedmodel_run(path: str, x: np.ndarray, xla: bool = False, device: str = "/CPU:0") -> dict:
    import tensorflow as tf
    _, signature = _signature(path)
    if signature is None:
        raise KeyError("no serving_default signature")
    name, spec = next(iter(signature.structured_input_signature[1].items()))
    fn = signature
    if xla:
        fn = _cached("savedmodel-xla", path, lambda: tf.function(lambda **feed: signature(**feed), jit_compile=True))
    with tf.device(device):
        out = fn(**{name: tf.constant(x, spec.dtype)})
    return {"y": np.asarray(next(iter(out.values())))}


def savedmodel_latency(path: str, x: np.ndarray, repeats: int = 25) -> dict:
    """Median seconds per call of the serving signature without and with XLA (jit_compile) on x, after a warm-up
    (tracing and compiling happen there), the calls interleaved so that a load on the machine slows both alike."""
    import time

    import tensorflow as tf
    _, signature = _signature(path)
    if signature is None:
        raise KeyError("no serving_default signature")
    name, spec = next(iter(signature.structured_input_signature[1].items()))
    feed = {name: tf.constant(x, spec.dtype)}
    plain = _cached("savedmodel-plain", path, lambda: tf.function(lambda **kw: signature(**kw)))
    xla = _cached("savedmodel-xla", path, lambda: tf.function(lambda **kw: signature(**kw), jit_compile=True))
    for _ in range(3):
        plain(**feed), xla(**feed)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        plain(**feed)
        middle = time.perf_counter()
        xla(**feed)
        times.append((middle - started, time.perf_counter() - middle))
    plain_s, xla_s = np.median(np.asarray(times), axis=0)
    return {"plain_s": float(plain_s), "xla_s": float(xla_s)}


def litert_tensors(path: str) -> dict:
    """The .tflite file's tensors (name, element type, shape) and its input and output types: what says its weights
    are int8 and its activations float, whatever its size."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=path)

    def described(details):
        return [{"name": str(t["name"]), "dtype": np.dtype(t["dtype"]).name, "shape": [int(d) for d in t["shape"]]}
                for t in details]
    return {"tensors": described(interpreter.get_tensor_details()),
            "inputs": described(interpreter.get_input_details()),
            "outputs": described(interpreter.get_output_details())}


def tf_gpu_available() -> dict:
    import tensorflow as tf
    return {"available": bool(tf.config.list_physical_devices("GPU"))}


def litert_run(path: str, x: np.ndarray) -> dict:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=path)
    entry = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(entry["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], np.ascontiguousarray(x).astype(entry["dtype"]))
    interpreter.invoke()
    return {"y": np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))}


# -- the learner's converter -----------------------------------------------------------------------
def convert(converter: str, cases: list[dict], models: list[dict]) -> dict:
    """Run the learner's onnx_to_tf.convert on ONNX's backend cases (files the grader wrote: polyglot_lab.conformance
    .case_files) and on the grader's models. Returns each case's outputs (the grader compares them with the case's
    expected values), or why it failed."""
    import importlib.util

    import onnx

    from polyglot_lab.conformance import case_outputs

    answer: dict = {"cases": {}, "models": []}
    try:
        spec = importlib.util.spec_from_file_location("learner_onnx_to_tf", converter)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        learner_convert = module.convert
    except BaseException as exc:  # noqa: BLE001 - reported, not raised
        return {"import_error": f"importing {Path(converter).name} failed: {type(exc).__name__}: {message_of(exc)}"}
    for case in cases:
        name = case["name"]
        found = case_outputs(learner_convert, onnx.load(case["model"]),
                             [[np.load(path, allow_pickle=False) for path in paths] for paths in case["inputs"]])
        if isinstance(found, str):
            answer["cases"][name] = {"error": found}
            continue
        answer["cases"][name] = {"outputs": [len(outputs) for outputs in found]}
        for d, outputs in enumerate(found):
            for k, value in enumerate(outputs):
                answer[f"case:{name}:{d}:{k}"] = np.asarray(value)
    for i, entry in enumerate(models):
        found: dict = {}
        try:
            served = learner_convert(entry["file"])
            found["signature"] = [_shape(s.shape.as_list()) for s in served.serve.input_signature]
            for k, inputs in enumerate(entry["inputs"]):
                y = served.serve(np.load(inputs, allow_pickle=False))
                answer[f"model:{i}:{k}"] = np.asarray(list(y.values())[0] if isinstance(y, dict) else y)
            found["outputs"] = len(entry["inputs"])
        except Exception as exc:  # noqa: BLE001
            found["error"] = f"{type(exc).__name__}: {message_of(exc)}"
        answer["models"].append(found)
    return answer


# -- the learner's codec, served ---------------------------------------------------------------------
RESPONSE_CHARS = 1_000_000


def serve(model_dir: str, codec: str, name: str, requests: dict, burst: list, concurrency: int = 8) -> dict:
    """Serve model_dir through the learner's codec (polyglot_lab.serving, in a process of its own), send each
    request once and the burst concurrently, stop. Bodies: {"json": value} or {"raw": text}. Answers:
    {"status", "json"} or {"status": None, "error"}."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from polyglot_lab.serving import Server

    def post(url: str, body: dict) -> dict:
        kwargs = {"content": body["raw"].encode()} if "raw" in body else {"json": body["json"]}
        try:
            response = httpx.post(url, timeout=60, **kwargs)
        except httpx.HTTPError as exc:
            return {"status": None, "json": None, "error": f"{type(exc).__name__}: {message_of(exc)}"}
        try:
            payload = response.json() if len(response.content) <= RESPONSE_CHARS else None
        except ValueError:
            payload = None
        return {"status": response.status_code, "json": payload}

    from polyglot_lab.checker.safety import refuse_unsafe_savedmodel
    refuse_unsafe_savedmodel(model_dir)
    try:
        server = Server(Path(model_dir), Path(codec), name=name, cwd=Path.cwd(), startup_s=120).__enter__()
    except RuntimeError as exc:
        return {"startup_error": str(exc)[-MESSAGE_CHARS:]}
    try:
        url = server.url(":predict")
        answers = {purpose: post(url, body) for purpose, body in requests.items()}
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            burst_answers = list(pool.map(lambda body: post(url, body), burst))
        return {"answers": answers, "burst": burst_answers, "alive": server.alive()}
    finally:
        server.stop()


OPS = {fn.__name__: fn for fn in (
    keras_summary, keras_predict, keras_predict_backend, pt2_run, pt2_state, pt2_training_ops, torch_state,
    onnx_graph, ort_info, ort_run, ort_latency, ort_latencies, fastnet_speed, savedmodel_info, savedmodel_run,
    savedmodel_latency, tf_gpu_available,
    litert_run, litert_tensors, convert, serve)}
