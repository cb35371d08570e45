"""Models the course hands you: module 01's baseline (so later modules stand on their own) and
small networks the grader and your notebook build alike.

Each builder is deterministic given its arguments; the grader rebuilds the same architectures in
its own process and fills them with weights it chooses.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np


# -- module 01's convnet ---------------------------------------------------------------------
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


# -- small torch networks --------------------------------------------------------------------
def relu_mlp(widths: list[int]):
    """Linear/ReLU layers named fc1, act1, fc2, act2, ..., out: a network to inspect with hooks."""
    from torch import nn

    layers: OrderedDict = OrderedDict()
    for i, (n_in, n_out) in enumerate(zip(widths[:-2], widths[1:-1]), start=1):
        layers[f"fc{i}"] = nn.Linear(n_in, n_out)
        layers[f"act{i}"] = nn.ReLU()
    layers["out"] = nn.Linear(widths[-2], widths[-1])
    return nn.Sequential(layers)


def suspect_mlp(seed: int = 0):
    """A ReLU network with a planted bug: one of its layers is dead (its ReLU outputs only zeros)."""
    import torch

    rng = np.random.default_rng(seed)
    model = relu_mlp([64, 48, 48, 32, 10])
    dead = int(rng.integers(1, 4))
    with torch.no_grad():
        getattr(model, f"fc{dead}").bias.fill_(-100.0)  # every pre-activation far below zero
    return model


def bn_net(n_in: int = 64, hidden: int = 32, n_out: int = 10, dropout: float = 0.0):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear: a net whose output depends on train/eval mode."""
    from torch import nn

    return nn.Sequential(OrderedDict([
        ("fc", nn.Linear(n_in, hidden)), ("bn", nn.BatchNorm1d(hidden)), ("act", nn.ReLU()),
        ("dropout", nn.Dropout(dropout)), ("out", nn.Linear(hidden, n_out)),
    ]))


# -- module 02's custom model ----------------------------------------------------------------
def digits_net(mean, std, hidden: int = 64):
    """Module 02's DigitsNet built from torch's own layers (same state-dict keys as yours, so module 02's
    digits_custom_state.pt loads into it): raw pixels in, standardised inside, 10 logits out."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ResidualBlock(nn.Module):
        def __init__(self, dim, width):
            super().__init__()
            self.norm, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, width), nn.Linear(width, dim)

        def forward(self, x):
            return x + self.fc2(F.silu(self.fc1(self.norm(x))))

    class DigitsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
            self.stem = nn.Linear(64, hidden)
            self.block = ResidualBlock(hidden, 2 * hidden)
            self.norm = nn.LayerNorm(hidden)
            self.dropout = nn.Dropout(0.1)
            self.head = nn.Linear(hidden, 10)

        def forward(self, x):
            x = (x - self.mean) / self.std
            x = self.block(F.silu(self.stem(x)))
            return self.head(self.dropout(self.norm(x)))

    return DigitsNet()


def pixel_statistics(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and std; pixels that never vary keep std 1 (as StandardScaler does)."""
    std = X.std(0)
    return X.mean(0).astype(np.float32), np.where(std > 1e-3, std, 1.0).astype(np.float32)


def train_digits_net(X_train: np.ndarray, y_train: np.ndarray, epochs: int = 20, seed: int = 0):
    """A DigitsNet trained on raw pixels (a few seconds on a CPU), returned in eval mode."""
    import torch

    torch.manual_seed(seed)
    return _train(digits_net(*pixel_statistics(X_train)), X_train, y_train, epochs, seed)


def _train(model, X_train: np.ndarray, y_train: np.ndarray, epochs: int, seed: int):
    """AdamW on shuffled batches of 64, seeded; the model comes back in eval mode."""
    import torch
    import torch.nn.functional as F

    X, y = torch.as_tensor(X_train), torch.as_tensor(y_train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(X), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(X[rows]), y[rows]).backward()
            optimizer.step()
    return model.eval()


# -- module 04's convnet: module 01's architecture in torch, raw pixels in --------------------
def convnet(mean, std, channels: int = 16, hidden: int = 32):
    """Module 01's convnet in PyTorch (module 02's port) with the standardisation inside: raw pixels in, logits out."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
            self.conv = nn.Conv2d(1, channels, 3, padding=1)
            self.fc = nn.Linear(channels * 16, hidden)
            self.dropout = nn.Dropout(0.2)
            self.out = nn.Linear(hidden, 10)

        def forward(self, x):
            x = ((x - self.mean) / self.std).view(-1, 1, 8, 8)
            x = F.max_pool2d(F.relu(self.conv(x)), 2)
            return self.out(self.dropout(F.relu(self.fc(x.flatten(1)))))

    return ConvNet()


def train_convnet(X_train: np.ndarray, y_train: np.ndarray, epochs: int = 15, seed: int = 0):
    """A convnet trained on raw pixels (a few seconds on a CPU), returned in eval mode."""
    import torch

    torch.manual_seed(seed)
    return _train(convnet(*pixel_statistics(X_train)), X_train, y_train, epochs, seed)
