"""Module 01's digits convnet, which module 02 ports to PyTorch: module 01's answer (polyglot_lab/models.py)."""
from __future__ import annotations

import numpy as np


def build_keras_baseline():
    """Module 01's digits convnet (8,714 parameters): 64 standardised features in, 10 probabilities out."""
    import keras

    return keras.Sequential([
        keras.Input(shape=(64,)),
        keras.layers.Reshape((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_baseline")


def train_keras_baseline(X_train: np.ndarray, y_train: np.ndarray, epochs: int = 15, seed: int = 42):
    """Module 01's baseline, trained on standardised features (a few seconds on a CPU)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_keras_baseline()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(X_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    return model
