"""The kernel side of module 05_capstone: one probe per exercise, run in the learner's kernel
after the exercise's cells. Written by `make notebooks` from the `# <kernel>` blocks of
graders/checks/m05_capstone.py, each in its exercise's section beside the inputs and checks:
edit those, not this file."""
import numpy as np

from polyglot_lab.probe import ARRAY, ARRAYS, VALUE, need, probe, torch_call_recorder


@probe(calls=VALUE, out_a=ARRAY, out_b=ARRAY, out_c=ARRAY)
def attention(ns, io):
    import torch

    fn, inputs, outputs = need(ns, "attention"), io.inputs, {}
    recorder = torch_call_recorder()
    with recorder, torch.no_grad():
        for case in ("a", "b", "c"):
            q, k, v = (torch.from_numpy(np.ascontiguousarray(inputs[f"{name}_{case}"])) for name in "qkv")
            outputs[f"out_{case}"] = fn(q, k, v, torch.from_numpy(inputs[f"mask_{case}"]))
    io.save(calls=sorted(recorder.calls), **outputs)


@probe(logits_a=ARRAY, logits_b=ARRAY, state_a=ARRAYS, state_b=ARRAYS, errors=VALUE, training=VALUE)
def port(ns, io):
    import keras
    import torch

    port_keras_weights, errors, training = need(ns, "port_keras_weights"), {}, {}
    for case in ("a", "b"):  # saved one model at a time: a failure on one costs only its own check
        try:
            net = port_keras_weights(keras.models.load_model(io.input_file(f"grader_{case}.keras")))
            if not isinstance(net, torch.nn.Module):
                raise TypeError(f"port_keras_weights must return a torch.nn.Module, it returned {type(net).__name__}")
            training[case] = bool(net.training)
            with torch.no_grad():
                logits = net(torch.from_numpy(io.inputs[f"tokens_{case}"]))
            io.save(**{f"logits_{case}": logits,
                       f"state_{case}": {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}})
        except Exception as exc:  # noqa: BLE001 - the learner's failure is data for this model's check only
            errors[case] = f"{type(exc).__name__}: {str(exc)[:500]}"
    io.save(errors=errors, training=training)


@probe(parity=VALUE)
def parity(ns, io):
    matrix = dict(need(ns, "parity"))
    io.save(parity={"runtimes": [str(r) for r in matrix.get("runtimes", [])],
                    **{key: np.asarray(matrix.get(key, []), np.float64).tolist() for key in ("max_abs", "max_rel")}})
