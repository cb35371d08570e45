"""Module 06: valid answers written otherwise than the master's score full marks, through the real probes. Each is
what a learner may well write: another profiler API, other clocks and aggregates, a new module instead of a patched
one, other tolerances and percentile definitions. The exercises whose checks need no artifact; the GPU checks skip
on a machine without one."""
import copy
import functools
import heapq
import statistics
import time
from operator import attrgetter

import numpy as np
import pytest
import torch
from torch import nn

from graders.checks import CheckContext
from graders.checks import m06_performance as m06
from mistakes import full_marks, run_probe
from polyglot_lab import fastnet

PROBES = "polyglot_lab.probes.m06_performance"


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=7, device="cpu")


# The GPU parts, written otherwise too: the probes call them only where there is a GPU, and the test's context
# (device "cpu") skips their checks, but a run on a GPU machine needs them defined.
def train_step_fp16(model, optimizer, scaler, x, y):
    model.train()
    optimizer.zero_grad()
    with torch.autocast("cuda", dtype=torch.float16):
        logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.float(), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


def peak_cuda_bytes(step):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.memory_stats()["allocated_bytes.all.peak"]


# -- profile ---------------------------------------------------------------------------------------------------------
def test_profile_with_the_autograd_profiler_and_nlargest(ctx):
    """The older torch.autograd.profiler API, the top k taken with heapq, times converted from microseconds."""
    def top_operators(step, steps, k=5):
        step()
        with torch.autograd.profiler.profile() as prof:
            for _ in range(steps):
                step()
        top = heapq.nlargest(k, prof.key_averages(), key=attrgetter("self_cpu_time_total"))
        return [dict(name=event.key, self_ms=event.self_cpu_time_total * 1e-3, calls=event.count) for event in top]

    run_probe(ctx, m06.registry, PROBES, "profile", top_operators=top_operators)
    full_marks(ctx, m06.registry, "profile")


def test_profile_with_a_schedule(ctx):
    """A schedule does the warm-up: one step under the profiler, not recorded, then `steps` active ones."""
    from torch.profiler import ProfilerActivity, profile, schedule

    def top_operators(step, steps, k=5):
        plan = schedule(wait=0, warmup=1, active=steps, repeat=1)
        with profile(activities=[ProfilerActivity.CPU], schedule=plan) as prof:
            for _ in range(1 + steps):
                step()
                prof.step()
        averages = list(prof.key_averages())
        averages.sort(key=lambda event: -event.self_cpu_time_total)
        return [{"name": e.key, "self_ms": e.self_cpu_time_total / 1000.0, "calls": int(e.count)} for e in averages][:k]

    run_probe(ctx, m06.registry, PROBES, "profile", top_operators=top_operators)
    full_marks(ctx, m06.registry, "profile")


# -- torch_compile ---------------------------------------------------------------------------------------------------
class ClampedNet(nn.Module):
    """A new network with the guarded one's weights: its blocks clip with torch.where, never reading a value."""

    def __init__(self, guarded: fastnet.FastNet, limit: float = fastnet.GuardedBlock.limit):
        super().__init__()
        self.inner, self.limit = copy.deepcopy(guarded), limit

    def forward(self, x):
        h = self.inner.stem(x)
        for block in self.inner.blocks:
            h = fastnet.Block.forward(block, h)
            h = torch.where(h.abs() > self.limit, h.sign() * self.limit, h)
        return self.inner.head(self.inner.norm(h))


def test_torch_compile_with_perf_counter_ns_and_a_new_module(ctx):
    def median_seconds(fn, *args, repeats=20):
        for _ in range(2):  # two warm-up calls
            fn(*args)
        samples_ns = []
        for _ in range(repeats):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter_ns()
            fn(*args)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            samples_ns.append(time.perf_counter_ns() - start)
        return statistics.median(samples_ns) / 1e9

    run_probe(ctx, m06.registry, PROBES, "torch_compile", median_seconds=median_seconds, make_steady=ClampedNet)
    full_marks(ctx, m06.registry, "torch_compile")


def test_make_steady_as_a_fastnet_with_clamping_blocks_and_the_state_dict_copied(ctx):
    class ClampBlock(fastnet.Block):
        def forward(self, h):
            return torch.clamp(super().forward(h), min=-4.0, max=4.0)

    def make_steady(model):
        steady = fastnet.FastNet(n_in=model.stem.in_features, width=model.stem.out_features, depth=len(model.blocks),
                                 n_out=model.head.out_features, block=ClampBlock)
        steady.load_state_dict(model.state_dict())
        return steady.eval()

    def median_seconds(fn, *args, repeats=20):
        fn(*args)
        durations = []
        for _ in range(repeats):
            begin = time.monotonic()
            fn(*args)
            durations.append(time.monotonic() - begin)
        return float(np.percentile(durations, 50))

    run_probe(ctx, m06.registry, PROBES, "torch_compile", median_seconds=median_seconds, make_steady=make_steady)
    full_marks(ctx, m06.registry, "torch_compile")


# -- bf16 ------------------------------------------------------------------------------------------------------------
def test_bf16_with_autocast_defaults_and_allclose(ctx):
    """torch.autocast("cpu") casts to bfloat16 by default; the model's output under inference_mode, converted with
    .to(torch.float32); agreement elementwise with torch.allclose."""
    def autocast_logits(model, x):
        with torch.inference_mode(), torch.autocast("cpu"):
            logits = model(x)
        return logits.to(torch.float32)

    def agrees(reference, candidate):
        return torch.allclose(candidate.float(), reference.float(), atol=1e-2, rtol=1e-2)

    run_probe(ctx, m06.registry, PROBES, "bf16", autocast_logits=autocast_logits, agrees=agrees,
              train_step_fp16=train_step_fp16)
    full_marks(ctx, m06.registry, "bf16")


def test_bf16_with_a_relative_error_on_the_scale(ctx):
    """autocast as a decorator; agreement as the largest error relative to the logits' scale, in NumPy."""
    def autocast_logits(model, x):
        @torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        def run(batch):
            return model(batch)
        with torch.no_grad():
            return run(x).float()

    def agrees(reference, candidate):
        ref, cand = reference.numpy().astype(np.float64), candidate.numpy().astype(np.float64)
        return float(np.max(np.abs(cand - ref)) / max(np.max(np.abs(ref)), 1.0)) < 0.02

    run_probe(ctx, m06.registry, PROBES, "bf16", autocast_logits=autocast_logits, agrees=agrees,
              train_step_fp16=train_step_fp16)
    full_marks(ctx, m06.registry, "bf16")


# -- memory ----------------------------------------------------------------------------------------------------------
class SavedBytes:
    """saved_tensors_hooks as a context manager of its own: the sizes listed (nbytes), summed at the end."""

    def __init__(self):
        self.sizes = []
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda packed: packed)

    def pack(self, tensor):
        self.sizes.append(tensor.nbytes)
        return tensor

    def __enter__(self):
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self.hooks.__exit__(*exc)


def test_memory_with_nbytes_and_partial_blocks(ctx):
    def saved_bytes(forward, x):
        with torch.enable_grad(), SavedBytes() as counter:
            forward(x)
        return sum(counter.sizes)

    def checkpointed_forward(model, x):
        run = functools.partial(torch.utils.checkpoint.checkpoint, use_reentrant=False)
        h = model.stem(x)
        for index in range(len(model.blocks)):
            h = run(model.blocks[index], h)
        return model.head(model.norm(h))

    run_probe(ctx, m06.registry, PROBES, "memory", saved_bytes=saved_bytes, checkpointed_forward=checkpointed_forward,
              peak_cuda_bytes=peak_cuda_bytes)
    full_marks(ctx, m06.registry, "memory")


def test_memory_with_reentrant_checkpoints_and_lambdas(ctx):
    """The reentrant checkpoint (the older default), each block wrapped in a lambda."""
    def saved_bytes(forward, x):
        sizes = []

        def pack(tensor):
            sizes.append(tensor.element_size() * tensor.nelement())
            return tensor
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            forward(x)
        return int(np.sum(sizes, dtype=np.int64))

    def checkpointed_forward(model, x):
        h = model.stem(x)
        for block in model.blocks:
            h = torch.utils.checkpoint.checkpoint(lambda t, block=block: block(t), h, use_reentrant=True)
        return model.head(model.norm(h))

    run_probe(ctx, m06.registry, PROBES, "memory", saved_bytes=saved_bytes, checkpointed_forward=checkpointed_forward,
              peak_cuda_bytes=peak_cuda_bytes)
    full_marks(ctx, m06.registry, "memory")


# -- latency ---------------------------------------------------------------------------------------------------------
def test_latency_with_statistics_quantiles_and_a_sorted_search(ctx):
    def p99(latencies):
        return statistics.quantiles(latencies, n=100)[98]

    def largest_batch(curve, budget_ms):
        for batch in sorted(curve, reverse=True):
            if p99(curve[batch]) <= budget_ms:
                return batch
        return None

    run_probe(ctx, m06.registry, PROBES, "latency", p99=p99, largest_batch=largest_batch)
    full_marks(ctx, m06.registry, "latency")


def test_latency_with_the_higher_quantile_and_a_filtered_max(ctx):
    def p99(latencies):
        return float(np.quantile(np.asarray(latencies), 0.99, method="higher"))

    def largest_batch(curve, budget_ms):
        return max((b for b, samples in curve.items() if p99(samples) <= budget_ms), default=None)

    run_probe(ctx, m06.registry, PROBES, "latency", p99=p99, largest_batch=largest_batch)
    full_marks(ctx, m06.registry, "latency")


def test_latency_with_a_nearest_rank_percentile(ctx):
    """The nearest-rank definition: the smallest value with at least 99% of the samples at or below it."""
    def p99(latencies):
        ordered = sorted(latencies)
        return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]

    def largest_batch(curve, budget_ms):
        meeting = {batch: p99(samples) for batch, samples in curve.items() if p99(samples) <= budget_ms}
        return sorted(meeting)[-1] if meeting else None

    run_probe(ctx, m06.registry, PROBES, "latency", p99=p99, largest_batch=largest_batch)
    full_marks(ctx, m06.registry, "latency")
