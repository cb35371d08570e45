"""Run a .keras file on a backend of Keras other than the grader's, in its own process (the backend is fixed
when Keras is first imported).

    KERAS_BACKEND=torch python -m graders.keras_runner MODEL.keras INPUTS.npy OUTPUTS.npy
"""
from __future__ import annotations

import sys

import numpy as np


def main(model_path: str, inputs_path: str, outputs_path: str) -> int:
    import keras

    model = keras.models.load_model(model_path)
    outputs = model.predict(np.load(inputs_path, allow_pickle=False), verbose=0)
    np.save(outputs_path, np.asarray(outputs), allow_pickle=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
