"""The kernel side of module 03_onnx_export: one probe per exercise, run in the learner's kernel
after the exercise's cells. Written by `make notebooks` from the `# <kernel>` blocks of
graders/checks/m03_onnx_export.py, each in its exercise's section beside the inputs and checks:
edit those, not this file."""
import numpy as np

from polyglot_lab.probe import ARRAY, VALUE, constructor_recorder, need, probe


def _model_file(io, name: str) -> str:
    """The path of the grader's model `name` (an input file, <name>.onnx)."""
    return str(io.input_file(f"{name}.onnx"))


@probe(external_data=VALUE)
def export(ns, io):
    io.save(external_data=bool(need(ns, "EXTERNAL_DATA")))


@probe(value_info=VALUE, broken_error=VALUE)
def validate(ns, io):
    validate_onnx = need(ns, "validate_onnx")
    inferred = validate_onnx(_model_file(io, "good"))
    if not hasattr(inferred, "graph"):
        raise TypeError(f"validate_onnx must return the shape-inferred onnx.ModelProto, it returned {type(inferred).__name__}")
    try:
        validate_onnx(_model_file(io, "broken"))
        broken_error = None
    except Exception as exc:  # noqa: BLE001 - raising is what a validator must do here
        broken_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
    io.save(value_info=sorted(v.name for v in inferred.graph.value_info), broken_error=broken_error)


@probe(reports=VALUE)
def inspect(ns, io):
    inspect_onnx, reports = need(ns, "inspect_onnx"), {}
    for name in io.inputs["models"]:
        report = dict(inspect_onnx(_model_file(io, name)))
        reports[name] = {
            "opset": int(report.get("opset", -1)),
            "inputs": {str(k): [d if isinstance(d, str) else int(d) for d in v] for k, v in dict(report.get("inputs", {})).items()},
            "outputs": {str(k): [d if isinstance(d, str) else int(d) for d in v] for k, v in dict(report.get("outputs", {})).items()},
            "ops": {str(k): int(v) for k, v in dict(report.get("ops", {})).items()},
        }
    io.save(reports=reports)


@probe(providers_given=VALUE, providers=VALUE, intra_op_threads=VALUE, reference_predictions=ARRAY, evaluators=VALUE,
       reference_error=VALUE)
def runtime(ns, io):
    import onnxruntime
    from onnx.reference import ReferenceEvaluator

    path, inputs = _model_file(io, "good"), io.inputs
    make_session, given, providers, threads = need(ns, "make_session"), [], [], []
    for wanted in inputs["threads"]:  # two thread counts: the session must follow the argument
        with constructor_recorder(onnxruntime.InferenceSession) as sessions:
            session = make_session(path, int(wanted))
        if not isinstance(session, onnxruntime.InferenceSession):
            raise TypeError(f"make_session must return an onnxruntime.InferenceSession, it returned {type(session).__name__}")
        args, kwargs = sessions[-1] if sessions else ((), {})
        chosen = kwargs.get("providers", args[2] if len(args) > 2 else None)
        given.append([p if isinstance(p, str) else str(p[0]) for p in chosen] if chosen else None)
        providers.append(list(session.get_providers()))
        threads.append(int(session.get_session_options().intra_op_num_threads))
    io.save(providers_given=given[0], providers=providers[0], intra_op_threads=threads)
    reference_predict = need(ns, "reference_predict")
    with constructor_recorder(ReferenceEvaluator) as evaluators:
        try:  # an error here costs the reference check only: the session checks above stand
            io.save(reference_predictions=np.asarray(reference_predict(path, inputs["X"]), dtype=np.float64),
                    reference_error=None)
        except Exception as exc:  # noqa: BLE001 - the grader reports it
            io.save(reference_error=f"{type(exc).__name__}: {str(exc).strip()[:300]}")
    io.save(evaluators=len(evaluators))


def _number(value):
    """A report's figure as a float (Python, NumPy or a 0-d tensor), anything else as its text."""
    try:
        return float(value) if not isinstance(value, (str, bytes)) and np.ndim(value) == 0 else str(value)
    except (TypeError, ValueError):
        return str(value)


@probe(report=VALUE)
def quantize(ns, io):
    report = dict(need(ns, "report"))
    io.save(report={str(k): _number(v) for k, v in report.items()})
