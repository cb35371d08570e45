"""Grading a learner's ONNX->TensorFlow converter (modules 04 and 05), which the grader never imports: it runs in
its own process (graders.converter_runner) on ONNX's backend cases and on models the grader exports itself.
Expected values come from ONNX Runtime, in the grader's process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graders.checks import CheckContext, CheckFailed, describe_array
from graders.checks.compare import close, max_diff

CONVERTER_FILE = "onnx_to_tf.py"
RUNNER_TIMEOUT_S = 300
# export(ctx, job_dir) -> [{"file": "m0.onnx", "inputs": ["m0_x0.npy", ...], "expected": [array, ...]}]
Exporter = Callable[[CheckContext, Path], list]


def ort_run(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], np.float64)


def converter_run(ctx: CheckContext, ops: list[str], export: Exporter, hint: str) -> dict:
    """The runner's result for the learner's onnx_to_tf.py, once per grading run: {"conformance": {op: {...}},
    "models": [{"signature", "outputs": [array], "expected": [array]} or {"error"}]}."""
    if "converter" not in ctx.cache:
        path = ctx.artifact(CONVERTER_FILE, "converter", hint=hint)
        job_dir = Path(tempfile.mkdtemp(prefix="polyglot-converter-"))
        try:
            entries = export(ctx, job_dir)
            (job_dir / "job.json").write_text(json.dumps(
                {"ops": sorted(ops), "models": [{k: e[k] for k in ("file", "inputs")} for e in entries]}))
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
            try:
                run = subprocess.run([sys.executable, "-m", "graders.converter_runner", str(path), str(job_dir)],
                                     check=False, cwd=ctx.workdir, env=env, capture_output=True, text=True, timeout=RUNNER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise CheckFailed(f"{CONVERTER_FILE} ran past {RUNNER_TIMEOUT_S} s on the grader's cases.") from None
            if not (job_dir / "result.json").exists():
                raise CheckFailed(f"{CONVERTER_FILE} crashed the process that ran it (exit {run.returncode}): "
                                  f"{run.stderr.strip().splitlines()[-1][:300] if run.stderr.strip() else ''}")
            result = json.loads((job_dir / "result.json").read_text())
            if "error" in result:
                raise CheckFailed(result["error"], hint="The file must import on its own: it runs outside the notebook.")
            for entry, found in zip(entries, result["models"]):
                found["expected"] = entry["expected"]
                found["outputs"] = [np.load(job_dir / name, allow_pickle=False) for name in found.get("outputs", [])]
            ctx.cache["converter"] = result
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
    return ctx.cache["converter"]


def conformance_check(ops: list[str], run: Callable[[CheckContext], dict],
                      diagnose: Callable[[dict[str, str]], tuple[str, str]]):
    """A check that every backend case of `ops` passes; `diagnose(failed)` -> (message, hint) names the mistake."""
    def check(ctx: CheckContext):
        table = run(ctx)["conformance"]
        failed = {case: why for op in ops for case, why in table.get(op, {}).get("failed", {}).items()}
        passed = sum(len(table.get(op, {}).get("passed", [])) for op in ops)
        if failed:
            message, hint = diagnose(failed)
            example = next(iter(failed.items()))
            raise CheckFailed(message, expected=f"all {passed + len(failed)} backend cases pass",
                              found=f"{len(failed)} fail, e.g. {example[0]}: {example[1]}", hint=hint)
        return f"{passed}/{passed} ONNX backend cases of {', '.join(ops)} pass"
    check.__name__ = f"conformance_{'_'.join(ops).lower()}"
    return check


def register_conformance_checks(registry, groups: dict[str, list[str]], run: Callable[[CheckContext], dict],
                                diagnose: Callable[[str, dict[str, str]], tuple[str, str]]) -> None:
    """converter.<group> for each operator group: its backend cases pass; diagnose(group, failed) names the mistake."""
    for group, ops in groups.items():
        registry.check("converter", group)(conformance_check(ops, run, lambda failed, group=group: diagnose(group, failed)))


def check_model_parity(result: dict, one: str, summary: str) -> str:
    """Every model the grader exported converts and matches ONNX Runtime on every input; `one` names a model
    ("a convnet"), `summary` all of them."""
    worst = 0.0
    for found in result["models"]:
        if "error" in found:
            raise CheckFailed(f"Converting {one} the grader exported failed: {found['error']}",
                              hint="Run every node in order; look each input up among the constants and the values "
                                   "computed so far.")
        for got, expected in zip(found["outputs"], found["expected"]):
            if not close(got, expected):
                raise CheckFailed(f"The converted model differs from ONNX Runtime on {one} of the grader's "
                                  f"(input shape {tuple(expected.shape)}).", expected="max abs diff <= 1e-05",
                                  found=f"max abs diff {max_diff(got, expected):.3g}" if np.shape(got) == expected.shape
                                  else describe_array(got))
            worst = max(worst, max_diff(got, expected))
    return f"matches ONNX Runtime on {summary} (max abs diff {worst:.1e})"


def check_dynamic_signature(result: dict, axes: int, expected: str, fixed: str) -> str:
    """serve's input signature leaves the first `axes` dimensions free (None); `fixed` names the mistake."""
    for found in result["models"]:
        shape = (found.get("signature") or [[]])[0]
        if any(d is not None for d in shape[:axes]):
            raise CheckFailed(f"serve's input signature fixes {fixed}.",
                              expected=expected, found=str(shape),
                              hint="Take the ONNX input's symbolic dimensions (dim_param) as None in the TensorSpec.")
    broken = next((found["error"] for found in result["models"] if "error" in found), None)
    if broken:
        raise CheckFailed(f"serve never ran on the grader's models: {broken}",
                          hint="Every handler the model needs must work before its signature can be used.")
    return f"serve's signature is {expected}"
