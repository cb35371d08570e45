"""Module 00's checks catch what they claim to, on crafted probe outputs."""
import numpy as np
import pytest

from graders.checks import CheckContext
from graders.checks import m00_setup as m00
from mistakes import craft, fails_with


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
    fails_with(m00.gpu_view, ctx, "not what torch sees")


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
