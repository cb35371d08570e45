"""Run a learner's ONNX->TensorFlow converter in its own process (the grader never imports it).

    python -m graders.converter_runner CONVERTER.py JOB_DIR

JOB_DIR/job.json: {"ops": [...], "models": [{"file": "m0.onnx", "inputs": ["m0_x0.npy", ...]}]}.
Writes JOB_DIR/result.json: {"conformance": {op: {"passed": [...], "failed": {case: why}}},
"models": [{"signature": [[dims]], "outputs": ["m0_y0.npy", ...]} or {"error": "..."}]}.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np


def first_line(exc: BaseException) -> str:
    """The line of an error message that says what went wrong (TensorFlow puts it last, after 'in user code:')."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    line = lines[-1] if lines and lines[0].startswith("in user code") else (lines or [""])[0]
    return f"{type(exc).__name__}: {line[:300]}"


def main(converter_path: str, job_dir: str) -> int:
    job_dir = Path(job_dir)
    job = json.loads((job_dir / "job.json").read_text())
    result: dict = {"conformance": {}, "models": []}
    try:
        spec = importlib.util.spec_from_file_location("learner_onnx_to_tf", converter_path)
        converter = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(converter)
        convert = converter.convert
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        result["error"] = f"importing {Path(converter_path).name} failed: {first_line(exc)}"
        (job_dir / "result.json").write_text(json.dumps(result))
        return 0

    from polyglot_lab.conformance import conformance
    result["conformance"] = conformance(convert, job["ops"])
    for i, entry in enumerate(job["models"]):
        found: dict = {}
        result["models"].append(found)
        try:
            module = convert(str(job_dir / entry["file"]))
            found["signature"] = [list(s.shape.as_list()) for s in module.serve.input_signature]
            outputs = []
            for k, name in enumerate(entry["inputs"]):
                answer = module.serve(np.load(job_dir / name))
                answer = list(answer.values())[0] if isinstance(answer, dict) else answer
                out_name = f"m{i}_y{k}.npy"
                np.save(job_dir / out_name, np.asarray(answer), allow_pickle=False)
                outputs.append(out_name)
            found["outputs"] = outputs
        except Exception as exc:  # noqa: BLE001
            found["error"] = first_line(exc)
    (job_dir / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
