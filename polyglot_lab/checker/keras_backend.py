"""Run a .keras file on the Keras backend that KERAS_BACKEND names, in a process of its own (the backend is fixed
when Keras is first imported). Started by the checker, inside its sandbox.

    KERAS_BACKEND=torch python -m polyglot_lab.checker.keras_backend MODEL.keras INPUTS.npy OUTPUTS.npy
"""
from __future__ import annotations

import sys

import numpy as np


def main(model_path: str, inputs_path: str, outputs_path: str) -> int:
    import keras

    model = keras.saving.load_model(model_path, compile=False)  # safe mode: no code from the file runs
    outputs = model.predict(np.load(inputs_path, allow_pickle=False), verbose=0)
    np.save(outputs_path, np.asarray(outputs), allow_pickle=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
