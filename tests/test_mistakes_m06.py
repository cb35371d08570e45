"""Module 06_performance's typical mistakes, each caught with a message that names it.

The learner's functions (the master's, and the master's with one usual mistake put in) go through the module's real
probes, in this process, on the grader's drawn inputs; the checks then decide as they do at grade time. The speed
figures are compared with what the grader measures in its checker (torch.compile of fast_state.pt, ONNX Runtime on
fast.onnx): those measurements are set here (monkeypatch), so that each test runs in seconds and the grader's side
is known. The GPU probes cannot run on a CPU: what they save is crafted."""
import shutil
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.checkpoint import checkpoint

from graders.checks import CheckContext
from graders.checks import m06_performance as m06
from mistakes import costs_only, craft, fails_with, full_marks, run_probe
from polyglot_lab import fastnet

PROBES = "polyglot_lab.probes.m06_performance"


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=7, device="cpu")


def train_step_fp16(model, optimizer, scaler, x, y):
    """The master's: the probe calls it only where there is a GPU (the test's context then skips its check)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type="cuda", dtype=torch.float16):
        loss = F.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def peak_cuda_bytes(step):
    """The master's, called by the probe only where there is a GPU."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


GPU_PARTS = {"bf16": {"train_step_fp16": train_step_fp16}, "memory": {"peak_cuda_bytes": peak_cuda_bytes}}


def probe_with(ctx, exercise, **namespace):
    """The exercise's real probe on `namespace`, with the master's GPU functions beside it: on a machine with a GPU
    the probe needs them, though the test's context (device "cpu") does not check them."""
    return run_probe(ctx, m06.registry, PROBES, exercise, **{**GPU_PARTS.get(exercise, {}), **namespace})


# -- profile ---------------------------------------------------------------------------------------------------------
def top_operators_with(sort_key="self_cpu_time_total", profile_warm_up=False, skip=0):
    """The master's top_operators, with one mistake: ranked by another key, the warm-up call profiled with the
    others, or the first `skip` rows left out."""
    def top_operators(step, steps, k=5):
        if not profile_warm_up:
            step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps + profile_warm_up):
                step()
        events = sorted(prof.key_averages(), key=lambda e: getattr(e, sort_key), reverse=True)[skip:]
        return [{"name": e.key, "self_ms": e.self_cpu_time_total / 1000, "calls": e.count} for e in events[:k]]
    return top_operators


def test_profile_master_passes(ctx):
    probe_with(ctx, "profile", top_operators=top_operators_with())
    assert m06.self_time_order(ctx) and m06.top_operator(ctx) and m06.profile_calls(ctx)
    full_marks(ctx, m06.registry, "profile")


def test_profile_sorted_by_total_time_is_named(ctx):
    """Sorted by total time, aten::linear (which only calls aten::addmm) leads: the order is wrong, and so is the
    top operator the grader's own profile finds."""
    probe_with(ctx, "profile", top_operators=top_operators_with(sort_key="cpu_time_total"))
    costs_only(ctx, m06.registry, "profile", ("self_time_order", "top_operator"))
    fails_with(m06.self_time_order, ctx, "not sorted by self time", "sorted by total time")
    fails_with(m06.top_operator, ctx, "top operator is not the one the grader's own profile")


def test_profiling_the_warm_up_costs_calls_only(ctx):
    steps = int(m06.profile_inputs(ctx)["steps"])
    probe_with(ctx, "profile", top_operators=top_operators_with(profile_warm_up=True))
    costs_only(ctx, m06.registry, "profile", "calls", f"counts {steps + 1} steps, not {steps}",
               "the warm-up call was profiled too")


def test_a_wrong_top_operator_costs_top_operator_only(ctx):
    """The rows still sorted by self time, with their right call counts, but the leader left out (an off-by-one)."""
    probe_with(ctx, "profile", top_operators=top_operators_with(skip=1))
    costs_only(ctx, m06.registry, "profile", "top_operator", "top operator is not the one")


def test_crafted_profile_rows(ctx):
    reference = m06.reference_profile(ctx)
    steps = int(m06.profile_inputs(ctx)["steps"])

    def rows(phase, calls_factor=steps, drop=0):
        return [{"name": name, "self_ms": ms * steps, "calls": calls * calls_factor}
                for name, ms, calls in reference[phase][drop:drop + 5]]
    craft(ctx, m06.profile, inference=rows("inference"), training=rows("training"))
    assert m06.self_time_order(ctx) and m06.top_operator(ctx) and m06.profile_calls(ctx)
    craft(ctx, m06.profile, inference=rows("inference", calls_factor=1), training=rows("training"))
    fails_with(m06.profile_calls, ctx, "call count is not that of")  # one step's calls: not the requested steps'
    craft(ctx, m06.profile, inference=rows("inference"), training=rows("training")[::-1])
    fails_with(m06.self_time_order, ctx, "training step are not sorted by self time")
    craft(ctx, m06.profile, inference=[{"name": "my_model_forward", "self_ms": 1e4, "calls": steps}]
          + rows("inference"), training=rows("training"))
    fails_with(m06.profile_calls, ctx, "an operator the grader's profile never sees")
    craft(ctx, m06.profile, inference=rows("inference")[:2], training=rows("training"))
    fails_with(m06.self_time_order, ctx, "does not return rows of name, self_ms and calls")
    craft(ctx, m06.profile, inference=[{**r, "self_ms": None} for r in rows("inference")], training=rows("training"))
    fails_with(m06.top_operator, ctx, "does not return rows")


# -- torch_compile ---------------------------------------------------------------------------------------------------
def median_seconds_with(warm_up=True, aggregate=np.median):
    """The master's median_seconds (without the GPU's synchronize), with one mistake."""
    def median_seconds(fn, *args, repeats=20):
        if warm_up:
            fn(*args)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - started)
        return float(aggregate(times))
    return median_seconds


class SteadyBlock(fastnet.Block):
    limit = fastnet.GuardedBlock.limit

    def forward(self, h):
        return super().forward(h).clamp(-self.limit, self.limit)


def make_steady(model):
    for block in model.blocks:
        block.__class__ = SteadyBlock
    return model


def make_steady_without_the_clip(model):
    """No graph break, because no clip: the guarded network's `if` removed with what it guards."""
    for block in model.blocks:
        block.__class__ = fastnet.Block
    return model


def test_torch_compile_master_passes(ctx):
    probe_with(ctx, "torch_compile", median_seconds=median_seconds_with(), make_steady=make_steady)
    for check in (m06.steady_state, m06.warm_up, m06.no_graph_breaks, m06.same_outputs):
        assert check(ctx)
    full_marks(ctx, m06.registry, "torch_compile")


def test_a_mean_over_calls_with_the_first_is_named(ctx):
    """No warm-up and a mean: the first, compiling call is timed and weighs in."""
    probe_with(ctx, "torch_compile", median_seconds=median_seconds_with(warm_up=False, aggregate=np.mean),
               make_steady=make_steady)
    costs_only(ctx, m06.registry, "torch_compile", ("steady_state", "warm_up"), "first")
    fails_with(m06.steady_state, ctx, "counts the first call", "compiling call")
    fails_with(m06.warm_up, ctx, "no warm-up call")


def test_a_median_without_warm_up_costs_warm_up_only(ctx):
    """The median shrugs off one slow call, so the steady time is right: the missing warm-up costs its check."""
    probe_with(ctx, "torch_compile", median_seconds=median_seconds_with(warm_up=False), make_steady=make_steady)
    costs_only(ctx, m06.registry, "torch_compile", "warm_up", "no warm-up call")


def test_the_sum_of_the_repeats_is_not_one_calls_time(ctx):
    probe_with(ctx, "torch_compile", median_seconds=median_seconds_with(aggregate=np.sum), make_steady=make_steady)
    costs_only(ctx, m06.registry, "torch_compile", "steady_state", "not return the median seconds of one call")


def test_milliseconds_are_named_as_such(ctx):
    in_ms = median_seconds_with(aggregate=lambda times: 1000 * float(np.median(times)))
    probe_with(ctx, "torch_compile", median_seconds=in_ms, make_steady=make_steady)
    costs_only(ctx, m06.registry, "torch_compile", "steady_state", "does not return seconds")


def test_make_steady_returning_the_guarded_model_costs_no_graph_breaks_only(ctx):
    probe_with(ctx, "torch_compile", median_seconds=median_seconds_with(), make_steady=lambda model: model)
    costs_only(ctx, m06.registry, "torch_compile", "no_graph_breaks", "still has", "graph break")


def test_make_steady_dropping_the_clip_costs_same_outputs_only(ctx):
    probe_with(ctx, "torch_compile", median_seconds=median_seconds_with(), make_steady=make_steady_without_the_clip)
    costs_only(ctx, m06.registry, "torch_compile", "same_outputs", "another function than the guarded one",
               "keep the clip")


def test_synchronises_on_crafted_gpu_timings(ctx):
    """The GPU part of the probe: a queue of 8 matrix products the probe times synchronised, and the learner's
    median_seconds times too."""
    craft(ctx, m06.torch_compile, gpu={"learner_s": 0.078, "synchronised_s": 0.081})
    assert m06.synchronises(ctx)
    craft(ctx, m06.torch_compile, gpu={"learner_s": 0.0004, "synchronised_s": 0.081})  # the queueing time
    fails_with(m06.synchronises, ctx, "does not wait for the GPU")
    craft(ctx, m06.torch_compile, gpu=None)
    fails_with(m06.synchronises, ctx, "without the GPU")


# -- the speed figures: the grader's timing of fast_state.pt set, the figures reported ---------------------------------
def save_state(ctx, seed=0):
    torch.save(fastnet.build(seed=seed).state_dict(), ctx.workdir / m06.STATE_FILE)


def test_compile_speedup_measured(ctx, monkeypatch):
    figures = {"compile_s": 14.0, "speedup": {8: 1.7, 256: 2.3}, "max_abs_diff": 4e-7}
    probe_with(ctx, "compile_speedup", compile_figures=figures)
    fails_with(m06.compile_speedup_measured, ctx, "fast_state.pt was not found")  # nothing to time it on
    save_state(ctx)
    asked = []

    def measured_speed(ctx, kinds, batches, why):  # compiling pays twice and more: eager / compiled = 2 and 2.5
        asked.append((kinds, batches))
        return {8: {"median_s": {"eager": 2e-4, "compiled": 1e-4}, "compile_s": 12.0, "max_abs_diff": {"compiled": 3e-7}},
                256: {"median_s": {"eager": 5e-3, "compiled": 2e-3}, "compile_s": None,
                      "max_abs_diff": {"compiled": 5e-7}}}
    monkeypatch.setattr(m06, "measured_speed", measured_speed)
    assert m06.compile_speedup_measured(ctx)
    assert asked[-1] == (("eager", "compiled"), (8, 256))
    mistakes = [  # (compile_figures, the words that name the mistake)
        ({**figures, "speedup": {8: 0.6, 256: 0.4}}, ("wrong side of 1", "inverted")),
        ({**figures, "speedup": {8: 10.0, 256: 10.0}}, ("batch 8", "more than 3x away")),       # typed by hand
        ({**figures, "speedup": {8: 2e-4 / 12.0, 256: 2.3}}, ("wrong side of 1", "compiling call was timed")),
        ({**figures, "compile_s": 1.1e-4}, ("compile_s is not the time of the first, compiling call",)),
        ({**figures, "speedup": {8: 1.7}}, ("no speed-up at batch 256",)),
    ]
    for wrong, words in mistakes:
        probe_with(ctx, "compile_speedup", compile_figures=wrong)
        costs_only(ctx, m06.registry, "compile_speedup", "speedup", *words)
    probe_with(ctx, "compile_speedup", compile_figures={**figures, "speedup": {"8": 1.7, "256": 2.3}})
    full_marks(ctx, m06.registry, "compile_speedup")  # keys as strings are as good
    for wrong, words in [({**figures, "max_abs_diff": 0.3}, ("max_abs_diff is not the compiled model's difference",)),
                         ({k: v for k, v in figures.items() if k != "max_abs_diff"}, ("max_abs_diff",))]:
        probe_with(ctx, "compile_speedup", compile_figures=wrong)
        costs_only(ctx, m06.registry, "compile_speedup", "parity", *words)


def test_a_compiled_model_that_differs_from_eager_is_named(ctx, monkeypatch):
    save_state(ctx)
    monkeypatch.setattr(m06, "measured_speed", lambda ctx, kinds, batches, why: {
        b: {"median_s": {"eager": 2e-3, "compiled": 1e-3}, "compile_s": 10.0, "max_abs_diff": {"compiled": 0.5}}
        for b in batches})
    probe_with(ctx, "compile_speedup", compile_figures={"compile_s": 14.0, "speedup": {8: 2.0, 256: 2.0},
                                                        "max_abs_diff": 0.5})
    costs_only(ctx, m06.registry, "compile_speedup", "parity", "does not agree with eager")


def test_bf16_speedup_measured(ctx, monkeypatch):
    """On this kind of CPU bfloat16 autocast is slower than float32 (the grader measures 0.4): a speed-up assumed
    from a GPU's, or the inverted ratio, is caught."""
    figures = {"speedup": 0.45, "max_abs_diff": 0.01}
    probe_with(ctx, "bf16_speedup", bf16_figures=figures)
    fails_with(m06.bf16_speedup_measured, ctx, "fast_state.pt was not found")
    save_state(ctx)
    asked = []

    def measured_speed(ctx, kinds, batches, why):
        asked.append((kinds, batches))
        return {256: {"median_s": {"eager": 2e-3, "bf16": 5e-3}, "compile_s": None, "max_abs_diff": {"bf16": 0.02}}}
    monkeypatch.setattr(m06, "measured_speed", measured_speed)
    assert m06.bf16_speedup_measured(ctx)
    assert asked[-1] == (("eager", "bf16"), (256,))
    for wrong, words in [({**figures, "speedup": 2.0}, ("wrong side of 1", "assumed rather than measured")),  # typed
                         ({**figures, "speedup": 1 / 0.45}, ("wrong side of 1", "inverted")),
                         ({**figures, "speedup": 0.05}, ("more than 3x away",)),
                         ({"max_abs_diff": 0.01}, ("has no speed-up",))]:
        probe_with(ctx, "bf16_speedup", bf16_figures=wrong)
        costs_only(ctx, m06.registry, "bf16_speedup", "speedup", *words)
    probe_with(ctx, "bf16_speedup", bf16_figures=figures)
    full_marks(ctx, m06.registry, "bf16_speedup")
    for wrong, words in [({**figures, "max_abs_diff": 3e-7}, ("a float32 difference", "both float32")),
                         ({**figures, "max_abs_diff": 0.5}, ("more than 10x away",)),  # typed, or another scale
                         ({"speedup": 0.45}, ("more than 10x away",))]:
        probe_with(ctx, "bf16_speedup", bf16_figures=wrong)
        costs_only(ctx, m06.registry, "bf16_speedup", "max_abs_diff", *words)


# -- bf16 ------------------------------------------------------------------------------------------------------------
def autocast_logits_with(device_type="cpu", enabled=True, to_float=True):
    def autocast_logits(model, x):
        with torch.no_grad(), torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=enabled):
            logits = model(x)
        return logits.float() if to_float else logits
    return autocast_logits


def agrees_with(tolerance=1e-2):
    def agrees(reference, candidate):
        bar = tolerance + tolerance * reference.abs().max()
        return bool((candidate.float() - reference.float()).abs().max() <= bar)
    return agrees


def test_bf16_master_passes(ctx):
    probe_with(ctx, "bf16", autocast_logits=autocast_logits_with(), agrees=agrees_with())
    for check in (m06.in_bfloat16, m06.float32_out, m06.tolerance_fits, m06.catches_errors):
        assert check(ctx)
    full_marks(ctx, m06.registry, "bf16")


@pytest.mark.parametrize("autocast", [
    dict(enabled=False),        # autocast switched off: float32
    dict(device_type="cuda"),   # autocast for CUDA around a CPU model: off without CUDA, and no CPU op is cast with it
])
def test_logits_computed_in_float32_cost_in_bfloat16_only(ctx, autocast):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available ... Disabling autocast"
        probe_with(ctx, "bf16", autocast_logits=autocast_logits_with(**autocast), agrees=agrees_with())
    costs_only(ctx, m06.registry, "bf16", "in_bfloat16", "computes in float32")


def test_logits_left_in_bfloat16_cost_float32_out_only(ctx):
    probe_with(ctx, "bf16", autocast_logits=autocast_logits_with(to_float=False), agrees=agrees_with())
    failure = costs_only(ctx, m06.registry, "bf16", "float32_out", "does not return float32")["float32_out"]
    assert failure.found == "torch.bfloat16"


@pytest.mark.parametrize("agrees", [agrees_with(1e-5), lambda reference, candidate: torch.allclose(reference, candidate)])
def test_a_float32_tolerance_costs_tolerance_fits_only(ctx, agrees):
    probe_with(ctx, "bf16", autocast_logits=autocast_logits_with(), agrees=agrees)
    costs_only(ctx, m06.registry, "bf16", "tolerance_fits", "float32 tolerance")


def test_a_loose_tolerance_costs_catches_errors_only(ctx):
    probe_with(ctx, "bf16", autocast_logits=autocast_logits_with(), agrees=agrees_with(1.0))
    costs_only(ctx, m06.registry, "bf16", "catches_errors", "off by 20%", "hides real bugs")


def test_fp16_scaler_on_crafted_gpu_counts(ctx):
    """What the probe's fp16_step saves: the GradScaler's calls in 3 steps, and whether the weights moved and stay
    finite."""
    right = {"scale": 3, "step": 3, "update": 3, "changed": True, "finite": True}
    craft(ctx, m06.bf16, gpu=right)
    assert m06.fp16_scaler(ctx)
    craft(ctx, m06.bf16, gpu={**right, "scale": 0, "step": 0, "update": 0})  # loss.backward(); optimizer.step()
    fails_with(m06.fp16_scaler, ctx, "does not use the GradScaler's scale, step, update", "underflow")
    craft(ctx, m06.bf16, gpu={**right, "update": 0})  # scaler.update() forgotten
    fails_with(m06.fp16_scaler, ctx, "does not use the GradScaler's update on every step")
    craft(ctx, m06.bf16, gpu={**right, "finite": False})
    fails_with(m06.fp16_scaler, ctx, "not finite")
    craft(ctx, m06.bf16, gpu=None)
    fails_with(m06.fp16_scaler, ctx, "without the GPU")


# -- memory ----------------------------------------------------------------------------------------------------------
def saved_bytes_with(size=lambda t: t.numel() * t.element_size(), grad=True):
    def saved_bytes(forward, x):
        total = 0

        def pack(tensor):
            nonlocal total
            total += size(tensor)
            return tensor
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), torch.set_grad_enabled(grad):
            forward(x)
        return total
    return saved_bytes


def checkpointed_forward_with(run_block=lambda block, h: checkpoint(block, h, use_reentrant=False)):
    def checkpointed_forward(model, x):
        h = model.stem(x)
        for block in model.blocks:
            h = run_block(block, h)
        return model.head(model.norm(h))
    return checkpointed_forward


def block_under_no_grad(block, h):
    with torch.no_grad():
        return block(h)


def test_memory_master_passes(ctx):
    probe_with(ctx, "memory", saved_bytes=saved_bytes_with(), checkpointed_forward=checkpointed_forward_with())
    for check in (m06.bytes_counted, m06.same_gradients, m06.recomputes, m06.saves_memory):
        assert check(ctx)
    full_marks(ctx, m06.registry, "memory")


def test_counting_elements_costs_bytes_counted_only(ctx):
    probe_with(ctx, "memory", saved_bytes=saved_bytes_with(size=lambda t: t.numel()),
               checkpointed_forward=checkpointed_forward_with())
    costs_only(ctx, m06.registry, "memory", "bytes_counted", "counts elements, not bytes")


def test_saved_bytes_under_no_grad_is_named(ctx):
    """Nothing is saved under no_grad: 0 bytes. The plain forward's 0 also leaves saves_memory nothing to compare."""
    probe_with(ctx, "memory", saved_bytes=saved_bytes_with(grad=False), checkpointed_forward=checkpointed_forward_with())
    assert ctx.outputs(m06.memory)["plain_bytes"] == [0, 0]
    costs_only(ctx, m06.registry, "memory", ("bytes_counted", "saves_memory"))
    fails_with(m06.bytes_counted, ctx, "finds nothing saved", "torch.no_grad")
    fails_with(m06.saves_memory, ctx, "cannot be measured", "saved_bytes finds nothing")  # the cause, named


@pytest.mark.parametrize("run_block", [
    block_under_no_grad,                                                    # the blocks out of the graph
    lambda block, h: checkpoint(block, h.detach(), use_reentrant=False),   # each block's input cut from the graph
    lambda block, h: checkpoint(block_under_no_grad, block, h, use_reentrant=False),
], ids=["blocks under no_grad", "detached inputs", "no_grad inside the checkpoint"])
def test_blocks_cut_out_of_the_graph_cost_gradients_and_recomputation(ctx, run_block):
    probe_with(ctx, "memory", saved_bytes=saved_bytes_with(), checkpointed_forward=checkpointed_forward_with(run_block))
    costs_only(ctx, m06.registry, "memory", ("same_gradients", "recomputes"))
    fails_with(m06.same_gradients, ctx, "have no gradient", "cut out of the graph")
    fails_with(m06.recomputes, ctx, "recomputes", "during backward")  # nothing, or only the last block (detached)


def test_checkpoint_sequential_leaves_its_last_segment_unrecomputed(ctx):
    from torch.utils.checkpoint import checkpoint_sequential

    def checkpointed_forward(model, x):
        h = checkpoint_sequential(model.blocks, len(model.blocks), model.stem(x), use_reentrant=False)
        return model.head(model.norm(h))
    probe_with(ctx, "memory", saved_bytes=saved_bytes_with(), checkpointed_forward=checkpointed_forward)
    costs_only(ctx, m06.registry, "memory", "recomputes", "recomputes only", "checkpoint_sequential")


def test_a_plain_forward_costs_recomputes_and_saves_memory(ctx):
    probe_with(ctx, "memory", saved_bytes=saved_bytes_with(), checkpointed_forward=lambda model, x: model(x))
    costs_only(ctx, m06.registry, "memory", ("recomputes", "saves_memory"))
    fails_with(m06.recomputes, ctx, "recomputes nothing during backward")
    fails_with(m06.saves_memory, ctx, "saves about as much for backward as the plain forward")


def test_checkpointed_logits_of_another_network_fail_same_gradients(ctx):
    """A checkpointed forward that leaves out the final LayerNorm: checkpointed, but another function."""
    def checkpointed_forward(model, x):
        h = model.stem(x)
        for block in model.blocks:
            h = checkpoint(block, h, use_reentrant=False)
        return model.head(h)
    probe_with(ctx, "memory", saved_bytes=saved_bytes_with(), checkpointed_forward=checkpointed_forward)
    fails_with(m06.same_gradients, ctx, "checkpointed_forward's logits")


def test_cuda_peak_on_crafted_gpu_peaks(ctx):
    given = m06.memory_inputs(ctx)
    model = m06.reference_model(ctx, "memory").train()
    floor = [m06.reference_saved_bytes(model, torch.from_numpy(given[k])) for k in ("x_small", "x_large")]
    craft(ctx, m06.memory, gpu=[2 * floor[0], 2 * floor[1]])
    assert m06.cuda_peak(ctx)
    params = sum(p.numel() * 4 for p in model.parameters())
    craft(ctx, m06.memory, gpu=[params, params])  # memory_allocated() after the step: the weights, not the peak
    fails_with(m06.cuda_peak, ctx, "not the step's peak")
    craft(ctx, m06.memory, gpu=[2 * floor[1], 2 * floor[1]])  # the same peak at both batches: a stale maximum
    fails_with(m06.cuda_peak, ctx, "grows with the batch")
    craft(ctx, m06.memory, gpu=None)
    fails_with(m06.cuda_peak, ctx, "without the GPU")


# -- latency ---------------------------------------------------------------------------------------------------------
def percentile99(latencies):
    return float(np.percentile(latencies, 99))


def largest_batch_with(score=percentile99, pick=max, none=True):
    def largest_batch(curve, budget_ms):
        meeting = [batch for batch, samples in curve.items() if score(samples) <= budget_ms]
        if meeting:
            return pick(meeting)
        return None if none else min(curve)
    return largest_batch


def test_latency_master_passes(ctx):
    probe_with(ctx, "latency", p99=percentile99, largest_batch=largest_batch_with())
    assert m06.p99_check(ctx) and m06.largest_batch_check(ctx)
    assert ctx.outputs(m06.latency)["chosen"][-1] is None  # the third curve: no batch meets its budget
    full_marks(ctx, m06.registry, "latency")


def test_p99_returning_the_mean_is_named(ctx):
    """A mean for p99, and largest_batch judging by it as the master's does by p99: both checks name the mean."""
    mean = lambda latencies: float(np.mean(latencies))  # noqa: E731
    probe_with(ctx, "latency", p99=mean, largest_batch=largest_batch_with(score=mean))
    costs_only(ctx, m06.registry, "latency", ("p99", "largest_batch"), "mean")
    fails_with(m06.p99_check, ctx, "p99 returns the mean")
    fails_with(m06.largest_batch_check, ctx, "judges each batch by its mean latency")
    probe_with(ctx, "latency", p99=mean, largest_batch=largest_batch_with())  # a largest_batch of its own
    costs_only(ctx, m06.registry, "latency", "p99", "p99 returns the mean", "hides the slow calls")


def test_p99_returning_the_median_costs_p99_only(ctx):
    probe_with(ctx, "latency", p99=lambda latencies: float(np.median(latencies)), largest_batch=largest_batch_with())
    costs_only(ctx, m06.registry, "latency", "p99", "returns the median")


def test_the_maximum_is_not_p99(ctx):
    probe_with(ctx, "latency", p99=lambda latencies: float(max(latencies)), largest_batch=largest_batch_with())
    costs_only(ctx, m06.registry, "latency", "p99", "returns the maximum")


def test_p95_is_not_p99(ctx):
    probe_with(ctx, "latency", p99=lambda latencies: float(np.percentile(latencies, 95)),
               largest_batch=largest_batch_with())
    costs_only(ctx, m06.registry, "latency", "p99", "not the 99th percentile")


def test_largest_batch_by_the_mean_costs_largest_batch_only(ctx):
    probe_with(ctx, "latency", p99=percentile99, largest_batch=largest_batch_with(score=np.mean))
    costs_only(ctx, m06.registry, "latency", "largest_batch", "judges each batch by its mean latency", "not its p99")


def test_the_last_meeting_batch_in_dict_order_is_not_the_largest(ctx):
    """The curve's batches come in a drawn order: the last one that meets the budget is not the largest."""
    probe_with(ctx, "latency", p99=percentile99, largest_batch=largest_batch_with(pick=lambda meeting: meeting[-1]))
    results = costs_only(ctx, m06.registry, "latency", "largest_batch", "picks another batch than the largest")
    assert "batches meeting it" in results["largest_batch"].expected


@pytest.mark.parametrize("largest_batch", [largest_batch_with(none=False),
                                           lambda curve, budget_ms: largest_batch_with()(curve, budget_ms) or 0],
                         ids=["the smallest batch", "zero"])
def test_no_none_when_nothing_meets_the_budget(ctx, largest_batch):
    probe_with(ctx, "latency", p99=percentile99, largest_batch=largest_batch)
    results = costs_only(ctx, m06.registry, "latency", "largest_batch", "picks another batch")
    assert results["largest_batch"].expected.startswith("None (batches meeting it: none)")


# -- budget: fast.onnx against fast_state.pt (real files), its latency curve against the grader's (set) -------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """fast_state.pt and fast.onnx of one network, exported as the notebook does (dynamic batch), and the
    state of another seed's network."""
    folder = tmp_path_factory.mktemp("fast")
    model = fastnet.build(seed=0)
    torch.save(model.state_dict(), folder / m06.STATE_FILE)
    torch.save(fastnet.build(seed=1).state_dict(), folder / "other_state.pt")
    torch.onnx.export(model, (torch.zeros(8, 64),), str(folder / m06.ONNX_FILE), dynamo=True, verbose=False,
                      input_names=["pixels"], output_names=["logits"], external_data=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    return folder


def copy_artifacts(ctx, exported, state=m06.STATE_FILE):
    shutil.copy(exported / state, ctx.workdir / m06.STATE_FILE)
    shutil.copy(exported / m06.ONNX_FILE, ctx.workdir / m06.ONNX_FILE)


def test_onnx_parity(ctx, exported):
    probe_with(ctx, "budget", latency_figures={"p99_ms": {}, "chosen_batch": None}, BUDGET_MS=2.0)
    fails_with(m06.onnx_parity, ctx, "fast_state.pt was not found")
    copy_artifacts(ctx, exported)
    assert m06.onnx_parity(ctx)
    copy_artifacts(ctx, exported, state="other_state.pt")  # exported from another network than the one saved
    ctx.cache.clear()
    fails_with(m06.onnx_parity, ctx, "fast.onnx computes another function than the weights in fast_state.pt")
    (ctx.workdir / m06.ONNX_FILE).unlink()
    fails_with(m06.onnx_parity, ctx, "fast.onnx was not found")


GRADER_MEDIAN_MS = {1: 0.15, 8: 0.3, 64: 1.0, 256: 3.6}  # the grader's own medians of fast.onnx, one thread
RIGHT_P50 = {1: {1: 0.16, 8: 0.32, 64: 1.1, 256: 3.8}, 2: {1: 0.14, 8: 0.25, 64: 0.7, 256: 2.2}}
RIGHT_P99 = {1: {1: 0.22, 8: 0.4, 64: 1.3, 256: 4.4}, 2: {1: 0.2, 8: 0.3, 64: 0.8, 256: 2.6}}
RIGHT = {"p50_ms": RIGHT_P50, "p99_ms": RIGHT_P99, "chosen_batch": 64}  # with BUDGET_MS = 2.0: batch 64


def test_budget_figures_against_the_graders_curve(ctx, exported, monkeypatch):
    copy_artifacts(ctx, exported)
    asked = []

    def ort_median_ms(ctx, batch, why):
        asked.append(batch)
        return GRADER_MEDIAN_MS[batch]
    monkeypatch.setattr(m06, "ort_median_ms", ort_median_ms)
    probe_with(ctx, "budget", latency_figures=RIGHT, BUDGET_MS=2.0)
    assert m06.curve_measured(ctx) and m06.budget_met(ctx)
    full_marks(ctx, m06.registry, "budget")
    assert set(asked) == {1, 64, 256}
    mistakes = [  # (latency_figures, the failing check, the words that name the mistake)
        ({"chosen_batch": 256}, "budget_met", ("not the largest batch whose p99", "meets BUDGET_MS")),
        ({"chosen_batch": 8}, "budget_met", ("not the largest batch whose p99",)),
        ({"chosen_batch": None}, "budget_met", ("not the largest batch whose p99",)),
        ({"p50_ms": {t: dict(zip(row, reversed(row.values()))) for t, row in RIGHT_P50.items()},
          "p99_ms": {t: {b: 10.0 for b in row} for t, row in RIGHT_P99.items()}, "chosen_batch": None},
         "curve_measured", ("wrong side of 1", "inverted")),
        ({"p50_ms": {1: {1: 0.16, 8: 0.17, 64: 0.16, 256: 0.18}}}, "curve_measured",  # batch 1 timed at every size
         ("more than 3x away",)),
        ({"p99_ms": {**RIGHT_P99, 1: {**RIGHT_P99[1], 8: 0.2}}}, "curve_measured", ("p99 is below its median",)),
    ]
    for changed, failing, words in mistakes:
        probe_with(ctx, "budget", latency_figures={**RIGHT, **changed}, BUDGET_MS=2.0)
        costs_only(ctx, m06.registry, "budget", failing, *words)
    probe_with(ctx, "budget", latency_figures={**RIGHT, "p99_ms": {1: {1: 0.2, 8: 0.3}, 2: RIGHT_P99[2]}},
               BUDGET_MS=2.0)
    costs_only(ctx, m06.registry, "budget", ("curve_measured", "budget_met"), "no p99 at one thread for every batch")


def test_a_curve_that_is_not_the_models_is_named(ctx, exported, monkeypatch):
    """Numbers typed to fit the budget: the decision follows them, but the grader's own median at the chosen batch
    is over the budget."""
    copy_artifacts(ctx, exported)
    monkeypatch.setattr(m06, "ort_median_ms", lambda ctx, batch, why: 10 * GRADER_MEDIAN_MS[batch])
    probe_with(ctx, "budget", latency_figures=RIGHT, BUDGET_MS=2.0)
    costs_only(ctx, m06.registry, "budget", "budget_met", "even the median latency the grader measures")
