"""The checks of module 06_performance that a learner runs in the notebook (`grader.check(...)`), on the
core in polyglot_lab.checking. Written by `make notebooks` from the `# <notebook>` blocks of
graders/checks/m06_performance.py: edit those, not this file. The checks that run only at submission are not here."""
from __future__ import annotations

import numpy as np
from polyglot_lab.probes.m06_performance import (  # the probes, in the kernel side of the module
    bf16,
    bf16_speedup,
    compile_speedup,
    memory,
    profile,
    torch_compile,
)

from polyglot_lab.checking import CheckContext, CheckFailed, Registry
from polyglot_lab.checking.compare import close, expect_close, expect_ratio
from polyglot_lab.checking.runtimes import onnxruntime_outputs, saved_tensors
from polyglot_lab.data import digits

registry = Registry("06_performance")
STATE_FILE, ONNX_FILE = registry.artifacts("budget")
HINTS = {
    STATE_FILE: "Keep the notebook's training cell as it is: it saves torch.save(model.state_dict(), 'fast_state.pt').",
    ONNX_FILE: "torch.onnx.export(model, (example,), 'fast.onnx', dynamo=True, input_names=['pixels'], "
               "output_names=['logits'], dynamic_shapes=...) with a dynamic batch dimension.",
}
BF16_ATOL = 5e-2        # bfloat16 keeps 8 bits of mantissa: ~4e-3 relative per op, a few ops deep
FP32_BAR = 1e-6         # closer than this to float32 everywhere: nothing ran in bfloat16
COMPILE_BATCHES = (8, 256)
BF16_BATCH = 256
COMPILED_ATOL = 1e-4    # compiled against eager: float32 kernels, fused and reordered
COMPILE_SIDE_MARGIN = 2.0  # a small network's compiled speed-up swings between 0.5 and 1.7 run to run on 2 cores
DIFF_FACTOR = 10.0      # the same difference, on other rows like the notebook's
LATENCY_BATCHES = (1, 8, 64, 256)
CHECKPOINT_BAR = 0.5    # checkpointing every block keeps at most half of the bytes a plain forward saves


def fastnet_config(rng, widths=(64, 96, 128), depths=(2, 3, 4)) -> dict:
    return {"width": int(rng.choice(widths)), "depth": int(rng.choice(depths))}


def reference_model(ctx: CheckContext, exercise: str, guarded: bool = False):
    """The network the probe built for `exercise`, rebuilt here from the same config and seed."""
    from polyglot_lab import fastnet
    given = registry.input_makers[exercise](ctx)
    return fastnet.build(given["config"], int(given["seed"]), guarded=guarded)


@registry.inputs("profile")
def profile_inputs(ctx: CheckContext) -> dict:
    # Wide layers, so that matrix products lead the profile clearly; the steps drawn, so calls cannot be typed.
    rng = ctx.rng("profile")
    batch = int(rng.integers(48, 97))
    return {"config": fastnet_config(rng, widths=(192, 224, 256), depths=(2, 3)), "seed": np.int64(rng.integers(1000)),
            "steps": np.int64(rng.integers(8, 16)), "x": rng.standard_normal((batch, 64)).astype(np.float32),
            "y": rng.integers(0, 10, batch).astype(np.int64)}


def profile_rows(ctx: CheckContext, phase: str) -> list[dict]:
    rows = ctx.outputs(profile)[phase]
    if len(rows) < 3 or any(r["self_ms"] is None or r["calls"] is None or r["self_ms"] < 0 for r in rows):
        raise CheckFailed(f"top_operators on the {phase} step does not return rows of name, self_ms and calls.",
                          expected="a list of at least 3 dicts {'name': str, 'self_ms': float >= 0, 'calls': int}",
                          found=str(rows[:3]), hint="One dict per row of prof.key_averages(), the first k.")
    return rows


@registry.check("profile", "self_time_order")
def self_time_order(ctx: CheckContext):
    for phase in ("inference", "training"):
        rows = profile_rows(ctx, phase)
        times = [r["self_ms"] for r in rows]
        if times != sorted(times, reverse=True):
            raise CheckFailed(f"top_operators' rows for the {phase} step are not sorted by self time, largest first: "
                              "sorted by total time, an operator that only calls others (aten::linear calls "
                              "aten::addmm) comes first although it does almost nothing itself.",
                              expected="self_ms descending", found=", ".join(f"{r['name']} {r['self_ms']:.2f}"
                                                                            for r in rows[:5]),
                              hint="key_averages() sorted by self_cpu_time_total: the time spent in the operator "
                                   "itself, not in the ones it calls.")
    return "rows sorted by self time, for inference and training"


@registry.inputs("torch_compile")
def compile_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("torch_compile")
    # Inputs large enough that every block's output exceeds the clip limit: the clip matters to the outputs.
    # A first call of 1 s: a mean over it (>= 0.1 s) cannot be taken for the sum of the repeats (<= 0.08 s).
    return {"delay_s": float(rng.uniform(0.004, 0.009)), "first_s": 1.0, "repeats": np.int64(rng.integers(5, 10)),
            "config": fastnet_config(rng, depths=(2, 3)), "seed": np.int64(rng.integers(1000)),
            "x": (rng.standard_normal((16, 64)) * 6).astype(np.float32)}


@registry.check("torch_compile", "steady_state")
def steady_state(ctx: CheckContext):
    given, found = compile_inputs(ctx), ctx.outputs(torch_compile)["median_s"]
    delay, first, repeats = given["delay_s"], given["first_s"], int(given["repeats"])
    if found is None:
        raise CheckFailed("median_seconds did not return a number of seconds.", found="not a number")
    if found >= first:  # longer than the slow first call itself: not the seconds of one call
        raise CheckFailed("median_seconds does not return seconds: it is longer than the slowest call.",
                          expected=f"about {delay:.4f} s", found=f"{found:g}",
                          hint="Seconds, as time.perf_counter() counts them, not milliseconds.")
    if found >= (first + (repeats - 1) * delay) / repeats * 0.9:
        raise CheckFailed("median_seconds counts the first call: it averages in the one-off cost of the first, "
                          "compiling call.", expected=f"about {delay * 1000:.1f} ms (a steady call)",
                          found=f"{found * 1000:.1f} ms", hint="Call fn once before timing (the warm-up), then take "
                                                               "the median of `repeats` timed calls.")
    if not 0.8 * delay <= found <= 2.5 * delay:
        raise CheckFailed("median_seconds does not return the median seconds of one call.",
                          expected=f"about {delay * 1000:.1f} ms", found=f"{found * 1000:.1f} ms",
                          hint="Seconds, not milliseconds; one call's time, not the sum of the repeats.")
    return f"median_seconds: {found * 1000:.1f} ms for a {delay * 1000:.1f} ms call whose first call takes {first:.1f} s"


@registry.check("torch_compile", "warm_up")
def warm_up(ctx: CheckContext):
    repeats, calls = int(compile_inputs(ctx)["repeats"]), ctx.outputs(torch_compile)["calls"]
    if calls < repeats + 1:
        raise CheckFailed("median_seconds has no warm-up call: the first, compiling call is among the timed ones.",
                          expected=f"at least {repeats + 1} calls for repeats={repeats}", found=f"{calls} calls",
                          hint="fn(*args) once before the timed loop.")
    return f"{calls} calls for {repeats} timed ones: warmed up first"


@registry.check("torch_compile", "no_graph_breaks")
def no_graph_breaks(ctx: CheckContext):
    breaks = ctx.outputs(torch_compile)["breaks"]
    if breaks:
        raise CheckFailed(f"make_steady's network still has {breaks} graph break(s) under torch._dynamo.explain.",
                          expected="0 graph breaks", found=str(breaks),
                          hint="Print explain(...).break_reasons: a Python `if` on a tensor's value stops the graph. "
                               "Say the same with a tensor operation that runs whatever the value.")
    return "no graph breaks"


@registry.check("torch_compile", "same_outputs")
def same_outputs(ctx: CheckContext):
    import torch
    given = compile_inputs(ctx)
    with torch.no_grad():
        expected = reference_model(ctx, "torch_compile", guarded=True)(torch.from_numpy(given["x"])).numpy()
    diff = expect_close(ctx.outputs(torch_compile)["y"], expected, "make_steady's network",
                        mistake="make_steady's network computes another function than the guarded one: removing the "
                                "break must keep the clip where it changes the outputs.")
    return f"the same outputs as the guarded network (max abs diff {diff:.1e})"


@registry.check("torch_compile", "synchronises")
def synchronises(ctx: CheckContext):
    gpu = ctx.outputs(torch_compile)["gpu"]
    if not gpu:
        raise CheckFailed("The notebook ran without the GPU the grader sees: nothing was timed on it.")
    if gpu["learner_s"] < 0.5 * gpu["synchronised_s"]:
        raise CheckFailed("median_seconds does not wait for the GPU: CUDA calls return when the work is queued, so "
                          "the time measured is that of queueing it.",
                          expected=f"about {gpu['synchronised_s'] * 1000:.1f} ms", found=f"{gpu['learner_s'] * 1000:.2f} ms",
                          hint="torch.cuda.synchronize() before reading the clock, on each side of the call.")
    return f"{gpu['learner_s'] * 1000:.1f} ms for work the grader times at {gpu['synchronised_s'] * 1000:.1f} ms"


def measured_speed(ctx: CheckContext, kinds: tuple[str, ...], batches: tuple[int, ...], why: str) -> dict:
    """The grader's medians, {batch: {kind: s}} (and the compile time), of the notebook's fast_state.pt in the
    checker, on rows it draws."""
    def measure():
        X, _ = digits()  # rows like the notebook's (scaled pixels), drawn afresh
        rows = ctx.rng("speed:" + ",".join(kinds)).choice(len(X), size=max(batches), replace=False)
        x = (X[rows] / 16.0).astype(np.float32)
        path = ctx.artifact(STATE_FILE, hint=HINTS[STATE_FILE])
        found = {}
        for batch in batches:
            found[batch] = ctx.run("fastnet_speed", f"{why}, and it could not be run", path=path,
                                   config=None, x=x[:batch], kinds=list(kinds))
        return found
    return ctx.cached(f"speed:{kinds}:{batches}", measure)


def reported_figures(ctx: CheckContext, probe_fn, expected: str) -> dict:
    figures = ctx.outputs(probe_fn)["figures"]
    if figures is None:
        raise CheckFailed("The notebook's figures are missing.", expected=expected, found="None")
    return figures


COMPILE_FIGURES = "compile_figures = {'compile_s': the first call's seconds, 'speedup': {8: eager / compiled, 256: ...}, " \
                  "'max_abs_diff': compiled against eager}"


@registry.check("compile_speedup", "speedup")
def compile_speedup_measured(ctx: CheckContext):
    figures = reported_figures(ctx, compile_speedup, COMPILE_FIGURES)
    why = f"The grader times torch.compile on your {STATE_FILE} to check compile_figures against its own measurement"
    measured = measured_speed(ctx, ("eager", "compiled"), COMPILE_BATCHES, why)
    said = []
    for batch in COMPILE_BATCHES:
        reported = figures["speedup"].get(str(batch))
        if reported is None or reported <= 0:
            raise CheckFailed(f"compile_figures has no speed-up at batch {batch}.", expected=COMPILE_FIGURES,
                              found=str(figures["speedup"]))
        times = measured[batch]["median_s"]
        grader = times["eager"] / times["compiled"]
        expect_ratio(reported, grader, f"The compiled speed-up at batch {batch}",
                     "it looks inverted (the compiled time over the eager one), or the compiling call was timed.",
                     side_margin=COMPILE_SIDE_MARGIN,
                     hint="speedup = median eager time / median compiled time, each after a warm-up call: the first "
                          "call of a compiled model compiles, and must not be timed as a steady call.")
        said.append(f"batch {batch}: {reported:.2f} (grader {grader:.2f})")
    steady = measured[COMPILE_BATCHES[0]]["median_s"]["compiled"]
    if figures["compile_s"] is None or figures["compile_s"] < 10 * steady:
        raise CheckFailed("compile_figures' compile_s is not the time of the first, compiling call: it is about as "
                          "short as a steady call.", expected=f"seconds (the grader's steady call: {steady * 1000:.2f} ms)",
                          found=str(figures["compile_s"]),
                          hint="Time the compiled model's very first call, once, before any warm-up.")
    return "speed-ups " + "; ".join(said) + f"; compile {figures['compile_s']:.1f} s"


@registry.check("compile_speedup", "parity")
def compile_parity(ctx: CheckContext):
    figures = reported_figures(ctx, compile_speedup, COMPILE_FIGURES)
    reported = figures["max_abs_diff"]
    why = f"The grader compares the compiled and eager runs of your {STATE_FILE}"
    measured = measured_speed(ctx, ("eager", "compiled"), COMPILE_BATCHES, why)[COMPILE_BATCHES[-1]]["max_abs_diff"]
    if measured["compiled"] > COMPILED_ATOL:
        raise CheckFailed("The compiled model does not agree with eager as the grader runs it.",
                          expected=f"max abs diff <= {COMPILED_ATOL:g}", found=f"{measured['compiled']:.1e}",
                          hint="Compile the model itself, in eval mode, without changing what it computes.")
    if reported is None or not 0 <= reported <= COMPILED_ATOL:
        raise CheckFailed("compile_figures' max_abs_diff is not the compiled model's difference from eager: the "
                          "grader measures float32 agreement.", expected=f"a measured value <= {COMPILED_ATOL:g} "
                                                                         f"(the grader's: {measured['compiled']:.1e})",
                          found=str(reported), hint="(compiled(x) - model(x)).abs().max().item() on the same rows.")
    return f"compiled agrees with eager: {reported:.1e} reported, {measured['compiled']:.1e} as the grader measures it"


@registry.inputs("bf16")
def bf16_inputs(ctx: CheckContext) -> dict:
    import torch

    from polyglot_lab import fastnet
    rng = ctx.rng("bf16")
    config, seed = fastnet_config(rng), np.int64(rng.integers(1000))
    x = rng.standard_normal((32, 64)).astype(np.float32)
    with torch.no_grad():
        reference = fastnet.build(config, int(seed))(torch.from_numpy(x)).numpy()
    # What bfloat16 does to the reference: each value rounded to 8 bits of mantissa (about 0.4% off).
    rounded = torch.from_numpy(reference).bfloat16().float().numpy()
    wrong = reference.copy()
    row, col = rng.integers(len(wrong)), rng.integers(wrong.shape[1])
    wrong[row, col] += max(0.2 * float(np.abs(reference).max()), 0.1)  # a real error: one logit off by 20%
    return {"config": config, "seed": seed, "x": x, "reference": reference, "rounded": rounded, "wrong": wrong}


def float32_logits(ctx: CheckContext) -> np.ndarray:
    return np.asarray(bf16_inputs(ctx)["reference"], np.float64)


@registry.check("bf16", "in_bfloat16")
def in_bfloat16(ctx: CheckContext):
    found, expected = ctx.outputs(bf16)["y"], float32_logits(ctx)
    if found.shape == expected.shape and close(found, expected, atol=FP32_BAR, rtol=FP32_BAR):
        raise CheckFailed("autocast_logits computes in float32: its logits equal float32's to the last bits.",
                          expected="logits off float32's by bfloat16's rounding (about 1e-3 to 1e-2)",
                          found=f"max abs diff {np.abs(found - expected).max():.1e}",
                          hint="torch.autocast with device_type='cpu' and dtype=torch.bfloat16, around the call.")
    diff = expect_close(found, expected, "autocast_logits' logits", atol=BF16_ATOL, rtol=BF16_ATOL,
                        mistake="autocast_logits is further from float32 than bfloat16's rounding explains.")
    return f"computed in bfloat16: {diff:.1e} from float32, within {BF16_ATOL:g}"


@registry.check("bf16", "float32_out")
def float32_out(ctx: CheckContext):
    dtype = ctx.outputs(bf16)["dtype"]
    if dtype != "torch.float32":
        raise CheckFailed("autocast_logits does not return float32 logits.", expected="torch.float32", found=dtype,
                          hint="Autocast's matrix products return bfloat16: .float() the result, as a loss or a "
                               "softmax downstream expects.")
    return "float32 logits"


@registry.check("bf16", "tolerance_fits")
def tolerance_fits(ctx: CheckContext):
    if not ctx.outputs(bf16)["agrees_bf16"]:
        raise CheckFailed("agrees rejects logits that differ only by bfloat16's rounding: a float32 tolerance "
                          "(1e-5) is tighter than bfloat16 can be.",
                          expected="True for the reference and the same logits rounded to bfloat16",
                          found="False", hint="bfloat16 keeps 8 bits of mantissa: relative error up to 2**-8 per "
                                              "value, more after a few layers. Use atol and rtol about 1e-2.")
    return "accepts bfloat16's rounding"


@registry.check("bf16", "catches_errors")
def catches_errors(ctx: CheckContext):
    if ctx.outputs(bf16)["agrees_wrong"]:
        raise CheckFailed("agrees accepts logits with one value off by 20%: a tolerance that loose hides real bugs.",
                          expected="False for the reference and a copy with one logit changed by 20%", found="True",
                          hint="About 1e-2, absolute and relative: the rounding of bfloat16, not more.")
    return "rejects a real error"


@registry.check("bf16", "fp16_scaler")
def fp16_scaler(ctx: CheckContext):
    gpu = ctx.outputs(bf16)["gpu"]
    if not gpu:
        raise CheckFailed("The notebook ran without the GPU the grader sees: train_step_fp16 was not run on it.")
    missing = [name for name in ("scale", "step", "update") if gpu[name] < 3]
    if missing:
        raise CheckFailed(f"train_step_fp16 does not use the GradScaler's {', '.join(missing)} on every step: float16 "
                          "gradients underflow to zero without the scaled loss.",
                          expected="scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()",
                          found=str({k: gpu[k] for k in ("scale", "step", "update")}) + " calls in 3 steps")
    if not (gpu["changed"] and gpu["finite"]):
        raise CheckFailed("train_step_fp16 leaves the weights unchanged or not finite.",
                          found=f"changed={gpu['changed']}, finite={gpu['finite']}")
    return "float16 autocast with a GradScaler: scale, step and update every step"


@registry.check("bf16_speedup", "speedup")
def bf16_speedup_measured(ctx: CheckContext):
    figures = reported_figures(ctx, bf16_speedup, "bf16_figures = {'speedup': float32 time / bfloat16 time, ...}")
    reported = figures["speedup"]
    if reported is None or reported <= 0:
        raise CheckFailed("bf16_figures has no speed-up.", expected="float32 time / bfloat16 time > 0", found=str(figures))
    why = f"The grader times bfloat16 autocast on your {STATE_FILE} to check bf16_figures against its own measurement"
    times = measured_speed(ctx, ("eager", "bf16"), (BF16_BATCH,), why)[BF16_BATCH]["median_s"]
    grader = times["eager"] / times["bf16"]
    expect_ratio(reported, grader, "bf16_figures' speed-up",
                 "it looks inverted (bfloat16's time over float32's), or assumed rather than measured: on many CPUs "
                 "bfloat16 is slower.", hint="speedup = median float32 time / median bfloat16 time, measured.")
    return f"bfloat16 speed-up {reported:.2f} (the grader measures {grader:.2f})"


@registry.check("bf16_speedup", "max_abs_diff")
def bf16_max_abs_diff(ctx: CheckContext):
    figures = reported_figures(ctx, bf16_speedup, "bf16_figures = {..., 'max_abs_diff': bfloat16 against float32}")
    reported = figures["max_abs_diff"]
    why = f"The grader compares bfloat16 and float32 runs of your {STATE_FILE}"
    measured = measured_speed(ctx, ("eager", "bf16"), (BF16_BATCH,), why)[BF16_BATCH]["max_abs_diff"]["bf16"]
    if reported is not None and reported <= FP32_BAR:
        raise CheckFailed("bf16_figures' max_abs_diff is a float32 difference: the two runs it compares were both "
                          "float32.", expected=f"about {measured:.1e} (bfloat16's rounding)", found=f"{reported:.1e}",
                          hint="Compare autocast_logits(model, x) with model(x) on the same rows.")
    if reported is None or not measured / DIFF_FACTOR <= reported <= measured * DIFF_FACTOR:
        raise CheckFailed(f"bf16_figures' max_abs_diff is more than {DIFF_FACTOR:g}x away from the grader's measurement "
                          "of the same difference.", expected=f"about {measured:.1e}", found=str(reported),
                          hint="The largest |bfloat16 logit - float32 logit| over batch 256, computed, not typed.")
    return f"bfloat16 against float32: {reported:.1e} (the grader measures {measured:.1e})"


@registry.inputs("memory")
def memory_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("memory")
    small = int(rng.integers(16, 41))
    large = 2 * small + int(rng.integers(1, 9))
    return {"config": fastnet_config(rng), "seed": np.int64(rng.integers(1000)),
            "x_small": rng.standard_normal((small, 64)).astype(np.float32),
            "x_large": rng.standard_normal((large, 64)).astype(np.float32),
            "y": rng.integers(0, 10, small).astype(np.int64)}


@registry.check("memory", "same_gradients")
def same_gradients(ctx: CheckContext):
    import torch
    import torch.nn.functional as F
    given, out = memory_inputs(ctx), ctx.outputs(memory)
    model = reference_model(ctx, "memory").train()
    logits = model(torch.from_numpy(given["x_small"]))
    F.cross_entropy(logits, torch.from_numpy(given["y"])).backward()
    expect_close(out["logits"], logits.detach().numpy(), "checkpointed_forward's logits")
    missing = [name for name, p in model.named_parameters() if name not in out["grads"]]
    if missing:
        raise CheckFailed(f"After backward through checkpointed_forward, {len(missing)} parameter(s) have no gradient: "
                          "part of the network was cut out of the graph.", expected="a gradient for every parameter",
                          found=f"none for {', '.join(missing[:4])}",
                          hint="checkpoint(block, h, use_reentrant=False): never detach h or run a block under no_grad.")
    for name, p in model.named_parameters():
        expect_close(out["grads"][name], p.grad.numpy(), f"The gradient of {name}", atol=1e-5, rtol=1e-4)
    return "the same logits and gradients as the plain forward"


@registry.check("memory", "recomputes")
def recomputes(ctx: CheckContext):
    depth = int(memory_inputs(ctx)["config"]["depth"])
    calls = ctx.outputs(memory)["recomputed"]
    if 0 < calls["backward"] < depth:
        raise CheckFailed(f"checkpointed_forward recomputes only {calls['backward']} of the {depth} blocks during "
                          "backward: every block must run under checkpoint, and stay in the graph "
                          "(checkpoint_sequential leaves its last segment un-checkpointed; a detached input cuts the "
                          "blocks before it out of backward).", expected=f"{depth} block forwards in backward",
                          found=str(calls["backward"]), hint="A loop over model.blocks, each one under checkpoint.")
    if calls["backward"] < depth:
        raise CheckFailed("checkpointed_forward recomputes nothing during backward: each checkpointed block runs its "
                          "forward again there, and none did.", expected=f"at least {depth} block forwards in backward",
                          found=f"{calls['backward']}", hint="torch.utils.checkpoint.checkpoint(block, h, "
                                                             "use_reentrant=False) for each block.")
    return f"{calls['backward']} block forwards recomputed during backward"


@registry.check("memory", "saves_memory")
def saves_memory(ctx: CheckContext):
    out = ctx.outputs(memory)
    plain, checkpointed = out["plain_bytes"][0], out["checkpointed_bytes"]
    if plain <= 0:
        raise CheckFailed("The saving cannot be measured: saved_bytes finds nothing saved by the plain forward (this "
                          "check measures checkpointed_forward with your saved_bytes).",
                          expected="saved_bytes(model, x) > 0", found=str(plain),
                          hint="Fix saved_bytes first: the forward must run with gradients on.")
    if checkpointed > CHECKPOINT_BAR * plain:
        raise CheckFailed("checkpointed_forward saves about as much for backward as the plain forward.",
                          expected=f"at most {CHECKPOINT_BAR:.0%} of {plain} bytes", found=f"{checkpointed} bytes",
                          hint="Checkpoint each block: what a block computes inside is then recomputed, not kept.")
    return f"{checkpointed} bytes saved for backward instead of {plain} ({checkpointed / plain:.0%})"


@registry.check("budget", "onnx_parity")
def onnx_parity(ctx: CheckContext):
    import torch

    from polyglot_lab import fastnet
    state_path = ctx.artifact(STATE_FILE, "budget", hint=HINTS[STATE_FILE])
    saved = saved_tensors(ctx, state_path, f"{STATE_FILE} does not load with torch.load(weights_only=True)")
    model = fastnet.loaded({k: v for k, v in saved.items() if isinstance(v, np.ndarray)})
    onnx_path = ctx.artifact(ONNX_FILE, "budget", hint=HINTS[ONNX_FILE])
    rng = ctx.rng("onnx_parity")
    for batch in (int(rng.integers(2, 9)), int(rng.integers(40, 100))):  # fresh rows, at two batch sizes
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        found = onnxruntime_outputs(ctx, onnx_path, x, f"{ONNX_FILE} fails on a batch of {batch} rows",
                                    hint="Export with a dynamic batch dimension.")
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        expect_close(found, expected, f"{ONNX_FILE} at batch {batch}", atol=1e-4,
                     mistake=f"{ONNX_FILE} computes another function than the weights in {STATE_FILE}.")
    return f"{ONNX_FILE} matches {STATE_FILE} at two batch sizes"
