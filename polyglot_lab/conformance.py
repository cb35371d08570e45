"""ONNX's own backend test cases (shipped in the onnx wheel) as a conformance suite for a converter.

    from polyglot_lab.conformance import conformance
    table = conformance(onnx_to_tf.convert, ["Conv", "Gemm"])   # {op: {"passed": [...], "failed": {case: why}}}

A converter is a function model -> object with run(*inputs) -> {output name: tensor}. Only the single-node
cases of each operator are used, within SCOPE: the forms this course's models need.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np

# Cases left out on purpose: several outputs (argmax), 1-D and 3-D pooling, ceil_mode and dilated pooling.
OUT_OF_SCOPE = ("argmax", "_1d_", "_3d_", "ceil", "dilations")


@functools.lru_cache(maxsize=1)
def _single_node_cases() -> dict:
    """{op_type: [TestCase]} for every single-node case of onnx's suite (collecting takes a few seconds)."""
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases(None)
    by_op: dict = {}
    for case in cases:
        nodes = case.model.graph.node if case.model is not None else []
        if case.kind == "node" and len(nodes) == 1:
            by_op.setdefault(nodes[0].op_type, []).append(case)
    return by_op


def backend_cases(op_type: str) -> list:
    return [c for c in _single_node_cases().get(op_type, []) if not any(word in c.name for word in OUT_OF_SCOPE)]


def case_outputs(convert, model, input_sets) -> list[list[np.ndarray]] | str:
    """The converter's outputs for each input set of a case's model (run where the converter may run: the checker),
    or why it failed."""
    try:
        module = convert(model)
        found_sets = []
        for inputs in input_sets:
            found = module.run(*[np.asarray(x) for x in inputs])
            found_sets.append([np.asarray(v) for v in (found.values() if isinstance(found, dict) else found)])
        return found_sets
    except Exception as exc:  # noqa: BLE001 - a failing handler is a finding
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"


def case_files(ops, folder) -> list[dict]:
    """The backend cases of `ops` as files in `folder` (collecting them takes seconds: the grader does it once and
    hands them over): [{"name", "model": path.onnx, "inputs": [[path.npy, ...] per data set]}]."""
    import onnx
    from pathlib import Path

    folder, cases = Path(folder), []
    for op in ops:
        for case in backend_cases(op):
            name = case.name.removeprefix("test_")
            onnx.save(case.model, folder / f"{name}.onnx")
            inputs: list[list[str]] = []
            for d, (data, _) in enumerate(case.data_sets):
                inputs.append([])
                for k, value in enumerate(data):
                    np.save(folder / f"{name}_{d}_{k}.npy", np.asarray(value), allow_pickle=False)
                    inputs[-1].append(str(folder / f"{name}_{d}_{k}.npy"))
            cases.append({"name": name, "model": str(folder / f"{name}.onnx"), "inputs": inputs})
    return cases


def judge_case(case, found_sets: list[list]) -> str | None:  # outputs as found: arrays, None where missing
    """None when the outputs reproduce every data set of the case within its tolerances, else why not (the
    grader's side: the expected values are the case's own)."""
    if len(found_sets) != len(case.data_sets):
        return f"{len(found_sets)} answers for {len(case.data_sets)} data sets"
    for found, (_, expected) in zip(found_sets, case.data_sets):
        if len(found) < len(expected):
            return f"{len(found)} outputs, expected {len(expected)}"
        for got, want in zip(found, expected):
            got = np.asarray(got)
            if got.shape != np.shape(want):
                return f"shape {got.shape}, expected {np.shape(want)}"
            if not np.allclose(got, want, rtol=case.rtol, atol=case.atol):
                return f"values differ (max abs diff {np.abs(got.astype(np.float64) - want).max():.3g})"
    return None


def run_case(convert, case) -> str | None:
    """Both halves in one process: for a converter the caller trusts (the course's own, in the notebook)."""
    found = case_outputs(convert, case.model, [inputs for inputs, _ in case.data_sets])
    return found if isinstance(found, str) else judge_case(case, found)


def conformance(convert, ops) -> dict:
    table = {}
    for op in ops:
        results = {case.name.removeprefix("test_"): run_case(convert, case) for case in backend_cases(op)}
        table[op] = {"passed": [k for k, v in results.items() if v is None],
                     "failed": {k: v for k, v in results.items() if v is not None}}
    return table
