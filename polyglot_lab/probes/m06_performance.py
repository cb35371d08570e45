"""The kernel side of module 06_performance: one probe per exercise, run in the learner's kernel
after the exercise's cells. Written by `make notebooks` from the `# <kernel>` blocks of
graders/checks/m06_performance.py, each in its exercise's section beside the inputs and checks:
edit those, not this file."""
import time

import numpy as np

from polyglot_lab.probe import ARRAY, ARRAYS, VALUE, need, probe


def _model(io, guarded: bool = False):
    from polyglot_lab import fastnet
    config = {k: int(v) for k, v in io.inputs["config"].items()}
    return fastnet.build(config, int(io.inputs["seed"]), guarded=guarded)


def _tensor(array):
    import torch
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and bool(np.isfinite(value))


def _number(value, kind=float):
    """kind(value) for a finite number (NumPy's included), else None: what a probe keeps of a learner's figure."""
    return kind(value) if _is_number(value) else None


@probe(inference=VALUE, training=VALUE)
def profile(ns, io):
    import torch

    from polyglot_lab import fastnet
    model, steps = _model(io), int(io.inputs["steps"])
    x, y = _tensor(io.inputs["x"]), torch.from_numpy(np.asarray(io.inputs["y"], np.int64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def inference():
        with torch.no_grad():
            return model.eval()(x)

    def training():
        return fastnet.train_step(model, optimizer, x, y)

    top_operators = need(ns, "top_operators")

    def rows(step):
        return [{"name": str(r.get("name")), "self_ms": _number(r.get("self_ms")), "calls": _number(r.get("calls"), int)}
                for r in list(top_operators(step, steps))[:20] if isinstance(r, dict)]
    io.save(inference=rows(inference), training=rows(training))


@probe(median_s=VALUE, calls=VALUE, breaks=VALUE, y=ARRAY, gpu=VALUE)
def torch_compile(ns, io):
    import torch

    delay, first, repeats = float(io.inputs["delay_s"]), float(io.inputs["first_s"]), int(io.inputs["repeats"])
    calls: list[int] = []

    def slow_first():  # the first call pays a one-off cost, as a compiling call does
        time.sleep(first if not calls else delay)
        calls.append(1)
    median_seconds = need(ns, "median_seconds")
    found = median_seconds(slow_first, repeats=repeats)
    steady = need(ns, "make_steady")(_model(io, guarded=True))
    x = _tensor(io.inputs["x"])
    explained = torch._dynamo.explain(steady)(x)
    torch._dynamo.reset()
    with torch.no_grad():
        y = steady(x)
    gpu = None
    if torch.cuda.is_available():  # a queue of kernels: timed without synchronising, it looks almost free
        a = torch.randn(4096, 4096, device="cuda")

        def queued():
            for _ in range(8):
                a @ a
        torch.cuda.synchronize()
        started = time.perf_counter()
        queued()
        torch.cuda.synchronize()
        gpu = {"learner_s": float(median_seconds(queued, repeats=5)), "synchronised_s": time.perf_counter() - started}
    io.save(median_s=_number(found), calls=len(calls),
            breaks=len(explained.break_reasons), y=y, gpu=gpu)


@probe(figures=VALUE)
def compile_speedup(ns, io):
    figures = dict(need(ns, "compile_figures"))
    speedup = {str(k): float(v) for k, v in dict(figures.get("speedup") or {}).items() if _is_number(v)}
    io.save(figures={"speedup": speedup, "compile_s": _number(figures.get("compile_s")),
                     "max_abs_diff": _number(figures.get("max_abs_diff"))})


@probe(y=ARRAY, dtype=VALUE, agrees_bf16=VALUE, agrees_wrong=VALUE, gpu=VALUE)
def bf16(ns, io):
    import torch

    model, x = _model(io), _tensor(io.inputs["x"])
    y = need(ns, "autocast_logits")(model, x)
    agrees = need(ns, "agrees")
    ref, rounded, wrong = (_tensor(io.inputs[k]) for k in ("reference", "rounded", "wrong"))
    gpu = None
    if torch.cuda.is_available():
        gpu = fp16_step(need(ns, "train_step_fp16"), _model(io).cuda(), x.cuda())
    io.save(y=y.detach().float() if isinstance(y, torch.Tensor) else y,
            dtype=str(getattr(y, "dtype", type(y).__name__)),
            agrees_bf16=bool(agrees(ref, rounded)), agrees_wrong=bool(agrees(ref, wrong)), gpu=gpu)


def fp16_step(train_step_fp16, model, x) -> dict:
    """Three steps of the learner's float16 training step on the GPU, with a GradScaler whose calls are counted."""
    import torch
    scaler = torch.amp.GradScaler("cuda")
    used = {"scale": 0, "step": 0, "update": 0}
    for name in used:
        method = getattr(scaler, name)

        def counted(*args, _method=method, _name=name, **kwargs):
            used[_name] += 1
            return _method(*args, **kwargs)
        setattr(scaler, name, counted)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    y = torch.zeros(len(x), dtype=torch.long, device=x.device)
    for _ in range(3):
        train_step_fp16(model, optimizer, scaler, x, y)
    changed = any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    return {**used, "changed": changed, "finite": finite}


@probe(figures=VALUE)
def bf16_speedup(ns, io):
    figures = dict(need(ns, "bf16_figures"))
    io.save(figures={k: _number(figures.get(k)) for k in ("speedup", "max_abs_diff")})


@probe(plain_bytes=VALUE, checkpointed_bytes=VALUE, logits=ARRAY, grads=ARRAYS, recomputed=VALUE, gpu=VALUE)
def memory(ns, io):
    import torch
    import torch.nn.functional as F

    saved_bytes, checkpointed_forward = need(ns, "saved_bytes"), need(ns, "checkpointed_forward")
    model = _model(io).train()
    small, large = _tensor(io.inputs["x_small"]), _tensor(io.inputs["x_large"])
    plain = [int(saved_bytes(model, x)) for x in (small, large)]
    checkpointed = int(saved_bytes(lambda x: checkpointed_forward(model, x), small))
    # Each block's forward calls, counted as they start (a checkpoint's recomputation stops once it has what backward
    # needs, before the forward returns), while backward runs: a checkpoint recomputes its block there.
    calls, phase = {"forward": 0, "backward": 0}, ["forward"]
    hooks = [block.register_forward_pre_hook(lambda *_: calls.__setitem__(phase[0], calls[phase[0]] + 1))
             for block in model.blocks]
    model.zero_grad(set_to_none=True)
    logits = checkpointed_forward(model, small)
    loss = F.cross_entropy(logits, torch.from_numpy(np.asarray(io.inputs["y"], np.int64)))
    phase[0] = "backward"
    loss.backward()
    for hook in hooks:
        hook.remove()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    gpu = None
    if torch.cuda.is_available():
        peak = need(ns, "peak_cuda_bytes")
        cuda_model = _model(io).cuda().train()
        gpu = [int(peak(lambda x=x: F.cross_entropy(cuda_model(x), torch.zeros(len(x), dtype=torch.long,
                                                                                 device="cuda")).backward()))
               for x in (small.cuda(), large.cuda())]
    io.save(plain_bytes=plain, checkpointed_bytes=checkpointed, logits=logits.detach(), grads=grads,
            recomputed=dict(calls), gpu=gpu)


@probe(p99=VALUE, chosen=VALUE)
def latency(ns, io):
    p99, largest_batch = need(ns, "p99"), need(ns, "largest_batch")
    found = [p99(list(map(float, samples))) for samples in io.inputs["samples"]]
    chosen = []
    for case in io.inputs["curves"]:
        curve = {int(batch): list(map(float, samples)) for batch, samples in case["curve"]}
        choice = largest_batch(curve, float(case["budget_ms"]))
        chosen.append(None if choice is None else int(choice))
    io.save(p99=[_number(v) for v in found], chosen=chosen)


@probe(figures=VALUE)
def budget(ns, io):
    figures = dict(need(ns, "latency_figures"))
    curves = {key: {str(t): {str(b): float(v) for b, v in dict(row).items() if _is_number(v)}
                    for t, row in dict(figures.get(key) or {}).items()} for key in ("p50_ms", "p99_ms")}
    io.save(figures={**curves, "chosen_batch": _number(figures.get("chosen_batch"), int),
                     "budget_ms": float(need(ns, "BUDGET_MS"))})
