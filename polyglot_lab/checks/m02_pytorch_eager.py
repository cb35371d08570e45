"""The checks of module 02_pytorch_eager that a learner runs in the notebook (`grader.check(...)`), on the
core in polyglot_lab.checking. Written by `make notebooks` from the `# <notebook>` blocks of
graders/checks/m02_pytorch_eager.py: edit those, not this file. The checks that run only at submission are not here."""
from __future__ import annotations

from polyglot_lab import models
import numpy as np
import torch
from polyglot_lab.probes.m02_pytorch_eager import (  # the probes, in the kernel side of the module
    TRAINING_HIDDEN,
    block,
    branch,
    fit,
    hooks,
    layer_norm,
    loader,
    model,
    port,
    predict,
    silu,
    train_epoch,
    training_setup,
)

import itertools

from polyglot_lab.checking import CheckContext, CheckFailed, Outputs, Registry, describe_array


from polyglot_lab.checking.compare import (
    PARITY_ATOL,
    close,
    expect_close,
    looks_like_probabilities,
    max_diff,
    softmax,
)
from polyglot_lab.checking.runtimes import program_outputs, program_training_ops, saved_tensors


from polyglot_lab.data import digits

registry = Registry("02_pytorch_eager")
GRAD_ATOL = 1e-8          # float64 inputs


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


@registry.check("model", "standardises_with_buffers")
def model_standardises_with_buffers(ctx: CheckContext):
    buffers, given = ctx.outputs(model)["buffers"], model_inputs(ctx)
    missing = [what for what in ("mean", "std")
               if not any(np.shape(b) == np.shape(given[what]) and close(b, given[what]) for b in buffers.values())]
    if missing:
        raise CheckFailed(f"DigitsNet holds no buffer with the {' and the '.join(missing)} it was given: the "
                          "statistics that standardise the raw pixels must travel with the state dict and the "
                          "exported program, untouched by the optimizer.",
                          expected="buffers holding mean and std (64 values each)",
                          found=", ".join(f"{k} {np.shape(v)}" for k, v in buffers.items()) or "no buffers",
                          hint="self.register_buffer('mean', torch.as_tensor(mean)) (not nn.Parameter, not a plain "
                               "attribute).")
    return "mean and std are buffers"


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
        if np.array_equal(out["first"], np.sort(out["first"])):  # the shuffle check names this mistake too
            raise CheckFailed("Loaders made with different seeds give the same order: the rows are not shuffled, so "
                              "the seed is ignored.", hint="DataLoader(..., shuffle=True, "
                              "generator=torch.Generator().manual_seed(seed))")
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


@registry.inputs("train_epoch")
def train_epoch_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("train_epoch")
    X, y = standardised_digits()
    rows = rng.choice(len(X), size=96, replace=False)
    net = models.bn_net(hidden=TRAINING_HIDDEN)
    return {"X": X[rows], "y": y[rows], "batch_size": 16, "lr": float(rng.uniform(1.0, 2.0)), "step_size": 2,
            # small enough to bind on every step, even for the small gradients of a softmax-before-loss loop
            "max_grad_norm": float(rng.uniform(0.02, 0.05)), **as_inputs("net", random_state(net, rng, scale=1.0))}


def loop_record(ctx: CheckContext) -> list[dict]:
    """What the probe saw the learner's loop do, in order: each event a dict ("event": forward, backward or step)
    with its arrays attached by name (weights before a forward; fresh and accumulated gradients after a backward;
    the gradients a step used), and, for a backward or a step, the forward or backward it follows."""
    def load():
        out = ctx.outputs(train_epoch)
        events = [dict(e, index=i) for i, e in enumerate(out["events"])]
        for name in ("weights", "fresh", "accumulated", "stepped"):
            for key, value in out[name].items():
                index, _, param = key.partition(".")
                events[int(index)].setdefault(name, {})[param] = value
        last: dict[str, dict | None] = {"forward": None, "backward": None}
        for event in events:
            if event["event"] == "backward":
                event["after"] = last["forward"]
            elif event["event"] == "step":
                event["after"] = last["backward"]
            if event["event"] != "forward" or event["grad"]:  # a no_grad forward is no part of a training step
                last[event["event"]] = event
        return events
    return ctx.cached("loop_record", load)


def _of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["event"] == kind]


def _flat(grads: dict, names, like: dict | None = None) -> np.ndarray:
    """The gradients of `names` as one vector; a name `grads` lacks counts as zeros shaped like `like`'s."""
    parts = [np.asarray(grads[n] if n in grads else np.zeros_like((like or {})[n]), np.float64).ravel() for n in names]
    return np.concatenate(parts) if parts else np.zeros(0)


def replay_gradient(ctx: CheckContext, forward: dict, loss: str = "logits") -> dict[str, np.ndarray]:
    """The gradient one batch gives in the grader, from the weights and mode the learner's forward pass had: with
    cross-entropy on the logits (the reference), or on softmax outputs."""
    def load():
        given = train_epoch_inputs(ctx)
        net, batches, _, _ = training_setup(given)
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in forward["weights"].items()})
        net.train(forward["training"])
        xb, yb = batches[forward["batch"]]
        logits = net(xb)
        torch.nn.functional.cross_entropy(logits.softmax(1) if loss == "softmax" else logits, yb).backward()
        return {name: p.grad.numpy().astype(np.float64) for name, p in net.named_parameters()}
    return ctx.cached(f"loop_gradient:{forward['index']}:{loss}", load)


LOOP_EXPECTED = ("model.train(), then per batch: optimizer.zero_grad(), forward, F.cross_entropy on the logits, "
                 "loss.backward(), clip_grad_norm_, optimizer.step(), scheduler.step()")


@registry.check("train_epoch", "train_mode")
def loop_train_mode(ctx: CheckContext):
    events = loop_record(ctx)
    trained = [b["after"] for b in _of(events, "backward") if b["after"]] or [f for f in _of(events, "forward") if f["grad"]]
    if not trained:
        raise CheckFailed("train_epoch never ran the model with gradients enabled, so its mode cannot be seen.",
                          expected=LOOP_EXPECTED, found="no forward pass outside torch.no_grad()")
    in_eval = [f for f in trained if not f["training"]]
    if in_eval:
        raise CheckFailed(f"The model was in eval mode in {len(in_eval)} of the {len(trained)} forward passes it was "
                          "trained on: batch norm used its running statistics and never updated them (and dropout "
                          "would be off).", expected="model.training is True in every training forward pass",
                          found=f"model.training was False in {len(in_eval)}",
                          hint="model.train() at the start of the epoch: the model arrives in eval mode, as "
                               "predict() leaves it.")
    return "trains in train mode"


@registry.check("train_epoch", "zero_grad")
def loop_zero_grad(ctx: CheckContext):
    events = loop_record(ctx)
    if not _of(events, "backward"):
        raise CheckFailed("No backward pass ran, so there were no gradients to zero.", expected=LOOP_EXPECTED,
                          hint="optimizer.zero_grad(), then the loss's .backward(), for each batch.")
    for number, event in enumerate(_of(events, "backward"), 1):
        fresh = event.get("fresh", {})
        names = sorted(fresh)
        held, own = _flat(event.get("accumulated", {}), names, like=fresh), _flat(fresh, names)
        if not close(held, own):
            raise CheckFailed(f"Gradients accumulate across steps: after the backward pass of batch {number}, .grad "
                              "held more than this batch's gradient (the earlier batches' too), so each step follows "
                              "a sum of old gradients.", expected=".grad equal to this batch's gradient after "
                              "loss.backward()", found=f".grad differed from it by {max_diff(held, own):.3g}",
                              hint="optimizer.zero_grad() before each loss.backward()")
    for number, step in enumerate(_of(events, "step"), 1):
        backward = step["after"]
        if backward is None or not backward.get("accumulated"):
            continue
        stepped = step.get("stepped", {})
        if not stepped or all(not np.any(v) for v in stepped.values()):
            raise CheckFailed(f"The gradients were cleared between backward and step {number}: the optimizer "
                              "stepped with no gradient, so the weights did not learn from the batch.",
                              expected="the batch's gradients at optimizer.step()",
                              found="no gradients" if not stepped else "all-zero gradients",
                              hint="optimizer.zero_grad() before loss.backward() (or after optimizer.step()), never "
                                   "between them.")
    return "gradients are zeroed every step"


@registry.check("train_epoch", "loss_on_logits")
def loop_loss_on_logits(ctx: CheckContext):
    events = loop_record(ctx)
    replayable = [b for b in _of(events, "backward") if b["after"] and b["after"]["batch"] >= 0 and b.get("fresh")]
    if not replayable:
        raise CheckFailed("No backward pass followed a forward pass on one of the given batches, so the loss "
                          "cannot be checked.", expected=LOOP_EXPECTED,
                          found=f"{len(_of(events, 'backward'))} backward passes, "
                                f"{len(_of(events, 'forward'))} forward passes",
                          hint="loss = F.cross_entropy(model(xb), yb); loss.backward() for each (xb, yb) of loader.")
    for backward in replayable:
        forward, fresh = backward["after"], backward["fresh"]
        expected = replay_gradient(ctx, forward)
        names = sorted(expected)
        if sorted(fresh) != names:
            raise CheckFailed("The loss's gradient does not reach every parameter.", expected=", ".join(names),
                              found=", ".join(sorted(fresh)) or "none",
                              hint="Compute the loss from the model's output, with no .detach() or .item() on the way.")
        found, reference = _flat(fresh, names), _flat(expected, names)
        if close(found, reference):
            continue
        batch = forward["batch"] + 1
        if close(found, _flat(replay_gradient(ctx, forward, "softmax"), names)):
            raise CheckFailed("Softmax is applied before the cross-entropy: F.cross_entropy / nn.CrossEntropyLoss "
                              "takes logits and applies log-softmax itself, so the gradients shrink and training "
                              "crawls.", expected="the gradient of F.cross_entropy(logits, y)",
                              found=f"the gradient of F.cross_entropy(softmax(logits), y) on batch {batch}",
                              hint="F.cross_entropy(model(xb), yb), on the raw logits")
        scale = float(found @ reference / (reference @ reference)) if reference.any() else 0.0
        likely = (f" It is {scale:.3g} times that gradient: the loss is summed or scaled, not the batch mean."
                  if close(found, scale * reference) and scale > 0 else "")
        raise CheckFailed(f"The gradient of batch {batch}'s loss is not that of the mean cross-entropy of the "
                          f"model's logits.{likely}", expected="the gradient of F.cross_entropy(logits, y)",
                          found=f"max abs diff {max_diff(found, reference):.3g}",
                          hint="F.cross_entropy(model(xb), yb): the mean over the batch, on raw logits, with the "
                               "batch's own labels.")
    return "cross-entropy on logits"


@registry.check("train_epoch", "clipping")
def loop_clipping(ctx: CheckContext):
    limit = float(train_epoch_inputs(ctx)["max_grad_norm"])
    after_backward = [s for s in _of(loop_record(ctx), "step") if s["after"] and s["after"].get("accumulated")]
    steps = [s for s in after_backward if any(np.any(v) for v in s.get("stepped", {}).values())]
    if not steps:
        raise CheckFailed("Clipping cannot be checked: " + (
            "the gradients were cleared between backward and step, so every step ran without them."
            if after_backward else "no optimizer step followed a backward pass."), expected=LOOP_EXPECTED,
            hint="loss.backward(), then clip_grad_norm_, then optimizer.step().")
    for number, step in enumerate(steps, 1):
        raw, names = step["after"]["accumulated"], sorted(step["after"]["accumulated"])
        before = _flat(raw, names)
        found = _flat(step["stepped"], names, like=raw)
        norm = float(np.linalg.norm(before))
        expected = before * min(1.0, limit / (norm + 1e-6))
        if close(found, expected, rtol=1e-4):
            continue
        if close(found, before, rtol=1e-4):
            message = (f"The gradients are not clipped: step {number} used a gradient of norm {norm:.3g}, above "
                       f"max_grad_norm {limit:.3g} (clipping must come after backward and before step).")
        elif found.shape == before.shape and norm > 0 and close(found / max(np.linalg.norm(found), 1e-30),
                                                               before / norm, rtol=1e-4):
            message = (f"The gradients are clipped to norm {np.linalg.norm(found):.3g}, not to max_grad_norm "
                       f"{limit:.3g}.")
        else:
            message = (f"The gradients optimizer.step() used at step {number} are not those of backward, clipped to "
                       "max_grad_norm.")
        raise CheckFailed(message, expected=f"gradient norm min({norm:.3g}, {limit:.3g}) at step {number}",
                          found=f"norm {np.linalg.norm(found):.3g}",
                          hint="torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm) between "
                               "loss.backward() and optimizer.step()")
    return "gradients clipped to max_grad_norm"


@registry.check("train_epoch", "schedule")
def loop_schedule(ctx: CheckContext):
    out, given = ctx.outputs(train_epoch), train_epoch_inputs(ctx)
    lr0, every, batches = float(given["lr"]), int(given["step_size"]), len(given["X"]) // int(given["batch_size"])
    stepped = int(out["scheduler_steps"])
    if stepped != batches:
        raise CheckFailed("The learning-rate schedule is not stepped once per batch" + (
            ": scheduler.step() is never called." if stepped == 0 else f": it stepped {stepped} times in an epoch of "
            f"{batches} batches."), expected=f"{batches} calls of scheduler.step()", found=f"{stepped}",
            hint="scheduler.step() after optimizer.step(), inside the loop over batches.")
    # the step after batch b (0-based) should see the schedule stepped b times: lr0 * 0.5 ** (b // step_size)
    trained = [(s["lr"], s["after"]["after"]["batch"]) for s in _of(loop_record(ctx), "step")
               if s["after"] and s["after"]["after"] and s["after"]["after"]["batch"] >= 0]
    lrs = [lr for lr, _ in trained]
    follows = [lr0 * 0.5 ** (b // every) for _, b in trained]
    if not np.allclose(lrs, follows, rtol=1e-6):
        ahead = [lr0 * 0.5 ** ((b + 1) // every) for _, b in trained]
        raise CheckFailed("scheduler.step() runs before optimizer.step(), so every step uses the next step's learning "
                          "rate." if np.allclose(lrs, ahead, rtol=1e-6) else
                          "The learning rates the optimizer stepped with do not follow the schedule.",
                          expected=", ".join(f"{v:.3g}" for v in follows[:6]),
                          found=", ".join(f"{v:.3g}" for v in lrs[:6]), hint="scheduler.step() after optimizer.step()")
    return "the schedule steps once per batch"


@registry.check("train_epoch", "steps")
def loop_steps(ctx: CheckContext):
    events, given = loop_record(ctx), train_epoch_inputs(ctx)
    batches = len(given["X"]) // int(given["batch_size"])
    steps, backwards = _of(events, "step"), _of(events, "backward")
    others = sorted({s["optimizer"] for s in steps if not s["given"]})
    if others:
        raise CheckFailed(f"train_epoch steps an optimizer of its own ({', '.join(others)}), not the one it is given: "
                          "the caller's learning rate, momentum and schedule are bypassed.",
                          expected="optimizer.step() on the optimizer passed in", found=", ".join(others),
                          hint="Use the optimizer argument; don't build a new one inside train_epoch.")
    trained = sorted(b["after"]["batch"] for b in backwards if b["after"])
    if trained != list(range(batches)) or len(backwards) != batches or len(steps) != batches:
        raise CheckFailed("Each batch should be trained on once (one forward, backward and optimizer step): the "
                          f"epoch had {len(backwards)} backward passes and {len(steps)} steps for {batches} batches.",
                          expected=f"{batches} batches, {batches} backward passes, {batches} steps",
                          found=f"batches {[b + 1 if b >= 0 else '?' for b in trained][:12]} trained on, "
                                f"{len(backwards)} backward passes, {len(steps)} steps",
                          hint="for xb, yb in loader: ... loss.backward(); ...; optimizer.step() — once each.")
    return f"one forward, backward and step of the given optimizer for each of the {batches} batches"


@registry.check("train_epoch", "returns_mean_loss")
def returns_mean_loss(ctx: CheckContext):
    returned = float(ctx.outputs(train_epoch)["returned"])
    losses = [b["loss"] for b in _of(loop_record(ctx), "backward") if b["loss"] is not None]
    if not losses:
        raise CheckFailed("No loss was backpropagated, so the epoch's losses are unknown.",
                          hint="loss.backward() on each batch's loss, and return the mean of loss.item().")
    mean = float(np.mean(losses))
    if not close(returned, mean):
        cause = (" It is their sum." if close(returned, float(np.sum(losses))) else
                 " It is the last batch's loss." if close(returned, losses[-1]) else "")
        raise CheckFailed(f"train_epoch must return the mean of the batch losses.{cause}", expected=f"{mean:.6f}",
                          found=f"{returned:.6f}", hint="Sum loss.item() over the batches and divide by their number.")
    return f"returns the epoch's mean loss ({returned:.4f})"


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
    loss, lr, accuracy = history["train_loss"], history["lr"], history["val_accuracy"]
    if not loss[-1] < loss[0]:
        raise CheckFailed("The training loss did not go down.", found=f"{loss[0]:.3f} -> {loss[-1]:.3f}")
    if not all(0.0 <= a <= 1.0 for a in accuracy):
        raise CheckFailed("val_accuracy must be a fraction of the validation rows (0..1).",
                          found=f"{min(accuracy):g} .. {max(accuracy):g}", hint="(predicted == y_val).mean(), not a percentage.")
    if len(set(np.round(lr, 12))) == 1:
        raise CheckFailed("The learning rate never changed: the schedule is not stepped.", found=f"lr {lr[0]:g} "
                          "every epoch", hint="scheduler.step() once per batch, inside train_epoch.")
    if not lr[-1] <= max(lr) / 10:  # OneCycleLR ends 10^4 below its start, far below its peak
        raise CheckFailed("The learning rate did not anneal: OneCycleLR ends far below its peak once it has run over "
                          "all the steps.", expected=f"a last value under {max(lr) / 10:.3g}",
                          found=", ".join(f"{v:.3g}" for v in lr[-4:]),
                          hint="OneCycleLR(optimizer, max_lr, total_steps=epochs * len(loader)), stepped once per "
                               "batch (a schedule stepped once per epoch hardly moves).")
    return f"{lengths['lr']} epochs, loss {loss[0]:.3f} -> {loss[-1]:.4f}, best val accuracy {max(history['val_accuracy']):.3f}"


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
    X, _ = ctx.sample_digits()
    for size in (1, 37):
        out = run_program(ctx, X[:size])
        if out.shape != (size, 10):
            raise CheckFailed(f"{PROGRAM_FILE} returns the wrong shape.", expected=f"({size}, 10)", found=str(out.shape))
    return f"{PROGRAM_FILE} loads without your class and takes any batch size"


def train_mode_ops(ctx: CheckContext) -> list[str] | None:
    """The program's dropout and batch-norm ops that train (as its graph records them, read in the checker), or None
    when the graph could not be read."""
    try:
        return program_training_ops(ctx, ctx.artifact(PROGRAM_FILE, "save"), f"{PROGRAM_FILE}'s graph could not be read")
    except CheckFailed:
        return None


@registry.check("save", "eval_mode")
def program_eval_mode(ctx: CheckContext):
    X, _ = ctx.sample_digits()
    rows = X[ctx.rng("save").choice(len(X), size=32, replace=False)]
    batch, again, alone = run_program(ctx, rows), run_program(ctx, rows), run_program(ctx, rows[:1])
    if close(batch, again) and close(batch[:1], alone):
        return "exported in eval mode: deterministic, rows independent"
    observed = [f"the same rows gave different outputs on two runs (max abs diff {max_diff(batch, again):.3g})"
                if not close(batch, again) else "",
                f"a row's output changed with the rest of its batch (alone vs in a batch of 32: max abs diff "
                f"{max_diff(batch[:1], alone):.3g})" if not close(batch[:1], alone) else ""]
    training = train_mode_ops(ctx)
    if training:
        cause = (f"{PROGRAM_FILE} was exported in train mode: its graph holds {', '.join(training)} in training "
                 "mode (dropout active, or batch norm using the batch's statistics).")
        hint = ("model.eval() before torch.export.export: export records the mode it sees (and forward must not "
                "force training=True).")
    else:
        cause = (f"{PROGRAM_FILE}'s outputs are not those of a fixed function of each row" + (
            "; its graph holds no dropout or batch norm in training mode, so something else in forward is random "
            "or mixes the rows of a batch (torch.rand, statistics over the batch dimension)." if training == [] else "."))
        hint = ("Export in eval mode, with a forward that treats each row on its own: statistics from buffers, no "
                "random ops at inference.")
    raise CheckFailed(f"{cause} Observed: {'; '.join(o for o in observed if o)}.",
                      expected="deterministic outputs, each row independent of the rest of the batch",
                      found="; ".join(o for o in observed if o), hint=hint)


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
    X, _ = ctx.sample_digits()
    on_cpu = run_program(ctx, X)
    moved = run_program(ctx, X, device=device)
    # 1e-4: GPU kernels may sum in another order (and use TF32 where it is enabled)
    diff = expect_close(moved, on_cpu, f"{PROGRAM_FILE} on {device}", 1e-4,
                        mistake=f"{PROGRAM_FILE} gives other outputs on {device}.")
    return f"the same outputs on {device} (max abs diff {diff:.1e})"


@registry.check("save", "gpu_parity")
def program_gpu_parity(ctx: CheckContext):
    return device_parity(ctx, "cuda")


HOOK_WIDTHS = [64, *[24] * 8, 10]  # eight hidden layers, any of which may be the dead one
DEAD_LAYER_NETS = 3  # per check: a hard-coded answer is right for all three with chance (1/8)^3 < 1%


@registry.inputs("hooks")
def hooks_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("hooks")
    values = {"widths": np.array(HOOK_WIDTHS), "nets": DEAD_LAYER_NETS,
              "x": rng.normal(size=(128, 64)).astype(np.float32)}
    for tag in ("public", "hidden"):
        for number in range(DEAD_LAYER_NETS):
            net = models.relu_mlp(HOOK_WIDTHS)
            state = random_state(net, rng, scale=1.4)
            dead = int(rng.integers(1, len(HOOK_WIDTHS) - 1))
            state[f"fc{dead}.bias"] = state[f"fc{dead}.bias"] - 100.0  # the planted bug
            values.update(as_inputs(f"{tag}{number}", state))
    return values


def hooks_reference(given: dict, net_name: str) -> dict[str, dict[str, float]]:
    """Each leaf module's output statistics, recorded here with the grader's own hooks."""
    net = models.relu_mlp(HOOK_WIDTHS)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in given[net_name].items()})
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
    found, expected = ctx.outputs(hooks)["stats"], hooks_reference(hooks_inputs(ctx), "public0")
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
        given, answers = hooks_inputs(ctx), list(ctx.outputs(hooks)[f"dead_{tag}"])
        expected = [first_dead(hooks_reference(given, f"{tag}{number}")) for number in range(DEAD_LAYER_NETS)]
        for number, (found, right) in enumerate(itertools.zip_longest(answers, expected), 1):
            if found != right:
                raise CheckFailed(("find_dead_layer names the wrong layer" if found else "find_dead_layer found no "
                                   "dead layer") + f" in network {number} of {DEAD_LAYER_NETS}.",
                                  expected=f"'{right}' (the first module whose output is all zeros)", found=repr(found),
                                  hint="Use the zero_fraction of activation_stats: a dead ReLU outputs 0 for every "
                                       "input.")
        return f"found the dead layer in all {DEAD_LAYER_NETS} networks ({', '.join(expected)})"
    check.__name__ = f"dead_layer_{tag}"
    return check


registry.check("hooks", "dead_layer_found")(_dead_layer_check("public"))


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
    for logits, name in ((given["logits"], "eager"), (given["other_logits"], "eager_other")):
        expected, found = abstain_reference(logits, given["threshold"]), np.asarray(out[name])
        if found.shape != expected.shape or not np.array_equal(found, expected):
            wrong = int((found != expected).sum()) if found.shape == expected.shape else len(expected)
            raise CheckFailed("Abstain's answers differ from the reference.",
                              expected=f"the class where max softmax probability >= {given['threshold']:.2f}, else -1",
                              found=f"{wrong} of {len(expected)} rows differ" if found.shape == expected.shape
                              else describe_array(found),
                              hint="p = logits.softmax(1); confidence, label = p.max(1); "
                                   "torch.where(confidence >= threshold, label, -1)")
    expected = abstain_reference(given["logits"], given["threshold"])
    return f"abstains on {(expected == -1).sum()} of {len(expected)} unsure rows, answers the rest"


@registry.check("branch", "exports")
def branch_exports(ctx: CheckContext):
    out = ctx.outputs(branch)
    if "export_error" in out:
        data_dependent = any(w in out["export_error"] for w in ("data-dependent", "DataDependent", "GuardOn"))
        raise CheckFailed("torch.export could not export Abstain" + (
            ": a Python `if` on a tensor's value is a data-dependent branch that an exporter cannot trace."
            if data_dependent else "."), found=out["export_error"],
            hint="Compute both answers and select per row with torch.where; no .item(), no `if tensor:`.")
    # Against the learner's own module on the same rows: wrong answers are the eager check's to cost.
    expected = np.asarray(out["eager_other"])
    if not np.array_equal(np.asarray(out["exported"]), expected):
        raise CheckFailed("The exported Abstain gives other answers on a batch of another size: the export baked in "
                          "the example's shapes or branch.", expected="the same answers as Abstain run eagerly",
                          hint="Use no Python loop over rows and no branch on values; torch.where works on the batch.")
    return "exports with a dynamic batch and gives the same answers"
