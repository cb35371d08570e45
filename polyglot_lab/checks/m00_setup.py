"""The checks of module 00_setup that a learner runs in the notebook (`grader.check(...)`), on the
core in polyglot_lab.checking. Written by `make notebooks` from the `# <notebook>` blocks of
graders/checks/m00_setup.py: edit those, not this file. The checks that run only at submission are not here."""
from __future__ import annotations

import numpy as np
from polyglot_lab.probes.m00_setup import (  # the probes, in the kernel side of the module
    devices,
    seeding,
    threads,
    versions,
)

from polyglot_lab.checking import CheckContext, CheckFailed, Registry


registry = Registry("00_setup")
FRAMEWORKS = ("torch", "tensorflow", "keras", "onnx", "onnxruntime")


def expected_versions() -> dict[str, str]:
    import importlib
    return {name: importlib.import_module(name).__version__ for name in FRAMEWORKS}


@registry.check("versions", "all_five_correct")
def all_five_correct(ctx: CheckContext):
    found = ctx.outputs(versions)["versions"]
    expected = expected_versions()
    missing = [k for k in FRAMEWORKS if k not in found]
    if missing:
        raise CheckFailed(f"`versions` has no entry for {', '.join(missing)}.",
                          expected=f"keys {', '.join(FRAMEWORKS)}", found=f"keys {', '.join(found) or '(none)'}")
    wrong = {k: found[k] for k in FRAMEWORKS if found[k] != expected[k]}
    if wrong:
        raise CheckFailed("Some versions are not the installed ones.",
                          expected=", ".join(f"{k}={expected[k]}" for k in wrong),
                          found=", ".join(f"{k}={v}" for k, v in wrong.items()),
                          hint="Read them from the modules themselves, e.g. `tensorflow.__version__`.")
    return "all five versions match the installed frameworks"


@registry.check("devices", "pick_device")
def pick_device(ctx: CheckContext):
    import torch
    picked = ctx.outputs(devices)["picked"]
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if picked != expected:
        raise CheckFailed("pick_device() chose the wrong device.", expected=repr(expected), found=repr(picked),
                          hint="'cuda' if torch.cuda.is_available() else 'cpu'")
    return f"pick_device() chose {picked!r}"


GENERATORS = ("python", "numpy", "torch", "tensorflow")


@registry.inputs("seeding")
def seeding_inputs(ctx: CheckContext) -> dict:
    seed, other = (int(s) for s in ctx.rng("seeding").choice(2**31 - 1, size=2, replace=False))
    return {"seed": np.int64(seed), "other_seed": np.int64(other)}


@registry.check("seeding", "reproducible")
def reproducible(ctx: CheckContext):
    out = ctx.outputs(seeding)
    first, again = out["first"], out["again"]
    not_repeated = [g for g in GENERATORS if not np.array_equal(first.get(g), again.get(g))]
    if not_repeated:
        raise CheckFailed(f"The same seed gave different draws from: {', '.join(not_repeated)} (not seeded).",
                          expected="identical draws after seed_everything(s) twice",
                          found=f"{not_repeated[0]}: {first.get(not_repeated[0])} then {again.get(not_repeated[0])}",
                          hint="Seed all four: random.seed, np.random.seed, torch.manual_seed, tf.random.set_seed "
                               "(keras.utils.set_random_seed does the first two and TensorFlow).")
    return "all four generators repeat for one seed"


@registry.check("seeding", "deterministic_algorithms")
def deterministic_algorithms(ctx: CheckContext):
    out = ctx.outputs(seeding)
    off = [name for name, key in (("torch", "torch_deterministic"), ("TensorFlow", "tensorflow_deterministic"))
           if not out[key]]
    if off:
        raise CheckFailed(f"Deterministic algorithms are off in {' and '.join(off)}.",
                          hint="torch.use_deterministic_algorithms(True); tf.config.experimental.enable_op_determinism()")
    return "deterministic algorithms are on in torch and TensorFlow"


@registry.inputs("threads")
def threads_inputs(ctx: CheckContext) -> dict:
    # 2..256: a hard-coded count passes by chance once in 255 runs; threads start only when an op runs, and the
    # probe restores the notebook's count before any does.
    return {"n": np.int64(ctx.rng("threads").integers(2, 257))}


@registry.check("threads", "torch_threads")
def torch_threads(ctx: CheckContext):
    n = int(threads_inputs(ctx)["n"])
    found = ctx.outputs(threads)["torch_threads"]
    if found != n:
        raise CheckFailed(f"After configure_threads({n}), torch uses {found} threads.", expected=str(n), found=str(found),
                          hint="torch.set_num_threads(n)")
    return f"torch uses {n} threads"


@registry.check("threads", "ort_options")
def ort_options(ctx: CheckContext):
    n = int(threads_inputs(ctx)["n"])
    out = ctx.outputs(threads)
    if not out["options_type"].endswith("SessionOptions"):
        raise CheckFailed("configure_threads must return an onnxruntime.SessionOptions.",
                          expected="onnxruntime.SessionOptions", found=out["options_type"])
    found = (out["intra_op_num_threads"], out["inter_op_num_threads"])
    if found != (n, 1):
        raise CheckFailed("The session options ask for the wrong numbers of threads.",
                          expected=f"intra_op_num_threads={n}, inter_op_num_threads=1",
                          found=f"intra_op_num_threads={found[0]}, inter_op_num_threads={found[1]}",
                          hint="options.intra_op_num_threads = n; options.inter_op_num_threads = 1")
    return f"SessionOptions: {n} intra-op thread(s), 1 inter-op thread"
