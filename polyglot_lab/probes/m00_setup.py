"""The kernel side of module 00_setup: one probe per exercise, run in the learner's kernel
after the exercise's cells. Written by `make notebooks` from the `# <kernel>` blocks of
graders/checks/m00_setup.py, each in its exercise's section beside the inputs and checks:
edit those, not this file."""
import random

import numpy as np

from polyglot_lab.probe import ARRAYS, VALUE, need, probe


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


@probe(versions=VALUE)
def versions(ns, io):
    io.save(versions={str(k): str(v) for k, v in dict(need(ns, "versions")).items()})


@probe(devices=VALUE, picked=VALUE)
def devices(ns, io):
    found = need(ns, "detect_devices")()
    io.save(devices={str(k): [str(d) for d in v] for k, v in dict(found).items()},
            picked=str(need(ns, "pick_device")()))


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
