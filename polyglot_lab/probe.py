"""Kernel-side half of a check: run an exercise's probe and write what it produced to files.

A probe calls the learner's code on inputs the grader wrote (``inputs/``) and saves the results
(``outputs/``). The grader reads those files in its own process and decides the verdict there:
nothing the probe writes is trusted beyond being data. A probe declares its outputs by name and kind
(``@probe(X_train=ARRAY, loss=VALUE)``): arrays go to ``.npy`` (read back with ``allow_pickle=False``),
named arrays to a folder of them, files as files, everything else to JSON.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import traceback
from pathlib import Path

import numpy as np

PROBE_DIR = ".polyglot"

# What a probe may hand over, by kind. The probe declares each output once (``@probe(name=kind)``); the grader
# reads only declared names, each as its kind says (graders/checks: ``ctx.outputs(<probe function>)``).
ARRAY = "array"    # one NumPy array (a tensor is converted): <name>.npy
ARRAYS = "arrays"  # named arrays, a state dict say: a folder <name>/ of <key>.npy
VALUE = "value"    # plain JSON data (numbers, strings, lists, dicts): values.json
FILE = "file"      # a file the probe writes itself, at io.output_path(name) (a saved model, say)
KINDS = (ARRAY, ARRAYS, VALUE, FILE)


class UndeclaredOutput(LookupError):
    """A probe saved, or a check read, an output its probe does not declare: a course author's mistake.
    Not a KeyError, so that no ``.get()`` or ``except KeyError`` takes it for a missing value."""


def probe(**outputs: str):
    """Declare what an exercise's probe hands over, by name and kind (ARRAY, ARRAYS, VALUE, FILE)."""
    for name, kind in outputs.items():
        if kind not in KINDS:
            raise ValueError(f"probe output {name!r}: kind {kind!r} is not one of {KINDS}")

    def declare(fn):
        fn.outputs = dict(outputs)
        return fn
    return declare


def _to_numpy(value):
    """Tensors of any framework become NumPy arrays; other values pass through."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf.Tensor, keras tensors
        return np.asarray(value.numpy())
    return value


def _kind_of(value) -> str:
    """The kind of an undeclared value (the grader's inputs): bytes are a file, a dict of arrays is ARRAYS."""
    if isinstance(value, (bytes, bytearray)):
        return FILE
    if isinstance(_to_numpy(value), np.ndarray):
        return ARRAY
    if isinstance(value, dict) and value and all(isinstance(_to_numpy(v), np.ndarray) for v in value.values()):
        return ARRAYS
    return VALUE


def _file_name(name: str) -> str:
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{name!r} cannot name a probe file")
    return name


def _plain_array(name: str, value) -> np.ndarray:
    """`value` as an array of numbers, bools or strings; anything numpy can only hold as Python objects (None among
    numbers, a dict, a ragged list) is the learner's return value being of the wrong kind: say so by name."""
    try:
        array = np.asarray(_to_numpy(value))
    except ValueError as exc:  # numpy >= 1.24 refuses ragged nesting outright
        raise TypeError(f"{name}: expected an array of numbers, got {type(value).__name__} that numpy cannot make "
                        f"one array of ({exc})") from None
    if array.dtype == object:
        raise TypeError(f"{name}: expected an array of numbers, got {type(value).__name__} holding Python objects "
                        f"(e.g. {type(array.flat[0]).__name__ if array.size else 'nothing'})")
    return array


class ProbeIO:
    """The files of one exercise's probe: ``<workdir>/.polyglot/<exercise>/{inputs,outputs}``.
    ``declared`` (name -> kind) is what the probe may save; None for the grader's inputs, whose kinds are inferred."""

    def __init__(self, directory: Path, declared: dict[str, str] | None = None):
        self.dir = Path(directory)
        self.inputs_dir = self.dir / "inputs"
        self.outputs_dir = self.dir / "outputs"
        self.declared = declared

    # -- writing (the grader writes inputs, the probe writes outputs)
    @staticmethod
    def _write(directory: Path, values: dict, kinds: dict[str, str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        scalars = {}
        for name, value in values.items():
            kind = kinds[name]
            if kind == ARRAY:
                np.save(directory / f"{_file_name(name)}.npy", _plain_array(name, value), allow_pickle=False)
            elif kind == ARRAYS:
                folder = directory / _file_name(name)
                folder.mkdir(exist_ok=True)
                for key, array in dict(value).items():
                    np.save(folder / f"{_file_name(str(key))}.npy", _plain_array(f"{name}[{key!r}]", array),
                            allow_pickle=False)
            elif kind == FILE:
                (directory / _file_name(name)).write_bytes(bytes(value))
            else:
                scalars[name] = _to_numpy(value)
        if scalars:
            path = directory / "values.json"
            merged = json.loads(path.read_text()) if path.exists() else {}
            merged.update(scalars)
            path.write_text(json.dumps(merged, default=_json_default))

    def write_inputs(self, **values) -> None:
        """The grader's inputs: arrays as .npy, dicts of arrays as folders, bytes as files, the rest as JSON."""
        self._write(self.inputs_dir, values, {name: _kind_of(value) for name, value in values.items()})

    def save(self, **values) -> None:
        """Save outputs the probe declared: ARRAY and ARRAYS as .npy, VALUE as JSON (FILE: see output_path)."""
        declared = self.declared if self.declared is not None else {n: _kind_of(v) for n, v in values.items()}
        for name in values:
            if name not in declared:
                raise UndeclaredOutput(f"probe output {name!r} is not declared (declared: {sorted(declared)})")
            if declared[name] == FILE:
                raise TypeError(f"probe output {name!r} is a file: write it at io.output_path({name!r})")
        self._write(self.outputs_dir, values, declared)

    def output_path(self, name: str) -> Path:
        """The path of a FILE output the probe writes itself (a saved model, say)."""
        if self.declared is not None and self.declared.get(name) != FILE:
            raise UndeclaredOutput(f"probe output {name!r} is not declared as a file")
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        return self.outputs_dir / _file_name(name)

    def input_file(self, name: str) -> Path:
        """A file the grader handed over (an ONNX model, say)."""
        return self.inputs_dir / _file_name(name)

    # -- reading (the probe reads the grader's inputs; the grader reads outputs with graders.checks.Outputs)
    @property
    def inputs(self) -> dict:
        """Arrays, folders of arrays and JSON values; files are read with input_file()."""
        directory, values = self.inputs_dir, {}
        if (directory / "values.json").exists():
            values.update(json.loads((directory / "values.json").read_text()))
        for path in sorted(directory.glob("*.npy")):
            values[path.stem] = np.load(path, allow_pickle=False)
        for folder in sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else ():
            values[folder.name] = {p.stem: np.load(p, allow_pickle=False) for p in sorted(folder.glob("*.npy"))}
        return values

    # -- status
    def reset_outputs(self) -> None:
        shutil.rmtree(self.outputs_dir, ignore_errors=True)
        for marker in ("done.json", "error.json"):
            (self.dir / marker).unlink(missing_ok=True)

    def mark_done(self) -> None:
        (self.dir / "done.json").write_text("{}")

    def mark_error(self, exc: BaseException) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        # The frames of the learner's own code are the useful ones: those not in this package.
        learner_frames = [f for f in frames if "polyglot_lab" not in f.filename]
        where = learner_frames[-1] if learner_frames else (frames[-1] if frames else None)
        (self.dir / "error.json").write_text(json.dumps({
            "type": type(exc).__name__,
            "message": str(exc)[:2000],
            "where": f"line {where.lineno}: {where.line}" if where and where.line else "",
        }))

    @property
    def done(self) -> bool:
        return (self.dir / "done.json").exists()

    @property
    def error(self) -> dict | None:
        path = self.dir / "error.json"
        return json.loads(path.read_text()) if path.exists() else None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return repr(value)


def probe_io(exercise_id: str, workdir: str | os.PathLike = ".", declared: dict[str, str] | None = None) -> ProbeIO:
    return ProbeIO(Path(workdir) / PROBE_DIR / exercise_id, declared)


def run(probes_module: str, exercise_id: str, namespace: dict, workdir: str | os.PathLike = ".") -> bool:
    """Run one exercise's probe against the notebook's namespace. Returns True when it finished."""
    io = probe_io(exercise_id, workdir, declared={})
    io.reset_outputs()
    io.dir.mkdir(parents=True, exist_ok=True)
    try:
        probe_fn = getattr(importlib.import_module(probes_module), exercise_id, None)
        if probe_fn is not None:  # exercises graded on artifacts alone have no probe
            io.declared = getattr(probe_fn, "outputs", {})  # an undeclared probe may save nothing
            probe_fn(namespace, io)
    except BaseException as exc:  # noqa: BLE001 - any learner failure is recorded, never raised into the notebook
        io.mark_error(exc)
        return False
    io.mark_done()
    return True


@contextlib.contextmanager
def constructor_recorder(cls, describe=lambda args, kwargs: (args, kwargs)):
    """Record each new instance of `cls` made while active (``with constructor_recorder(cls) as made: ...``):
    describe(args, kwargs) of each constructor call, taken as it is made. How a probe sees which providers a session
    was given, or which environment a child process got."""
    original, made = cls.__init__, []

    def init(self, *args, **kwargs):
        made.append(describe(args, kwargs))
        original(self, *args, **kwargs)
    cls.__init__ = init
    try:
        yield made
    finally:
        cls.__init__ = original


def torch_call_recorder(qualified: bool = False):
    """A torch function mode that records which torch functions run while it is active (``with recorder: ...``, then
    ``recorder.calls``): how a probe sees that the learner called a library function they were asked to write.
    `qualified`: record ``module.name`` (``torch.nn.functional.layer_norm``), else the bare name."""
    from torch.overrides import TorchFunctionMode

    class CallRecorder(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.calls: set[str] = set()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", repr(func))
            self.calls.add(f"{getattr(func, '__module__', None) or ''}.{name}" if qualified else name)
            return func(*args, **(kwargs or {}))

    return CallRecorder()


def need(namespace: dict, name: str):
    """The learner's object called ``name``, or the NameError a learner would see."""
    if name not in namespace:
        raise NameError(f"name '{name}' is not defined")
    return namespace[name]
