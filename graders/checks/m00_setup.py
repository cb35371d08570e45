"""Checks for module 00 (setup). Expected values come from the grader's own imports, at grade time."""
from __future__ import annotations

# <kernel>  imports of the probes (the kernel side, written to the probes file by `make notebooks`)
import random

import numpy as np

from polyglot_lab.probe import ARRAYS, VALUE, need, probe
# </kernel>

# <notebook>
from polyglot_lab.checking import CheckContext, CheckFailed, Registry
# </notebook>
from polyglot_lab.checking.compare import close

# <notebook>
registry = Registry("00_setup")
FRAMEWORKS = ("torch", "tensorflow", "keras", "onnx", "onnxruntime")


def expected_versions() -> dict[str, str]:
    import importlib
    return {name: importlib.import_module(name).__version__ for name in FRAMEWORKS}

# </notebook>


def expected_devices() -> dict[str, list[str]]:
    """The reference detection (also what `make doctor` prints)."""
    import onnxruntime
    import tensorflow as tf
    import torch

    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "torch": ["cpu", *cuda],
        "tensorflow": [d.device_type for d in tf.config.list_physical_devices()],
        "onnxruntime": list(onnxruntime.get_available_providers()),
    }


# <kernel>  helpers of this module's probes
def draws() -> dict:
    """Four numbers from each of the four generators a course notebook uses."""
    import tensorflow as tf
    import torch

    return {
        "python": np.array([random.random() for _ in range(4)]),
        "numpy": np.random.rand(4),
        "torch": torch.rand(4).numpy().astype(np.float64),
        "tensorflow": tf.random.uniform([4]).numpy().astype(np.float64),
    }
# </kernel>


# -- versions --------------------------------------------------------------------------------
# <kernel>
@probe(versions=VALUE)
def versions(ns, io):
    io.save(versions={str(k): str(v) for k, v in dict(need(ns, "versions")).items()})
# </kernel>


# <notebook>
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
# </notebook>


# -- devices ---------------------------------------------------------------------------------
# <kernel>
@probe(devices=VALUE, picked=VALUE)
def devices(ns, io):
    found = need(ns, "detect_devices")()
    io.save(devices={str(k): [str(d) for d in v] for k, v in dict(found).items()},
            picked=str(need(ns, "pick_device")()))
# </kernel>


# The reference detection is the exercise's answer: the device lists are checked at submission.
@registry.check("devices", "cpu_view")
def cpu_view(ctx: CheckContext):
    found = ctx.outputs(devices)["devices"]
    expected = expected_devices()
    for framework in ("torch", "tensorflow", "onnxruntime"):
        if framework not in found:
            raise CheckFailed(f"detect_devices() has no '{framework}' entry.", expected=str(expected), found=str(found))
    if "cpu" not in found["torch"]:
        raise CheckFailed("torch's list must include 'cpu'.", expected=str(expected["torch"]), found=str(found["torch"]))
    # A device the framework does not see is a list typed by hand (its GPUs missing cost gpu_view only).
    unseen = [d for d in found["torch"] if d not in expected["torch"]]
    if unseen:
        raise CheckFailed(f"torch's list names devices torch does not see: {', '.join(unseen)}.",
                          expected=str(expected["torch"]), found=str(found["torch"]),
                          hint="Ask torch: 'cuda:i' for i in range(torch.cuda.device_count()), only when "
                               "torch.cuda.is_available().")
    if "CPU" not in found["tensorflow"]:
        raise CheckFailed("TensorFlow's list must include its 'CPU' device.",
                          expected=str(expected["tensorflow"]), found=str(found["tensorflow"]))
    unseen = [d for d in found["tensorflow"] if d not in expected["tensorflow"]]
    if unseen:
        raise CheckFailed(f"TensorFlow's list names device types TensorFlow does not see: {', '.join(unseen)}.",
                          expected=str(expected["tensorflow"]), found=str(found["tensorflow"]),
                          hint="[d.device_type for d in tf.config.list_physical_devices()]")
    if sorted(found["onnxruntime"]) != sorted(expected["onnxruntime"]):
        raise CheckFailed("The ONNX Runtime providers differ from onnxruntime.get_available_providers().",
                          expected=str(expected["onnxruntime"]), found=str(found["onnxruntime"]))
    return "the CPU is seen by torch, TensorFlow and ONNX Runtime"


# <notebook>
@registry.check("devices", "pick_device")
def pick_device(ctx: CheckContext):
    import torch
    picked = ctx.outputs(devices)["picked"]
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if picked != expected:
        raise CheckFailed("pick_device() chose the wrong device.", expected=repr(expected), found=repr(picked),
                          hint="'cuda' if torch.cuda.is_available() else 'cpu'")
    return f"pick_device() chose {picked!r}"
# </notebook>


@registry.check("devices", "gpu_view")
def gpu_view(ctx: CheckContext):
    found = ctx.outputs(devices)["devices"]
    expected = expected_devices()
    missing = [d for d in expected["torch"] if d not in found.get("torch", [])]
    if missing:
        raise CheckFailed(f"torch's device list misses {', '.join(missing)}.", expected=str(expected["torch"]),
                          found=str(found.get("torch")), hint="'cuda:i' for i in range(torch.cuda.device_count())")
    if "GPU" in expected["tensorflow"] and "GPU" not in found.get("tensorflow", []):
        raise CheckFailed("TensorFlow's GPU is missing from the list.", expected=str(expected["tensorflow"]),
                          found=str(found.get("tensorflow")))
    return f"GPUs listed: torch {expected['torch'][1:]}"


# -- seeding ---------------------------------------------------------------------------------
# <notebook>
GENERATORS = ("python", "numpy", "torch", "tensorflow")
# </notebook>


# <kernel>
@probe(first=ARRAYS, again=ARRAYS, other=ARRAYS, torch_deterministic=VALUE, tensorflow_deterministic=VALUE)
def seeding(ns, io):
    import torch
    from tensorflow.python.framework import config as tf_config

    seed_everything = need(ns, "seed_everything")
    # Off first: what is on afterwards was turned on by seed_everything, not by an earlier cell.
    torch.use_deterministic_algorithms(False)
    tf_config.disable_op_determinism()
    seed, other_seed = int(io.inputs["seed"]), int(io.inputs["other_seed"])
    runs = {}
    for label, s in (("first", seed), ("again", seed), ("other", other_seed)):
        seed_everything(s)
        runs[label] = draws()  # {generator: four draws}
    io.save(**runs,
            torch_deterministic=bool(torch.are_deterministic_algorithms_enabled()),
            tensorflow_deterministic=bool(tf_config.is_op_determinism_enabled()))
# </kernel>


# <notebook>
@registry.inputs("seeding")
def seeding_inputs(ctx: CheckContext) -> dict:
    seed, other = (int(s) for s in ctx.rng("seeding").choice(2**31 - 1, size=2, replace=False))
    return {"seed": np.int64(seed), "other_seed": np.int64(other)}
# </notebook>


def reference_draws(seed: int) -> dict[str, np.ndarray]:
    import tensorflow as tf
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    tf.random.set_seed(seed)
    return draws()


# <notebook>
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
# </notebook>


@registry.check("seeding", "matches_reference")
def matches_reference(ctx: CheckContext):
    """Judges only the generators that repeat: one left unseeded costs `reproducible`, not this check too."""
    out = ctx.outputs(seeding)
    seed = int(seeding_inputs(ctx)["seed"])
    expected = reference_draws(seed)
    first, again, other = out["first"], out["again"], out["other"]
    repeating = [g for g in GENERATORS if g in first and np.array_equal(first[g], again.get(g))]
    if not repeating:
        raise CheckFailed("No generator repeats after seed_everything(seed), so none gives the draws of `seed`.",
                          hint="Seed each generator with the `seed` argument.")
    differ = [g for g in repeating if not close(first[g], expected[g], atol=1e-7, rtol=0.0)]
    if not differ:
        return f"the draws equal the grader's for the same seed ({', '.join(repeating)})"
    ignored = [g for g in differ if np.array_equal(first[g], other.get(g))]
    if ignored:
        raise CheckFailed(f"The seed is ignored by: {', '.join(ignored)}: another seed gives the same draws "
                          "(a constant seed?).", expected=f"draws that change with the seed ({seed})",
                          found="the same draws for two seeds", hint="Use the `seed` argument, not a constant.")
    raise CheckFailed(f"Draws after seed_everything(seed) differ from seeding with `seed` directly: {', '.join(differ)}.",
                      expected=f"{differ[0]}: {np.round(expected[differ[0]], 6).tolist()}",
                      found=f"{differ[0]}: {np.round(first[differ[0]], 6).tolist()}",
                      hint="Pass `seed` itself to every generator (not seed + 1, not a hash of it).")


# <notebook>
@registry.check("seeding", "deterministic_algorithms")
def deterministic_algorithms(ctx: CheckContext):
    out = ctx.outputs(seeding)
    off = [name for name, key in (("torch", "torch_deterministic"), ("TensorFlow", "tensorflow_deterministic"))
           if not out[key]]
    if off:
        raise CheckFailed(f"Deterministic algorithms are off in {' and '.join(off)}.",
                          hint="torch.use_deterministic_algorithms(True); tf.config.experimental.enable_op_determinism()")
    return "deterministic algorithms are on in torch and TensorFlow"
# </notebook>


# -- threads ---------------------------------------------------------------------------------
# <kernel>
@probe(torch_threads=VALUE, options_type=VALUE, intra_op_num_threads=VALUE, inter_op_num_threads=VALUE)
def threads(ns, io):
    import torch

    before = torch.get_num_threads()
    n = int(io.inputs["n"])  # at least 2: from 1 thread, a function that leaves torch alone shows
    torch.set_num_threads(1)
    try:
        options = need(ns, "configure_threads")(n)
        io.save(torch_threads=torch.get_num_threads(),
                options_type=type(options).__module__ + "." + type(options).__name__,
                intra_op_num_threads=getattr(options, "intra_op_num_threads", None),
                inter_op_num_threads=getattr(options, "inter_op_num_threads", None))
    finally:
        torch.set_num_threads(before)  # leave the notebook as fast as it was
# </kernel>


# <notebook>
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
# </notebook>
