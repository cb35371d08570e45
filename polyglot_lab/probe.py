"""Kernel-side half of a check: run an exercise's probe and write what it produced to files.

A probe calls the learner's code on inputs the grader wrote (``inputs/``) and saves the results
(``outputs/``). The grader reads those files in its own process and decides the verdict there:
nothing the probe writes is trusted beyond being data. Arrays go to ``.npy`` (read back with
``allow_pickle=False``), everything else to JSON.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import traceback
from pathlib import Path

import numpy as np

PROBE_DIR = ".polyglot"


def _to_numpy(value):
    """Tensors of any framework become NumPy arrays; other values pass through."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf.Tensor, keras tensors
        return np.asarray(value.numpy())
    return value


class ProbeIO:
    """The files of one exercise's probe: ``<workdir>/.polyglot/<exercise>/{inputs,outputs}``."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.inputs_dir = self.dir / "inputs"
        self.outputs_dir = self.dir / "outputs"

    # -- writing (the grader writes inputs, the probe writes outputs)
    @staticmethod
    def _write(directory: Path, values: dict) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        scalars = {}
        for name, value in values.items():
            value = _to_numpy(value)
            if isinstance(value, np.ndarray):
                np.save(directory / f"{name}.npy", value, allow_pickle=False)
            else:
                scalars[name] = value
        if scalars:
            path = directory / "values.json"
            merged = json.loads(path.read_text()) if path.exists() else {}
            merged.update(scalars)
            path.write_text(json.dumps(merged, default=_json_default))

    def write_inputs(self, **values) -> None:
        self._write(self.inputs_dir, values)

    def save(self, **values) -> None:
        """Save probe outputs: arrays/tensors as .npy, the rest as JSON."""
        self._write(self.outputs_dir, values)

    def output_path(self, name: str) -> Path:
        """A path for an output file the probe writes itself (a saved model, say)."""
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        return self.outputs_dir / name

    # -- reading
    @staticmethod
    def _read(directory: Path) -> dict:
        values = {}
        if (directory / "values.json").exists():
            values.update(json.loads((directory / "values.json").read_text()))
        for path in sorted(directory.glob("*.npy")):
            values[path.stem] = np.load(path, allow_pickle=False)
        return values

    @property
    def inputs(self) -> dict:
        return self._read(self.inputs_dir)

    def outputs(self) -> dict:
        return self._read(self.outputs_dir)

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


def probe_io(exercise_id: str, workdir: str | os.PathLike = ".") -> ProbeIO:
    return ProbeIO(Path(workdir) / PROBE_DIR / exercise_id)


def run(probes_module: str, exercise_id: str, namespace: dict, workdir: str | os.PathLike = ".") -> bool:
    """Run one exercise's probe against the notebook's namespace. Returns True when it finished."""
    io = probe_io(exercise_id, workdir)
    io.reset_outputs()
    io.dir.mkdir(parents=True, exist_ok=True)
    try:
        probe = getattr(importlib.import_module(probes_module), exercise_id, None)
        if probe is not None:  # exercises graded on artifacts alone have no probe
            probe(namespace, io)
    except BaseException as exc:  # noqa: BLE001 - any learner failure is recorded, never raised into the notebook
        io.mark_error(exc)
        return False
    io.mark_done()
    return True


def need(namespace: dict, name: str):
    """The learner's object called ``name``, or the NameError a learner would see."""
    if name not in namespace:
        raise NameError(f"name '{name}' is not defined")
    return namespace[name]
