"""Grading a learner's ONNX->TensorFlow converter (modules 04 and 05), which the grader never imports: the checker
runs it (polyglot_lab/checker/ops.py: convert) on ONNX's backend cases and on models the grader exports itself, and
hands back its outputs. Every verdict is decided here: a case against the expected values ONNX ships with it, a
model against ONNX Runtime run by the grader on its own export."""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from polyglot_lab.checking import CheckContext, CheckFailed
from polyglot_lab.checking.compare import expect_close

CONVERTER_FILE = "onnx_to_tf.py"
# export(ctx, folder) -> [{"file": "m0.onnx", "inputs": ["m0_x0.npy", ...], "expected": [array, ...]}]
Exporter = Callable[[CheckContext, Path], list]


def ort_run(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime in the grader's process: only for models the grader exported itself."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], np.float64)


def judged_conformance(ops: list[str], found: dict) -> dict:
    """{op: {"passed": [...], "failed": {case: why}}} from the outputs the checker returned for each case."""
    from polyglot_lab.conformance import backend_cases, judge_case

    table = {}
    for op in ops:
        passed: list[str] = []
        failed: dict[str, str] = {}
        for case in backend_cases(op):
            name = case.name.removeprefix("test_")
            entry = found["cases"].get(name) if isinstance(found.get("cases"), dict) else None
            why: str | None
            if not isinstance(entry, dict):
                why = "no answer"
            elif "error" in entry:
                why = str(entry["error"])[:300]
            else:
                outputs = entry.get("outputs")
                counts = outputs if isinstance(outputs, list) else []
                found_sets = [[found.get(f"case:{name}:{d}:{k}") for k in range(int(n))] for d, n in enumerate(counts)]
                why = judge_case(case, found_sets)
                if why is not None:
                    why += layout_evidence(case, found_sets)
            if why is None:
                passed.append(name)
            else:
                failed[name] = why
        table[op] = {"passed": passed, "failed": failed}
    return table


def layout_evidence(case, found_sets: list[list]) -> str:
    """What a failed 4-D case's outputs say about the layout, as words to append to why it failed (empty when they
    say nothing): the expected values in NHWC order (transposed in, never back), or an output whose channel axis
    changed size (an NCHW tensor read as NHWC: the op ran over the channel axis)."""
    for found, (_, expected) in zip(found_sets, case.data_sets):
        for got, want in zip(found, expected):
            got, want = np.asarray(got), np.asarray(want)
            if got.ndim != 4 or want.ndim != 4 or got.shape == want.shape:
                continue
            nhwc = want.transpose(0, 2, 3, 1)
            if got.shape == nhwc.shape and np.allclose(got, nhwc, rtol=case.rtol, atol=case.atol):
                return " (the expected values in NHWC order)"
            if got.shape[0] == want.shape[0] and got.shape[1] != want.shape[1]:
                return f" (the channel axis has {got.shape[1]} entries, expected {want.shape[1]})"
    return ""


def converter_run(ctx: CheckContext, ops: list[str], export: Exporter, hint: str) -> dict:
    """The learner's onnx_to_tf.py, judged once per grading run: {"conformance": {op: {...}},
    "models": [{"signature", "outputs": [array], "expected": [array]} or {"error"}]}."""
    def load():
        path = ctx.artifact(CONVERTER_FILE, "converter", hint=hint)
        from polyglot_lab.conformance import case_files

        folder = ctx.checker.folder("converter")
        entries = export(ctx, folder)
        models = [{"file": str(folder / e["file"]), "inputs": [str(folder / name) for name in e["inputs"]]}
                  for e in entries]
        cases = folder / "cases"
        cases.mkdir()
        found = ctx.run("convert", f"{CONVERTER_FILE} could not be run on the grader's cases", converter=path,
                        cases=case_files(sorted(ops), cases), models=models)
        if "import_error" in found:
            raise CheckFailed(str(found["import_error"]), hint="The file must import on its own: it runs outside the notebook.")
        results = []
        for i, (entry, model) in enumerate(zip(entries, list(found.get("models", [])) + [{}] * len(entries))):
            model = model if isinstance(model, dict) else {}
            if "error" in model or "outputs" not in model:
                results.append({"signature": model.get("signature"), "error": str(model.get("error", "no answer"))[:300]})
                continue
            results.append({"signature": model.get("signature"), "expected": entry["expected"],
                            "outputs": [found.get(f"model:{i}:{k}") for k in range(len(entry["inputs"]))]})
        return {"conformance": judged_conformance(ops, found), "models": results}
    return ctx.cached("converter", load)


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
        registry.check("converter", group)(conformance_check(ops, run, functools.partial(diagnose, group)))


def failing_ops(result: dict) -> list[str]:
    """The operators with at least one failed backend case: the likely cause when a whole model fails."""
    return [op for op, verdict in result["conformance"].items() if verdict.get("failed")]


def check_model_parity(result: dict, one: str, summary: str) -> str:
    """Every model the grader exported converts and matches ONNX Runtime on every input; `one` names a model
    ("a convnet"), `summary` all of them. When handlers fail their own backend cases, the message names them as the
    likely cause (their checks say what is wrong)."""
    broken = failing_ops(result)
    cause = (f" The {', '.join(broken)} handler{'s' if len(broken) > 1 else ''} also fail{'' if len(broken) > 1 else 's'}"
             " ONNX's backend cases: the likely cause (see that check).") if broken else ""
    first_inputs = [(found.get("signature") or [[None]])[0] for found in result["models"]]
    if any(isinstance(shape, list) and shape[:1] not in ([None], []) for shape in first_inputs):
        cause += " serve's input signature fixes its first dimension (the batch): the likely cause (see that check)."
    worst = 0.0
    for found in result["models"]:
        if "error" in found:
            raise CheckFailed(f"Converting {one} the grader exported failed: {found['error']}{cause}",
                              hint="Run every node in order; look each input up among the constants and the values "
                                   "computed so far.")
        for got, expected in zip(found["outputs"], found["expected"]):
            worst = max(worst, expect_close(got, expected, f"The converted {one}", mistake=(
                f"The converted model differs from ONNX Runtime on {one} of the grader's "
                f"(input shape {tuple(expected.shape)}).{cause}")))
    return f"matches ONNX Runtime on {summary} (max abs diff {worst:.1e})"


def check_dynamic_signature(result: dict, axes: int, expected: str, fixed: str) -> str:
    """serve's input signature leaves the first `axes` dimensions free (None), and serve runs the grader's models at
    sizes other than the export's; `fixed` names the mistake. The signature alone is no evidence: the notebook may
    hand it over written (module 05's skeleton does), so a serve that cannot run proves nothing dynamic."""
    for found in result["models"]:
        shape = (found.get("signature") or [[]])[0]
        if any(d is not None for d in shape[:axes]):
            raise CheckFailed(f"serve's input signature fixes {fixed}.",
                              expected=expected, found=str(shape),
                              hint="Take the ONNX input's symbolic dimensions (dim_param) as None in the TensorSpec.")
    unconverted = next((found["error"] for found in result["models"] if not found.get("signature")), None)
    if unconverted:
        raise CheckFailed(f"convert() gave no serve with an input signature on the grader's models: {unconverted}",
                          hint="convert(model) returns a tf.Module whose serve is a tf.function with an input_signature.")
    failed = next((found["error"] for found in result["models"] if "error" in found), None)
    if failed:
        broken = failing_ops(result)
        cause = f"the {', '.join(broken)} handler fails ONNX's own cases, the likely cause; " if broken else ""
        raise CheckFailed("serve's signature leaves the sizes free, but serve fails on the grader's models, so no "
                          f"other size is shown to work ({cause}model_parity says more): {failed}",
                          hint="Every handler the model needs must work before its signature can be used.")
    return f"serve's signature is {expected}"
