"""Module 00: valid answers written in other styles than the master's score full marks through the real probe."""
import importlib
import random

import numpy as np
import pytest

from graders.checks import CheckContext
from graders.checks import m00_setup as m00
from mistakes import full_marks, run_probe

PROBES = "polyglot_lab.probes.m00_setup"


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=5, device="cpu")


def test_versions_from_a_loop_with_an_extra_entry(ctx):
    # Built by name with importlib, and numpy reported too: the text asks for five, more is harmless.
    versions = {name: importlib.import_module(name).__version__
                for name in ("numpy", "onnxruntime", "onnx", "keras", "tensorflow", "torch")}
    run_probe(ctx, m00.registry, PROBES, "versions", versions=versions)
    full_marks(ctx, m00.registry, "versions")


def test_devices_asked_per_device_type(ctx):
    import onnxruntime
    import tensorflow as tf
    import torch

    def detect_devices():
        types = ("CPU", "GPU", "TPU")
        return {
            "torch": ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())],
            "tensorflow": [t for t in types for _ in tf.config.list_physical_devices(t)],
            "onnxruntime": sorted(onnxruntime.get_available_providers()),  # another order
        }

    def pick_device():
        return torch.device("cuda" if torch.cuda.device_count() > 0 else "cpu").type

    run_probe(ctx, m00.registry, PROBES, "devices", detect_devices=detect_devices, pick_device=pick_device)
    full_marks(ctx, m00.registry, "devices")


def test_seeding_each_generator_by_hand(ctx):
    import tensorflow as tf
    import torch
    from tensorflow.python.framework import config as tf_config

    def seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        tf.random.set_seed(seed)
        torch.use_deterministic_algorithms(mode=True)
        tf_config.enable_op_determinism()

    run_probe(ctx, m00.registry, PROBES, "seeding", seed_everything=seed_everything)
    full_marks(ctx, m00.registry, "seeding")


def test_seeding_through_keras_with_warn_only_determinism(ctx):
    import keras
    import tensorflow as tf
    import torch

    def seed_everything(seed):
        keras.utils.set_random_seed(seed)
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)  # still on: warns instead of raising
        tf.config.experimental.enable_op_determinism()

    run_probe(ctx, m00.registry, PROBES, "seeding", seed_everything=seed_everything)
    full_marks(ctx, m00.registry, "seeding")


def test_threads_with_options_set_in_another_order(ctx):
    import onnxruntime as ort
    import torch

    def configure_threads(n):
        options = ort.SessionOptions()
        for field, value in {"inter_op_num_threads": 1, "intra_op_num_threads": int(n)}.items():
            setattr(options, field, value)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        torch.set_num_threads(int(n))
        return options

    run_probe(ctx, m00.registry, PROBES, "threads", configure_threads=configure_threads)
    full_marks(ctx, m00.registry, "threads")
