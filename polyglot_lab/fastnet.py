"""Module 06's network: a small residual MLP on the digits, given to the learner (it is no module's answer), and
built alike by the notebook, the probes, the checker and the grader from a config and a seed.

    x (batch, 64) -> stem Linear -> depth x Block -> LayerNorm -> head Linear -> logits (batch, 10)
    Block: h + down(gelu(up(norm(h))))      up: width -> 4 width, down: 4 width -> width

Blocks are the unit of activation checkpointing; GuardedBlock adds the data-dependent `if` that breaks a
torch.compile graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONFIG = {"n_in": 64, "width": 128, "depth": 4, "n_out": 10}


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (batch, width) -> (batch, width)
        return h + self.down(F.gelu(self.up(self.norm(h))))


class GuardedBlock(Block):
    """A Block that clips its output to +-limit, but only when something exceeds it: the Python `if` reads a value
    out of a tensor, so torch.compile must stop its graph there (a graph break) and run that line in Python."""

    limit = 4.0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = super().forward(h)
        if h.abs().max() > self.limit:
            h = h.clamp(-self.limit, self.limit)
        return h


class FastNet(nn.Module):
    def __init__(self, n_in: int = 64, width: int = 128, depth: int = 4, n_out: int = 10, block=Block):
        super().__init__()
        self.stem = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(block(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, n_in) -> (batch, n_out)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


def build(config: dict | None = None, seed: int = 0, guarded: bool = False) -> FastNet:
    """FastNet with `config` (CONFIG's keys), its weights drawn from `seed`, in eval mode."""
    torch.manual_seed(int(seed))
    model = FastNet(**{**CONFIG, **(config or {})}, block=GuardedBlock if guarded else Block)
    return model.eval()


def loaded(state: dict, config: dict | None = None) -> FastNet:
    """FastNet with the weights of `state` (a state dict, tensors or arrays), in eval mode."""
    model = build(config)
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    return model.eval()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One training step (forward, cross-entropy, backward, update): what the profiling and memory exercises time."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()
