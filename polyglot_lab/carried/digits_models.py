"""Module 02's models, which modules 03 and 04 export: module 02's answers (polyglot_lab/models.py)."""
from __future__ import annotations

import numpy as np

from polyglot_lab.models import pixel_statistics


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
