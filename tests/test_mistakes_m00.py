"""Module 00's checks catch what they claim to: on crafted probe outputs, and mutants through the real probe."""
import random

import numpy as np
import pytest

from graders.checks import CheckContext
from graders.checks import m00_setup as m00
from mistakes import costs_only, craft, fails_with, run_probe


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=3, device="cpu")


def test_hand_typed_version_is_caught(ctx):
    versions = m00.expected_versions()
    craft(ctx, m00.versions, versions=versions)
    assert m00.all_five_correct(ctx)
    craft(ctx, m00.versions, versions={**versions, "keras": "3.0.0"})
    failure = fails_with(m00.all_five_correct, ctx, "not the installed ones")
    assert "keras=3.0.0" in failure.found


def test_unseeded_generator_is_named(ctx):
    draws = {g: np.arange(4.0) for g in m00.GENERATORS}
    runs = {label: {g: v + shift for g, v in draws.items()} for label, shift in (("first", 0), ("again", 0), ("other", 1))}
    runs["again"]["torch"] = runs["first"]["torch"] + 0.5  # torch never seeded
    craft(ctx, m00.seeding, **runs, torch_deterministic=True, tensorflow_deterministic=False)
    fails_with(m00.reproducible, ctx, "torch")
    fails_with(m00.deterministic_algorithms, ctx, "TensorFlow")


def test_session_options_threads(ctx):
    n = int(m00.threads_inputs(ctx)["n"])
    craft(ctx, m00.threads, torch_threads=n, options_type="onnxruntime.capi.SessionOptions",
          intra_op_num_threads=n, inter_op_num_threads=0)
    assert m00.torch_threads(ctx)
    fails_with(m00.ort_options, ctx, "wrong numbers of threads")


def test_device_lists_and_the_pick_are_held_to_what_the_frameworks_see(ctx):
    expected = m00.expected_devices()
    craft(ctx, m00.devices, devices=expected, picked="cpu")
    for check in (m00.cpu_view, m00.pick_device, m00.gpu_view):
        assert check(ctx)
    craft(ctx, m00.devices, devices={"torch": ["cpu"], "tensorflow": ["CPU"]}, picked="cpu")
    fails_with(m00.cpu_view, ctx, "no 'onnxruntime' entry")
    craft(ctx, m00.devices, devices={**expected, "onnxruntime": ["CUDAExecutionProvider"]}, picked="cpu")
    fails_with(m00.cpu_view, ctx, "providers differ")  # a list typed by hand, not asked of ONNX Runtime
    craft(ctx, m00.devices, devices={**expected, "torch": ["cpu", "cuda:0"]}, picked="cuda")
    fails_with(m00.pick_device, ctx, "wrong device")     # on this CPU machine: 'cuda' hard-coded
    fails_with(m00.cpu_view, ctx, "torch does not see")  # an invented GPU is the CPU view's mistake
    craft(ctx, m00.devices, devices={**expected, "torch": ["cpu"]}, picked="cpu")
    if expected["torch"][1:]:  # on a GPU machine: the GPU left out costs gpu_view only
        fails_with(m00.gpu_view, ctx, "misses")


def test_draws_must_equal_seeding_with_the_seed_itself(ctx):
    seed = int(m00.seeding_inputs(ctx)["seed"])
    right = m00.reference_draws(seed)
    other = m00.reference_draws(seed + 1)  # seed_everything(seed + 1), or a constant seed: repeatable, but not `seed`
    runs = {"first": other, "again": other, "other": m00.reference_draws(seed + 2)}
    craft(ctx, m00.seeding, **runs, torch_deterministic=True, tensorflow_deterministic=True)
    assert m00.reproducible(ctx)
    fails_with(m00.matches_reference, ctx, "differ from seeding with `seed` directly")
    craft(ctx, m00.seeding, **{**runs, "first": right, "again": right}, torch_deterministic=True,
          tensorflow_deterministic=True)
    assert m00.matches_reference(ctx)


# -- mutants: one requirement violated, through the real probe -------------------------------------
PROBES = "polyglot_lab.probes.m00_setup"


def probe_with(ctx, exercise, **namespace):
    return run_probe(ctx, m00.registry, PROBES, exercise, **namespace)


def test_a_version_typed_by_hand_costs_only_the_versions_check(ctx):
    versions = m00.expected_versions()
    probe_with(ctx, "versions", versions={**versions, "onnx": "1.0.0"})
    costs_only(ctx, m00.registry, "versions", "all_five_correct", "not the installed ones")
    probe_with(ctx, "versions", versions={k: v for k, v in versions.items() if k != "onnxruntime"})
    costs_only(ctx, m00.registry, "versions", "all_five_correct", "no entry for onnxruntime")


def detect_right():
    import onnxruntime
    import tensorflow as tf
    return {"torch": ["cpu"], "tensorflow": [d.device_type for d in tf.config.list_physical_devices()],
            "onnxruntime": onnxruntime.get_available_providers()}


@pytest.mark.skipif(bool(m00.expected_devices()["torch"][1:]), reason="a GPU is present: 'cuda' is right there")
def test_devices_typed_by_hand_cost_only_their_check(ctx):
    probe_with(ctx, "devices", detect_devices=lambda: {**detect_right(), "torch": ["cpu", "cuda:0"]},
               pick_device=lambda: "cpu")
    costs_only(ctx, m00.registry, "devices", "cpu_view", "torch does not see: cuda:0")
    probe_with(ctx, "devices", detect_devices=lambda: {**detect_right(), "tensorflow": ["CPU", "GPU"]},
               pick_device=lambda: "cpu")
    costs_only(ctx, m00.registry, "devices", "cpu_view", "TensorFlow does not see: GPU")
    probe_with(ctx, "devices", detect_devices=detect_right, pick_device=lambda: "cuda")
    costs_only(ctx, m00.registry, "devices", "pick_device", "wrong device")


def seeder(skip=(), offset=0, constant=None, deterministic=("torch", "tensorflow")):
    """seed_everything with one mistake: generators in `skip` never seeded, the seed shifted or replaced."""
    import tensorflow as tf
    import torch

    def seed_everything(seed):
        seed = constant if constant is not None else seed + offset
        for name, seed_fn in (("python", random.seed), ("numpy", np.random.seed), ("torch", torch.manual_seed),
                              ("tensorflow", tf.random.set_seed)):
            if name not in skip:
                seed_fn(seed)
        if "torch" in deterministic:
            torch.use_deterministic_algorithms(True)
        if "tensorflow" in deterministic:
            tf.config.experimental.enable_op_determinism()
    return seed_everything


@pytest.mark.parametrize("mistake, failing, words", [
    (dict(skip=("torch",)), "reproducible", ("different draws from: torch", "not seeded")),
    (dict(offset=1), "matches_reference", ("differ from seeding with `seed` directly",)),
    (dict(constant=42), "matches_reference", ("seed is ignored", "a constant seed")),
    (dict(deterministic=("torch",)), "deterministic_algorithms", ("off in TensorFlow",)),
])
def test_seeding_mutants_cost_only_their_check(ctx, mistake, failing, words):
    probe_with(ctx, "seeding", seed_everything=seeder(**mistake))
    costs_only(ctx, m00.registry, "seeding", failing, *words)


def test_threads_range_is_wide(ctx):
    drawn = {int(m00.threads_inputs(CheckContext(ctx.workdir, seed=s, device="cpu"))["n"]) for s in range(300)}
    assert min(drawn) >= 2 and len(drawn) > 150  # a hard-coded count passes well under 1% of runs


def test_threads_mutants_cost_only_their_check(ctx):
    import onnxruntime
    import torch

    def ort_forgets_inter_op(n):
        torch.set_num_threads(n)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = n
        return options

    def torch_left_alone(n):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = n, 1
        return options

    probe_with(ctx, "threads", configure_threads=ort_forgets_inter_op)
    costs_only(ctx, m00.registry, "threads", "ort_options", "wrong numbers of threads")
    probe_with(ctx, "threads", configure_threads=torch_left_alone)
    costs_only(ctx, m00.registry, "threads", "torch_threads", "torch uses 1 threads")
