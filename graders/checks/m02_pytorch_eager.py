"""Checks for module 02 (PyTorch eager). Expected values are computed here, in the grader's process,
with reference code (torch's own layers, Keras for the port) on inputs chosen at grade time; the saved program and
state dict are opened only by the sandboxed checker (ctx.run)."""
from __future__ import annotations

# <kernel>  imports of the probes (the kernel side, written to the probes file by `make notebooks`)
import numpy as np
import torch

from polyglot_lab import models
from polyglot_lab.probe import ARRAY, ARRAYS, VALUE, need, probe, torch_call_recorder
# </kernel>

import itertools

from graders.checks import (
    CheckContext,
    CheckFailed,
    Outputs,
    Registry,
    check_holdout_accuracy,
    describe_array,
)
from graders.checks.compare import (
    PARITY_ATOL,
    close,
    expect_close,
    looks_like_probabilities,
    max_diff,
    softmax,
)
from graders.checks.runtimes import program_outputs, saved_tensors
from graders.data import holdout_digits
from polyglot_lab.data import digits

registry = Registry("02_pytorch_eager")
GRAD_ATOL = 1e-8          # float64 inputs
ACCURACY_BAR = 0.95
PROGRAM_FILE, STATE_FILE = registry.artifacts("save")
NORM_FUNCTIONS = ("layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm")


def as_inputs(name: str, state: dict) -> dict:
    """A torch state dict as one probe input, `name`: a folder of arrays, one per key."""
    return {name: {k: v.detach().numpy().copy() for k, v in state.items()}}


def random_state(module, rng: np.random.Generator, scale=0.5) -> dict:
    """A state dict of module's shapes, drawn from rng (fresh each grading run)."""
    state = {}
    for name, value in module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = value.clone()
        elif name.endswith("running_var"):
            state[name] = torch.from_numpy(rng.uniform(0.5, 2.0, value.shape).astype(np.float32))
        else:
            std = scale / np.sqrt(value.shape[1]) if value.ndim == 2 else scale  # weights scaled by fan-in
            state[name] = torch.from_numpy(rng.normal(0, std, value.shape).astype(np.float32))
    return state


def standardised_digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = digits()
    mean, std = models.pixel_statistics(X)
    return ((X - mean) / std).astype(np.float32), y


def returns_logits_check(logits, what: str) -> str:
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] != 10:
        raise CheckFailed(f"{what} must return one row of 10 logits per input.", expected="shape (n, 10)",
                          found=describe_array(logits))
    if looks_like_probabilities(logits):
        raise CheckFailed(f"{what} returns probabilities: softmax is applied inside the model, and "
                          "F.cross_entropy / nn.CrossEntropyLoss applies log-softmax again.",
                          expected="raw logits", found="rows that are non-negative and sum to 1",
                          hint="Return the last Linear layer's output; apply softmax only where you need probabilities.")
    return "returns logits (the softmax lives in the loss)"


# <kernel>  helpers of this module's probes
def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _module(obj, made_by: str) -> torch.nn.Module:
    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"{made_by} must give a torch.nn.Module, it gave {type(obj).__name__}")
    return obj


def _state(module: torch.nn.Module) -> dict:
    """The module's state dict as arrays (an ARRAYS output)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _weights(inputs: dict, name: str) -> dict:
    """The grader's weights for a model: the input `name`, a state dict of arrays."""
    return {k: _tensor(v) for k, v in inputs[name].items()}


def _load(module: torch.nn.Module, weights: dict, what: str) -> None:
    expected, found = sorted(weights), sorted(module.state_dict())
    if expected != found:
        raise KeyError(f"{what}'s state_dict keys must be {expected}, they are {found}")
    module.load_state_dict(weights)


TRAINING_HIDDEN = 8  # few weights, large steps: each known mistake moves them visibly


def training_setup(inputs: dict):
    """The model, batches, optimizer and scheduler of the train_epoch probe (the grader replays the same)."""
    net = models.bn_net(hidden=TRAINING_HIDDEN)
    net.load_state_dict(_weights(inputs, "net"))
    net.eval()  # train_epoch must switch to train mode itself
    X, y, size = _tensor(inputs["X"]), _tensor(inputs["y"]), int(inputs["batch_size"])
    batches = [(X[i:i + size], y[i:i + size]) for i in range(0, len(X), size)]
    optimizer = torch.optim.SGD(net.parameters(), lr=float(inputs["lr"]), momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(inputs["step_size"]), gamma=0.5)
    return net, batches, optimizer, scheduler
# </kernel>


# -- port --------------------------------------------------------------------------------------
# <kernel>
@probe(logits=ARRAY, state=ARRAYS)
def port(ns, io):
    inputs = io.inputs
    keras_model = models.build_keras_baseline()
    keras_model.set_weights([inputs[f"keras_{i}"] for i in range(len(keras_model.weights))])
    net = _module(need(ns, "port_keras_weights")(keras_model), "port_keras_weights").eval()
    with torch.no_grad():
        logits = net(_tensor(inputs["X"]))
    io.save(logits=logits, state=_state(net))
# </kernel>


@registry.inputs("port")
def port_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("port")
    shapes = [w.shape for w in _keras_baseline().get_weights()]
    # kernels scaled by fan-in (Keras kernels are (..., in, out)) so activations stay near 1, as in a trained net
    weights = {f"keras_{i}": rng.normal(0, 1.5 / np.sqrt(np.prod(shape[:-1])) if len(shape) > 1 else 0.2, shape)
               .astype(np.float32) for i, shape in enumerate(shapes)}
    X, _ = standardised_digits()
    rows = X[rng.choice(len(X), size=32, replace=False)]
    return {**weights, "X": np.vstack([rows, rng.normal(size=(32, 64))]).astype(np.float32)}


def _keras_baseline():
    import os
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    return models.build_keras_baseline()


def keras_port_reference(ctx: CheckContext) -> np.ndarray:
    """The Keras model's probabilities for the grader's inputs, computed by Keras in this process."""
    def load():
        given = port_inputs(ctx)
        model = _keras_baseline()
        model.set_weights([given[f"keras_{i}"] for i in range(len(model.weights))])
        return np.asarray(model(given["X"], training=False), np.float64)
    return ctx.cached("port_expected", load)


def diagnose_port(state: dict[str, np.ndarray], keras_weights: list[np.ndarray]) -> tuple[str, str] | None:
    """Name the layout mistake in a ported state dict: (message, hint), or None when none is recognised."""
    kernel, _, dense_kernel, _, out_kernel, _ = keras_weights
    for found in state.values():
        if found.shape == (16, 1, 3, 3) and not np.allclose(found, kernel.transpose(3, 2, 0, 1)):
            if np.allclose(found, kernel.transpose(3, 2, 1, 0)):
                what = "its height and width are swapped"
            elif np.allclose(found, kernel.reshape(16, 1, 3, 3)):
                what = "it was reshaped, which scrambles the values, instead of permuted"
            else:
                what = "its axes are not in torch's order"
            return (f"The convolution kernel is in the wrong layout: {what}. Keras stores Conv2D kernels as "
                    "HWIO (3, 3, 1, 16), torch as OIHW (16, 1, 3, 3).", "kernel.transpose(3, 2, 0, 1)")
    nchw_rows = dense_kernel.reshape(4, 4, 16, 32).transpose(2, 0, 1, 3).reshape(256, 32)
    for found in state.values():
        if found.shape == (32, 256) and not np.allclose(found, nchw_rows.T):
            if np.allclose(found, dense_kernel.T):
                return ("The flatten order is wrong: Keras flattens a (h, w, c) feature map (channels last, NHWC), "
                        "torch flattens (c, h, w) (NCHW), so the Dense kernel's 256 rows come in another order.",
                        "Reorder the rows: kernel.reshape(4, 4, 16, 32).transpose(2, 0, 1, 3).reshape(256, 32), then "
                        "transpose; or permute the activations to NHWC (x.permute(0, 2, 3, 1)) before flatten.")
            if np.allclose(found, dense_kernel.reshape(32, 256)) or np.allclose(found, nchw_rows.reshape(32, 256)):
                return ("A Dense kernel was reshaped instead of transposed: Keras stores (in, out), "
                        "torch's Linear.weight is (out, in).", "Use kernel.T, not kernel.reshape(out, in).")
    for found in state.values():
        if found.shape == (10, 32) and not np.allclose(found, out_kernel.T):
            return ("A Dense kernel was reshaped instead of transposed: Keras stores (in, out), "
                    "torch's Linear.weight is (out, in).", "Use kernel.T, not kernel.reshape(out, in).")
    return None


@registry.check("port", "parity")
def port_parity(ctx: CheckContext):
    out, given = ctx.outputs(port), port_inputs(ctx)
    found = np.asarray(out["logits"], np.float64)
    expected = keras_port_reference(ctx)
    if found.shape != expected.shape:
        raise CheckFailed("The ported model's output has the wrong shape.", expected=str(expected.shape),
                          found=describe_array(found))
    probabilities = found if looks_like_probabilities(found) else softmax(found)
    message, hint = None, None
    if not close(probabilities, expected):  # name the layout mistake before failing on it
        diagnosis = diagnose_port(out["state"], [given[f"keras_{i}"] for i in range(6)])
        message, hint = diagnosis or ("The ported model's predictions differ from the Keras model's.",
                                      "Dense kernels transpose; Conv2D kernels go HWIO -> OIHW; "
                                      "Flatten after a convolution changes order (NHWC vs NCHW).")
    diff = expect_close(probabilities, expected, "The ported model's probabilities", mistake=message, hint=hint)
    return f"the ported model matches Keras (max abs diff {diff:.1e} on the probabilities)"


@registry.check("port", "returns_logits")
def port_returns_logits(ctx: CheckContext):
    return returns_logits_check(ctx.outputs(port)["logits"], "The ported model")


# -- layer_norm --------------------------------------------------------------------------------
# <kernel>
@probe(calls=VALUE, out_a=ARRAY, out_b=ARRAY)
def layer_norm(ns, io):
    fn, inputs = need(ns, "layer_norm"), io.inputs
    recorder = torch_call_recorder(qualified=True)
    outputs = {}
    with recorder:
        for case in ("a", "b"):
            outputs[f"out_{case}"] = fn(_tensor(inputs[f"x_{case}"]), _tensor(inputs[f"weight_{case}"]),
                                        _tensor(inputs[f"bias_{case}"]), float(inputs[f"eps_{case}"]))
    io.save(calls=sorted(recorder.calls), **outputs)
# </kernel>


@registry.inputs("layer_norm")
def layer_norm_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("layer_norm")
    dim = int(rng.integers(12, 40))
    values: dict[str, object] = {}
    # a: ordinary activations; b: nearly constant rows, where eps decides the result
    for case, shape, spread, eps in (("a", (4, 6, dim), 3.0, 1e-5), ("b", (8, dim), 0.05, 1e-2)):
        values[f"x_{case}"] = (rng.normal(1.0, spread, shape)).astype(np.float32)
        values[f"weight_{case}"] = rng.normal(1.0, 0.5, shape[-1]).astype(np.float32)
        values[f"bias_{case}"] = rng.normal(0.0, 0.5, shape[-1]).astype(np.float32)
        values[f"eps_{case}"] = eps
    return values


def layer_norm_variants(x, weight, bias, eps) -> dict[str, np.ndarray]:
    """The reference (torch's own layer_norm) and the usual ways a hand-written one goes wrong."""
    x, weight, bias = (torch.from_numpy(np.asarray(a, np.float32)) for a in (x, weight, bias))
    mean = x.mean(-1, keepdim=True)
    centred = x - mean
    variants = {
        "reference": torch.nn.functional.layer_norm(x, (x.shape[-1],), weight, bias, eps),
        "unbiased": centred / torch.sqrt(x.var(-1, unbiased=True, keepdim=True) + eps) * weight + bias,
        "eps_outside": centred / (x.std(-1, unbiased=False, keepdim=True) + eps) * weight + bias,
        "no_affine": torch.nn.functional.layer_norm(x, (x.shape[-1],), None, None, eps),
        "wrong_axis": (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, unbiased=False, keepdim=True) + eps)
        * weight + bias,
    }
    return {k: v.numpy() for k, v in variants.items()}


LAYER_NORM_MISTAKES = {
    "unbiased": ("The variance is the unbiased one (divides by n - 1); layer norm divides by n.",
                 "x.var(-1, unbiased=False, keepdim=True), or ((x - mean) ** 2).mean(-1, keepdim=True)"),
    "eps_outside": ("eps is added to the standard deviation; layer norm adds it to the variance, under the root.",
                    "(x - mean) / torch.sqrt(var + eps)"),
    "no_affine": ("The learned scale and shift are missing: multiply by weight and add bias after normalising.",
                  "... * weight + bias"),
    "wrong_axis": ("The statistics are taken over the wrong axis: layer norm normalises each row over its "
                   "last dimension (the features), not over the batch.", "x.mean(-1, keepdim=True)"),
}


@registry.check("layer_norm", "matches_library")
def layer_norm_matches_library(ctx: CheckContext):
    out, given = ctx.outputs(layer_norm), layer_norm_inputs(ctx)
    for case in ("a", "b"):
        variants = layer_norm_variants(*(given[f"{k}_{case}"] for k in ("x", "weight", "bias", "eps")))
        found, expected = out[f"out_{case}"], variants["reference"]
        if close(found, expected):
            continue
        for name, (message, hint) in LAYER_NORM_MISTAKES.items():
            if close(found, variants[name]):
                raise CheckFailed(message, expected="torch.nn.functional.layer_norm's output",
                                  found=f"max abs diff {max_diff(found, expected):.3g}", hint=hint)
        raise CheckFailed("layer_norm's output differs from torch.nn.functional.layer_norm's.",
                          expected=f"max abs diff <= {PARITY_ATOL:g} on a {given[f'x_{case}'].shape} input, "
                                   f"eps={given[f'eps_{case}']:g}",
                          found=f"max abs diff {max_diff(found, expected):.3g}" if np.shape(found) == expected.shape
                          else describe_array(found),
                          hint="(x - mean) / sqrt(var + eps) * weight + bias, with mean and (biased) var over the "
                               "last dimension, keepdim=True.")
    return "matches torch.nn.functional.layer_norm (two input shapes, two eps)"


@registry.check("layer_norm", "from_tensor_ops")
def layer_norm_from_tensor_ops(ctx: CheckContext):
    calls = ctx.outputs(layer_norm)["calls"]
    library = sorted(c for c in calls if any(c.endswith(f".{name}") or c.endswith(name) for name in NORM_FUNCTIONS))
    if library:
        raise CheckFailed("layer_norm calls torch's own normalisation instead of computing it from tensor operations.",
                          expected="mean, var (or pow), sqrt, arithmetic", found=", ".join(library),
                          hint="The point is to write it yourself; torch's version is what the grader compares against.")
    return "written from tensor operations"


# -- silu --------------------------------------------------------------------------------------
# <kernel>
@probe(is_function=VALUE, y=ARRAY, grad=ARRAY)
def silu(ns, io):
    function, inputs = need(ns, "SiLUFunction"), io.inputs
    is_function = isinstance(function, type) and issubclass(function, torch.autograd.Function)
    io.save(is_function=is_function)
    if not is_function:
        return
    x = _tensor(inputs["x"]).requires_grad_()
    y = function.apply(x)
    y.backward(_tensor(inputs["grad_output"]))
    io.save(y=y, **({"grad": x.grad} if x.grad is not None else {}))
# </kernel>


@registry.inputs("silu")
def silu_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("silu")
    return {"x": rng.uniform(-6, 6, 64), "grad_output": rng.normal(0, 2, 64)}


def silu_reference(x, grad_output) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, the gradient with respect to x, the local derivative dy/dx) in float64."""
    s = 1 / (1 + np.exp(-x))
    derivative = s * (1 + x * (1 - s))
    return x * s, grad_output * derivative, derivative


def _silu_outputs(ctx: CheckContext) -> Outputs:
    out = ctx.outputs(silu)
    if not out.get("is_function"):
        raise CheckFailed("SiLUFunction is not a torch.autograd.Function.",
                          expected="class SiLUFunction(torch.autograd.Function) with forward(ctx, x) and "
                                   "backward(ctx, grad_output)",
                          hint="Subclass torch.autograd.Function; call it as SiLUFunction.apply(x).")
    return out


@registry.check("silu", "forward")
def silu_forward(ctx: CheckContext):
    out, given = _silu_outputs(ctx), silu_inputs(ctx)
    expected, _, _ = silu_reference(given["x"], given["grad_output"])
    expect_close(out["y"], expected, "SiLUFunction's forward", GRAD_ATOL, mistake="SiLUFunction's forward is not x * sigmoid(x).")
    return "forward is x * sigmoid(x)"


@registry.check("silu", "backward")
def silu_backward(ctx: CheckContext):
    out, given = _silu_outputs(ctx), silu_inputs(ctx)
    x, grad_output = given["x"], given["grad_output"]
    _, expected, derivative = silu_reference(x, grad_output)
    if "grad" not in out:
        raise CheckFailed("No gradient reached x: backward returned None.",
                          expected="backward returns grad_output * d silu / dx", found="x.grad is None")
    found = out["grad"]
    if close(found, expected, GRAD_ATOL):
        return f"backward matches the analytic gradient (max abs diff {max_diff(found, expected):.1e})"
    s = 1 / (1 + np.exp(-x))
    if close(found, derivative, GRAD_ATOL):
        message, hint = ("backward ignores grad_output: it returns dy/dx, not the chain rule's "
                         "grad_output * dy/dx.", "return grad_output * (...)")
    elif close(found, grad_output * s, GRAD_ATOL):
        message, hint = ("backward is off: it returns grad_output * sigmoid(x), missing the product rule's second "
                         "term.", "d/dx [x * s(x)] = s(x) + x * s(x) * (1 - s(x))")
    else:
        message, hint = ("backward is off: its gradient differs from the analytic one.",
                         "d/dx [x * s(x)] = s(x) * (1 + x * (1 - s(x))); check it with torch.autograd.gradcheck "
                         "on float64 inputs.")
    raise CheckFailed(message, expected="grad_output * sigmoid(x) * (1 + x * (1 - sigmoid(x)))",
                      found=f"max abs diff {max_diff(found, expected):.3g}", hint=hint)


# -- block -------------------------------------------------------------------------------------
# <kernel>
@probe(out=ARRAY)
def block(ns, io):
    inputs = io.inputs
    residual = _module(need(ns, "ResidualBlock")(int(inputs["dim"]), int(inputs["hidden"])),
                       "ResidualBlock(dim, hidden)")
    _load(residual, _weights(inputs, "block"), "ResidualBlock")
    with torch.no_grad():
        io.save(out=residual(_tensor(inputs["x"])))
# </kernel>


@registry.inputs("block")
def block_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("block")
    dim, hidden = int(rng.integers(8, 24)), int(rng.integers(16, 48))
    shapes = {"norm.weight": (dim,), "norm.bias": (dim,), "fc1.weight": (hidden, dim), "fc1.bias": (hidden,),
              "fc2.weight": (dim, hidden), "fc2.bias": (dim,)}
    state = {k: torch.from_numpy(rng.normal(0, 0.5, s).astype(np.float32)) for k, s in shapes.items()}
    return {"dim": dim, "hidden": hidden, "x": rng.normal(0.5, 2.0, (5, 3, dim)).astype(np.float32),
            **as_inputs("block", state)}


def block_reference(given: dict, residual=True) -> np.ndarray:
    """x + fc2(silu(fc1(layer_norm(x)))) built from torch's own layers."""
    F = torch.nn.functional
    w = {k: torch.from_numpy(v) for k, v in given["block"].items()}
    x = torch.from_numpy(given["x"])
    h = F.layer_norm(x, (x.shape[-1],), w["norm.weight"], w["norm.bias"], 1e-5)
    h = F.linear(F.silu(F.linear(h, w["fc1.weight"], w["fc1.bias"])), w["fc2.weight"], w["fc2.bias"])
    return (x + h if residual else h).numpy()


@registry.check("block", "matches_library")
def block_matches_library(ctx: CheckContext):
    found, given = ctx.outputs(block)["out"], block_inputs(ctx)
    expected = block_reference(given)
    if close(found, expected):
        return "matches the same block built from torch.nn.functional layers"
    if close(found, block_reference(given, residual=False)):
        raise CheckFailed("The residual connection is missing: the block returns fc2(...) alone.",
                          expected="x + fc2(silu(fc1(norm(x))))", found="fc2(silu(fc1(norm(x))))",
                          hint="return x + self.fc2(...)")
    raise CheckFailed("ResidualBlock's output differs from x + fc2(silu(fc1(layer_norm(x)))) built from torch's "
                      "own layers.", expected=f"max abs diff <= {PARITY_ATOL:g}",
                      found=f"max abs diff {max_diff(found, expected):.3g}" if np.shape(found) == expected.shape
                      else describe_array(found),
                      hint="Pre-norm: normalise first, then fc1, SiLU, fc2, and add the input back.")


# -- model -------------------------------------------------------------------------------------
# <kernel>
@probe(logits=ARRAY, gradients=VALUE)
def model(ns, io):
    inputs = io.inputs
    torch.manual_seed(int(inputs["seed"]))
    net = _module(need(ns, "DigitsNet")(_tensor(inputs["mean"]), _tensor(inputs["std"])), "DigitsNet(mean, std)")
    net.train()
    logits = net(_tensor(inputs["X"]))
    torch.nn.functional.cross_entropy(logits, _tensor(inputs["y"])).backward()
    gradients = {name: (None if p.grad is None else float(p.grad.norm())) for name, p in net.named_parameters()}
    io.save(logits=logits.detach(), gradients=gradients)
# </kernel>


@registry.inputs("model")
def model_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("model")
    X, y = digits()
    rows = rng.choice(len(X), size=64, replace=False)
    mean, std = models.pixel_statistics(X)
    return {"X": X[rows], "y": y[rows], "mean": mean, "std": std, "seed": int(rng.integers(0, 2**31 - 1))}


@registry.check("model", "every_parameter_learns")
def every_parameter_learns(ctx: CheckContext):
    gradients = ctx.outputs(model)["gradients"]
    if not gradients:
        raise CheckFailed("DigitsNet has no parameters.", hint="Build its layers in __init__, as attributes of self.")
    stuck = [name for name, norm in gradients.items() if norm is None or norm == 0.0]
    if stuck:
        raise CheckFailed(f"Some parameters never get a gradient, so they never learn: {', '.join(stuck)}.",
                          expected="a non-zero gradient for every parameter after loss.backward()",
                          found=f"{len(stuck)} of {len(gradients)} parameters without one",
                          hint="Something between them and the loss cuts the graph: .detach(), .data, .item() or "
                               ".numpy() round-trips, torch.no_grad(), or a layer built but never called.")
    return f"all {len(gradients)} parameters get a gradient"


@registry.check("model", "returns_logits")
def model_returns_logits(ctx: CheckContext):
    return returns_logits_check(ctx.outputs(model)["logits"], "DigitsNet")


# -- loader ------------------------------------------------------------------------------------
# <kernel>
@probe(first=ARRAY, batch_sizes=VALUE, second_epoch=ARRAY, same_seed=ARRAY, other_seed=ARRAY)
def loader(ns, io):
    make_loader, inputs = need(ns, "make_loader"), io.inputs
    n, batch_size, seed = int(inputs["n"]), int(inputs["batch_size"]), int(inputs["seed"])
    X = np.repeat(np.arange(n, dtype=np.float32)[:, None], 64, axis=1)
    y = np.arange(n, dtype=np.int64)  # labels are row ids, so the order of rows shows

    def epoch(loader):
        return [np.asarray(batch[1]).ravel() for batch in loader]

    first_loader = make_loader(X, y, batch_size, seed)
    first = epoch(first_loader)
    io.save(first=np.concatenate(first), batch_sizes=[len(b) for b in first],
            second_epoch=np.concatenate(epoch(first_loader)),
            same_seed=np.concatenate(epoch(make_loader(X, y, batch_size, seed))),
            other_seed=np.concatenate(epoch(make_loader(X, y, batch_size, seed + 1))))
# </kernel>


@registry.inputs("loader")
def loader_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("loader")
    return {"n": int(rng.integers(90, 140)), "batch_size": int(rng.integers(8, 20)), "seed": int(rng.integers(0, 2**31 - 2))}


@registry.check("loader", "reproducible")
def loader_reproducible(ctx: CheckContext):
    out = ctx.outputs(loader)
    if not np.array_equal(out["first"], out["same_seed"]):
        raise CheckFailed("Two loaders made with the same seed give different orders: the run is not reproducible.",
                          hint="Shuffle with a generator seeded by `seed`: DataLoader(..., shuffle=True, "
                               "generator=torch.Generator().manual_seed(seed)).")
    if np.array_equal(out["first"], out["other_seed"]):
        raise CheckFailed("Loaders made with different seeds give the same order: the seed is ignored.",
                          hint="Seed the generator with the `seed` argument.")
    return "the same seed gives the same order; another seed, another order"


@registry.check("loader", "shuffles_every_row")
def loader_shuffles_every_row(ctx: CheckContext):
    out, given = ctx.outputs(loader), loader_inputs(ctx)
    n, size = given["n"], given["batch_size"]
    rows = np.arange(n)
    for name in ("first", "second_epoch"):
        if not np.array_equal(np.sort(out[name]), rows):
            raise CheckFailed("An epoch does not visit every row exactly once.", expected=f"a permutation of {n} rows",
                              found=f"{len(out[name])} rows, {len(np.unique(out[name]))} distinct",
                              hint="Don't drop or repeat rows (drop_last=False, no sampling with replacement).")
    if np.array_equal(out["first"], rows):
        raise CheckFailed("The rows are not shuffled.", hint="DataLoader(..., shuffle=True)")
    if np.array_equal(out["first"], out["second_epoch"]):
        raise CheckFailed("Every epoch visits the rows in the same order: shuffle once per epoch, not once.",
                          hint="Let the DataLoader shuffle (shuffle=True) rather than permuting the arrays once.")
    expected_sizes = [size] * (n // size) + ([n % size] if n % size else [])
    if list(out["batch_sizes"]) != expected_sizes:
        raise CheckFailed("The batches are not of batch_size rows.", expected=f"{expected_sizes[:3]}...",
                          found=f"{list(out['batch_sizes'])[:3]}...")
    return "every epoch is a fresh permutation of all rows, in batches of batch_size"


# -- train_epoch -------------------------------------------------------------------------------
LOOP_STEPS = ("train_mode", "zero_grad", "loss_on_logits", "clipping", "schedule")


# <kernel>
@probe(returned=VALUE, lr=VALUE, state=ARRAYS)
def train_epoch(ns, io):
    inputs = io.inputs
    net, batches, optimizer, scheduler = training_setup(inputs)
    returned = need(ns, "train_epoch")(net, batches, optimizer, scheduler, float(inputs["max_grad_norm"]))
    io.save(returned=float(returned), lr=float(optimizer.param_groups[0]["lr"]), state=_state(net))
# </kernel>


@registry.inputs("train_epoch")
def train_epoch_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("train_epoch")
    X, y = standardised_digits()
    rows = rng.choice(len(X), size=96, replace=False)
    net = models.bn_net(hidden=TRAINING_HIDDEN)
    return {"X": X[rows], "y": y[rows], "batch_size": 16, "lr": float(rng.uniform(1.0, 2.0)), "step_size": 2,
            # small enough to bind on every step, even for the small gradients of a softmax-before-loss loop
            "max_grad_norm": float(rng.uniform(0.02, 0.05)), **as_inputs("net", random_state(net, rng, scale=1.0))}


def replay_epoch(given: dict, skipped: frozenset = frozenset()):
    """One epoch of the reference loop on the probe's setup, leaving out the steps named in `skipped`.
    Returns (state dict as arrays, mean batch loss, final learning rate)."""
    net, batches, optimizer, scheduler = training_setup(given)
    if "train_mode" not in skipped:
        net.train()
    losses = []
    for xb, yb in batches:
        if "zero_grad" not in skipped:
            optimizer.zero_grad()
        out = net(xb)
        loss = torch.nn.functional.cross_entropy(out.softmax(1) if "loss_on_logits" in skipped else out, yb)
        loss.backward()
        if "clipping" not in skipped:
            torch.nn.utils.clip_grad_norm_(net.parameters(), float(given["max_grad_norm"]))
        optimizer.step()
        if "schedule" not in skipped:
            scheduler.step()
        losses.append(loss.item())
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return state, float(np.mean(losses)), float(optimizer.param_groups[0]["lr"])


def identify_loop(ctx: CheckContext):
    """Which reference steps the learner's loop leaves out: the smallest set whose replay gives the same
    weights, or None when no combination of the known mistakes does."""
    def load():
        out, given = ctx.outputs(train_epoch), train_epoch_inputs(ctx)
        found = out["state"]
        match = None
        for count in range(len(LOOP_STEPS) + 1):
            for skipped in itertools.combinations(LOOP_STEPS, count):
                state, loss, lr = replay_epoch(given, frozenset(skipped))
                if sorted(state) == sorted(found) and all(close(found[k], v) for k, v in state.items()):
                    match = (frozenset(skipped), loss, lr)
                    break
            if match:
                break
        return match
    return ctx.cached("loop", load)


LOOP_MISTAKES = {
    "train_mode": ("The model was not in train mode while training: batch norm used its running statistics "
                   "and never updated them (and dropout would be off).", "model.train() at the start of the epoch"),
    "zero_grad": ("Gradients accumulate across steps: zero_grad is missing, so every step adds the previous "
                  "batches' gradients to its own.", "optimizer.zero_grad() before each loss.backward()"),
    "loss_on_logits": ("Softmax is applied before the cross-entropy: F.cross_entropy / nn.CrossEntropyLoss takes "
                       "logits and applies log-softmax itself, so the gradients shrink and training crawls.",
                       "F.cross_entropy(model(xb), yb), on the raw logits"),
    "clipping": ("The gradients are not clipped to max_grad_norm (clipping must come after backward and before "
                 "step).", "torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)"),
    "schedule": ("The learning-rate schedule is not stepped once per batch.", "scheduler.step() after optimizer.step()"),
}


def _loop_check(step: str):
    def check(ctx: CheckContext):
        match = identify_loop(ctx)
        if match is None:
            raise CheckFailed("After one epoch the weights match no training loop the grader knows, with or without "
                              "the usual mistakes.",
                              expected="train mode, then per batch: zero_grad, forward, cross-entropy on logits, "
                                       "backward, clip_grad_norm_, step, scheduler.step()",
                              hint="Follow the steps in order; use the model, batches, optimizer and scheduler you "
                                   "are given (no new optimizer, no extra passes over the data).")
        skipped, _, _ = match
        if step in skipped:
            message, hint = LOOP_MISTAKES[step]
            raise CheckFailed(message, hint=hint)
        return {"train_mode": "trains in train mode", "zero_grad": "gradients are zeroed every step",
                "loss_on_logits": "cross-entropy on logits", "clipping": "gradients clipped to max_grad_norm",
                "schedule": "the schedule steps once per batch"}[step]
    check.__name__ = f"loop_{step}"
    return check


for _step in LOOP_STEPS:
    registry.check("train_epoch", _step)(_loop_check(_step))


@registry.check("train_epoch", "returns_mean_loss")
def returns_mean_loss(ctx: CheckContext):
    returned = float(ctx.outputs(train_epoch)["returned"])
    match = identify_loop(ctx)
    _, loss, _ = match if match else replay_epoch(train_epoch_inputs(ctx))
    if not close(returned, loss):
        raise CheckFailed("train_epoch must return the mean of the batch losses.", expected=f"{loss:.6f}",
                          found=f"{returned:.6f}", hint="Sum loss.item() over the batches and divide by their number.")
    return f"returns the epoch's mean loss ({returned:.4f})"


# -- predict -----------------------------------------------------------------------------------
# <kernel>
@probe(logits=ARRAY, requires_grad=VALUE)
def predict(ns, io):
    inputs = io.inputs
    net = models.bn_net(dropout=0.5)
    net.load_state_dict(_weights(inputs, "net"))
    net.train()  # as a training loop leaves it
    logits = need(ns, "predict")(net, inputs["X"])
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"predict must return a torch.Tensor, it returned {type(logits).__name__}")
    io.save(logits=logits.detach(), requires_grad=bool(logits.requires_grad))
# </kernel>


@registry.inputs("predict")
def predict_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("predict")
    net = models.bn_net(dropout=0.5)
    state = random_state(net, rng, scale=1.0)
    state["bn.running_mean"] = state["bn.running_mean"] * 4  # statistics far from any one batch's
    return {"X": rng.normal(size=(40, 64)).astype(np.float32), **as_inputs("net", state)}


def predict_reference(given: dict) -> np.ndarray:
    net = models.bn_net(dropout=0.5)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in given["net"].items()})
    with torch.no_grad():
        return net.eval()(torch.from_numpy(given["X"])).numpy()


@registry.check("predict", "eval_mode")
def predict_eval_mode(ctx: CheckContext):
    found, given = ctx.outputs(predict)["logits"], predict_inputs(ctx)
    expected = predict_reference(given)
    expect_close(found, expected, "predict's outputs",
                 mistake="The predictions are not the model's eval-mode outputs: the model was left in train mode, "
                         "so dropout drops units and batch norm uses the batch's own statistics.",
                 hint="Call model.eval() before predicting (and model.train() again before training).")
    return "eval-mode predictions (no dropout, running batch-norm statistics)"


@registry.check("predict", "no_grad")
def predict_no_grad(ctx: CheckContext):
    if ctx.outputs(predict)["requires_grad"]:
        raise CheckFailed("predict builds an autograd graph it never uses: its output requires grad.",
                          expected="requires_grad=False", found="requires_grad=True",
                          hint="Decorate it with @torch.no_grad() (or use torch.inference_mode()).")
    return "no autograd graph is built"


# -- fit ---------------------------------------------------------------------------------------
# <kernel>
@probe(history=VALUE)
def fit(ns, io):
    history = need(ns, "history")
    io.save(history={str(k): [float(v) for v in values] for k, values in dict(history).items()})
# </kernel>


@registry.check("fit", "curves")
def fit_curves(ctx: CheckContext):
    history = ctx.outputs(fit)["history"]
    missing = [k for k in ("train_loss", "val_accuracy", "lr") if k not in history]
    if missing:
        raise CheckFailed(f"history lacks {', '.join(missing)}.", found=str(sorted(history)),
                          hint="Append each epoch's train_epoch(...) result, validation accuracy and "
                               "scheduler.get_last_lr()[0].")
    lengths = {k: len(history[k]) for k in ("train_loss", "val_accuracy", "lr")}
    if len(set(lengths.values())) != 1 or lengths["train_loss"] < 3:
        raise CheckFailed("history needs one value per epoch in each list, for at least 3 epochs.", found=str(lengths))
    loss, lr = history["train_loss"], history["lr"]
    if not loss[-1] < loss[0]:
        raise CheckFailed("The training loss did not go down.", found=f"{loss[0]:.3f} -> {loss[-1]:.3f}")
    if len(set(np.round(lr, 12))) == 1:
        raise CheckFailed("The learning rate never changed: the schedule is not stepped.", found=f"lr {lr[0]:g} "
                          "every epoch", hint="scheduler.step() once per batch, inside train_epoch.")
    return f"{lengths['lr']} epochs, loss {loss[0]:.3f} -> {loss[-1]:.4f}, best val accuracy {max(history['val_accuracy']):.3f}"


# -- save --------------------------------------------------------------------------------------
PROGRAM_HINT = ("Export with a dynamic batch dimension: dynamic_shapes={'x': {0: Dim('batch')}}, and a model that "
                "takes raw pixels (0..16), shape (n, 64).")


def run_program(ctx: CheckContext, X: np.ndarray, device: str = "cpu") -> np.ndarray:
    """The learner's digits_custom.pt2 on rows X, in the checker (torch.export.load, after refusing pickle)."""
    path = ctx.artifact(PROGRAM_FILE, "save", hint=f"torch.export.save(program, '{PROGRAM_FILE}')")
    return program_outputs(ctx, path, np.ascontiguousarray(X, np.float32),
                           f"{PROGRAM_FILE} could not be loaded with torch.export.load, or fails on a batch of {len(X)} "
                           "raw-pixel rows", PROGRAM_HINT, device=device)


@registry.check("save", "program_loads")
def program_loads(ctx: CheckContext):
    X, _ = holdout_digits()
    for size in (1, 37):
        out = run_program(ctx, X[:size])
        if out.shape != (size, 10):
            raise CheckFailed(f"{PROGRAM_FILE} returns the wrong shape.", expected=f"({size}, 10)", found=str(out.shape))
    return f"{PROGRAM_FILE} loads without your class and takes any batch size"


@registry.check("save", "holdout_accuracy")
def custom_holdout_accuracy(ctx: CheckContext):
    return check_holdout_accuracy(lambda X: run_program(ctx, X), ACCURACY_BAR,
                                  hint="Train to the end of the schedule, and keep the scaling inside the model "
                                       "(mean and std buffers): the grader feeds raw pixels (0..16).")


@registry.check("save", "eval_mode")
def program_eval_mode(ctx: CheckContext):
    X, _ = holdout_digits()
    rows = X[ctx.rng("save").choice(len(X), size=32, replace=False)]
    batch, again, alone = run_program(ctx, rows), run_program(ctx, rows), run_program(ctx, rows[:1])
    if not close(batch, again) or not close(batch[:1], alone):
        raise CheckFailed(f"{PROGRAM_FILE} was exported in train mode: the same input gives different outputs "
                          "(dropout is active, or batch norm uses the batch's statistics).",
                          expected="deterministic outputs, each row independent of the rest of the batch",
                          found=f"max abs diff {max(max_diff(batch, again), max_diff(batch[:1], alone)):.3g} "
                                "between two runs",
                          hint="model.eval() before torch.export.export: export records the mode it sees.")
    return "exported in eval mode: deterministic, rows independent"


@registry.check("save", "state_dict_matches")
def state_dict_matches(ctx: CheckContext):
    path = ctx.artifact(STATE_FILE, "save", hint=f"torch.save(model.state_dict(), '{STATE_FILE}')")
    saved = saved_tensors(ctx, path, f"{STATE_FILE} could not be loaded with torch.load(weights_only=True)",
                          f"torch.save(model.state_dict(), '{STATE_FILE}'): save the state dict, not the model.")
    if saved.pop("type", None) != "dict":
        raise CheckFailed(f"{STATE_FILE} does not hold a state dict.", hint=f"torch.save(model.state_dict(), '{STATE_FILE}')")
    saved.pop("other_keys", None)
    program_path = ctx.artifact(PROGRAM_FILE, "save", hint=f"torch.export.save(program, '{PROGRAM_FILE}')")
    program_state = ctx.run("pt2_state", f"{PROGRAM_FILE} could not be loaded with torch.export.load", path=program_path)
    if sorted(saved) != sorted(program_state):
        raise CheckFailed(f"{STATE_FILE}'s keys are not those of the exported model.",
                          expected=", ".join(sorted(program_state)[:8]), found=", ".join(sorted(saved)[:8]))
    differ = [k for k, v in program_state.items()
              if np.shape(saved[k]) != np.shape(v) or saved[k].dtype != v.dtype or not np.array_equal(saved[k], v)]
    if differ:
        raise CheckFailed(f"{STATE_FILE} holds other weights than {PROGRAM_FILE}: {', '.join(differ[:5])} differ.",
                          hint="Save both from the same trained model, after training.")
    return f"{STATE_FILE} holds the exported model's {len(saved)} tensors"


def device_parity(ctx: CheckContext, device: str) -> str:
    """The exported program, moved to `device` (move_to_device_pass), against its CPU outputs on the held-out digits."""
    X, _ = holdout_digits()
    on_cpu = run_program(ctx, X)
    moved = run_program(ctx, X, device=device)
    # 1e-4: GPU kernels may sum in another order (and use TF32 where it is enabled)
    diff = expect_close(moved, on_cpu, f"{PROGRAM_FILE} on {device}", 1e-4,
                        mistake=f"{PROGRAM_FILE} gives other outputs on {device}.")
    return f"the same outputs on {device} (max abs diff {diff:.1e})"


@registry.check("save", "gpu_parity")
def program_gpu_parity(ctx: CheckContext):
    return device_parity(ctx, "cuda")


# -- hooks -------------------------------------------------------------------------------------
HOOK_WIDTHS = [64, 40, 40, 40, 10]


# <kernel>
@probe(stats=VALUE, hooks_left=VALUE, dead_public=VALUE, dead_hidden=VALUE)
def hooks(ns, io):
    inputs = io.inputs
    widths = [int(w) for w in inputs["widths"]]
    x = _tensor(inputs["x"])
    for tag in ("public", "hidden"):
        net = models.relu_mlp(widths)
        net.load_state_dict(_weights(inputs, tag))
        if tag == "public":
            stats = need(ns, "activation_stats")(net, x)
            io.save(stats={str(name): {k: float(v) for k, v in dict(s).items()} for name, s in dict(stats).items()},
                    hooks_left=sum(len(m._forward_hooks) for m in net.modules()))
        io.save(**{f"dead_{tag}": need(ns, "find_dead_layer")(net, x)})
# </kernel>


@registry.inputs("hooks")
def hooks_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("hooks")
    values = {"widths": np.array(HOOK_WIDTHS), "x": rng.normal(size=(128, 64)).astype(np.float32)}
    for tag in ("public", "hidden"):
        net = models.relu_mlp(HOOK_WIDTHS)
        state = random_state(net, rng, scale=1.4)
        dead = int(rng.integers(1, len(HOOK_WIDTHS) - 1))
        state[f"fc{dead}.bias"] = state[f"fc{dead}.bias"] - 100.0  # the planted bug
        values.update(as_inputs(tag, state))
    return values


def hooks_reference(given: dict, tag: str) -> dict[str, dict[str, float]]:
    """Each leaf module's output statistics, recorded here with the grader's own hooks."""
    net = models.relu_mlp(HOOK_WIDTHS)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in given[tag].items()})
    stats: dict[str, dict[str, float]] = {}
    for name, module in net.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: stats.__setitem__(name, {
            "mean": o.mean().item(), "std": o.std().item(), "zero_fraction": (o == 0).float().mean().item()}))
    with torch.no_grad():
        net(torch.from_numpy(given["x"]))
    return stats


def first_dead(stats: dict) -> str:
    return next(name for name, s in stats.items() if s["zero_fraction"] == 1.0)


@registry.check("hooks", "stats_match")
def hooks_stats_match(ctx: CheckContext):
    found, expected = ctx.outputs(hooks)["stats"], hooks_reference(hooks_inputs(ctx), "public")
    missing = [name for name in expected if name not in found]
    if missing:
        raise CheckFailed(f"activation_stats has no entry for: {', '.join(missing)}.",
                          expected=f"one entry per leaf module: {', '.join(expected)}", found=", ".join(found) or "none",
                          hint="register_forward_hook on every module without children (named_modules()).")
    for name, reference in expected.items():
        for key, value in reference.items():
            got = found[name].get(key)
            if got is None or not abs(got - value) <= 1e-3 * max(1.0, abs(value)):
                raise CheckFailed(f"activation_stats['{name}']['{key}'] is wrong.", expected=f"{value:.5g}",
                                  found="missing" if got is None else f"{got:.5g}",
                                  hint="Record the hooked module's output: its mean(), std() and "
                                       "(output == 0).float().mean().")
    return f"statistics of all {len(expected)} layers match"


@registry.check("hooks", "hooks_removed")
def hooks_removed(ctx: CheckContext):
    left = ctx.outputs(hooks)["hooks_left"]
    if left:
        raise CheckFailed(f"activation_stats leaves {left} hook(s) registered: every later forward pass still runs "
                          "them (slower, and they keep activations alive).", expected="0 hooks after the call",
                          found=f"{left} hooks", hint="Keep the handles register_forward_hook returns and call "
                                                      ".remove() on each, in a finally block.")
    return "all hooks removed after use"


def _dead_layer_check(tag: str):
    def check(ctx: CheckContext):
        expected = first_dead(hooks_reference(hooks_inputs(ctx), tag))
        found = ctx.outputs(hooks)[f"dead_{tag}"]
        if found != expected:
            raise CheckFailed("find_dead_layer names the wrong layer." if found else "find_dead_layer found no dead layer.",
                              expected=f"'{expected}' (the first module whose output is all zeros)", found=repr(found),
                              hint="Use the zero_fraction of activation_stats: a dead ReLU outputs 0 for every input.")
        return f"found the dead layer '{found}'"
    check.__name__ = f"dead_layer_{tag}"
    return check


registry.check("hooks", "dead_layer_found")(_dead_layer_check("public"))
registry.check("hooks", "dead_layer_hidden")(_dead_layer_check("hidden"))


# -- branch ------------------------------------------------------------------------------------
# <kernel>
@probe(eager=ARRAY, exported=ARRAY, export_error=VALUE)
def branch(ns, io):
    inputs = io.inputs
    module = _module(need(ns, "Abstain")(float(inputs["threshold"])), "Abstain(threshold)")
    with torch.no_grad():
        io.save(eager=module(_tensor(inputs["logits"])))
    try:
        batch = torch.export.Dim("batch")
        program = torch.export.export(module, (_tensor(inputs["logits"][:3]),), dynamic_shapes=({0: batch},))
        with torch.no_grad():
            io.save(exported=program.module()(_tensor(inputs["other_logits"])))
    except Exception as exc:  # noqa: BLE001 - a failed export is the finding, not a probe error
        io.save(export_error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")
# </kernel>


@registry.inputs("branch")
def branch_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("branch")

    def logits(n):  # a mix of confident rows (large logits) and unsure ones (small)
        return (rng.normal(size=(n, 10)) * rng.choice([0.5, 6.0], size=(n, 1))).astype(np.float32)
    return {"logits": logits(48), "other_logits": logits(int(rng.integers(5, 30))),
            "threshold": float(rng.uniform(0.6, 0.9))}


def abstain_reference(logits, threshold) -> np.ndarray:
    p = softmax(logits)
    return np.where(p.max(1) >= threshold, p.argmax(1), -1)


@registry.check("branch", "matches_eager")
def branch_matches_eager(ctx: CheckContext):
    out, given = ctx.outputs(branch), branch_inputs(ctx)
    expected, found = abstain_reference(given["logits"], given["threshold"]), np.asarray(out["eager"])
    if found.shape != expected.shape or not np.array_equal(found, expected):
        wrong = int((found != expected).sum()) if found.shape == expected.shape else len(expected)
        raise CheckFailed("Abstain's answers differ from the reference.",
                          expected=f"the class where max softmax probability >= {given['threshold']:.2f}, else -1",
                          found=f"{wrong} of {len(expected)} rows differ" if found.shape == expected.shape
                          else describe_array(found),
                          hint="p = logits.softmax(1); confidence, label = p.max(1); "
                               "torch.where(confidence >= threshold, label, -1)")
    return f"abstains on {(expected == -1).sum()} of {len(expected)} unsure rows, answers the rest"


@registry.check("branch", "exports")
def branch_exports(ctx: CheckContext):
    out, given = ctx.outputs(branch), branch_inputs(ctx)
    if "export_error" in out:
        data_dependent = any(w in out["export_error"] for w in ("data-dependent", "DataDependent", "GuardOn"))
        raise CheckFailed("torch.export could not export Abstain" + (
            ": a Python `if` on a tensor's value is a data-dependent branch that an exporter cannot trace."
            if data_dependent else "."), found=out["export_error"],
            hint="Compute both answers and select per row with torch.where; no .item(), no `if tensor:`.")
    expected = abstain_reference(given["other_logits"], given["threshold"])
    if not np.array_equal(np.asarray(out["exported"]), expected):
        raise CheckFailed("The exported Abstain gives other answers on a batch of another size: the export baked in "
                          "the example's shapes or branch.", expected="the same answers as the reference",
                          hint="Use no Python loop over rows and no branch on values; torch.where works on the batch.")
    return "exports with a dynamic batch and gives the same answers"
