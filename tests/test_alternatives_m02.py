"""Module 02's valid alternatives: learner code in another style than the master's, run through the real probes,
scores full marks. A failure here means a check tests a proxy instead of what the exercise asks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graders.checks import CheckContext
from graders.checks import m02_pytorch_eager as m02
from mistakes import full_marks, run_probe
from test_mistakes_m02 import save_artifacts, trained_pixels

PROBES = "polyglot_lab.probes.m02_pytorch_eager"


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=23, device="cpu")


def probe_with(ctx, exercise, **namespace):
    return run_probe(ctx, m02.registry, PROBES, exercise, **namespace)


def test_port_as_functional_calls_with_einsum(ctx):
    """Parameters held directly, F.conv2d, activations permuted to NHWC before flatten, einsum for the Dense layers."""
    class FunctionalBaseline(nn.Module):
        def __init__(self, weights):
            super().__init__()
            self.params = nn.ParameterList(nn.Parameter(torch.from_numpy(np.ascontiguousarray(w))) for w in weights)

        def forward(self, x):
            conv_kernel, conv_bias, dense_kernel, dense_bias, out_kernel, out_bias = self.params
            h = F.conv2d(x.reshape(-1, 1, 8, 8), conv_kernel.permute(3, 2, 0, 1), conv_bias, padding=1)
            h = F.max_pool2d(h.relu(), 2).permute(0, 2, 3, 1).flatten(1)  # Keras' (h, w, c) order
            h = torch.einsum("ni,io->no", h, dense_kernel) + dense_bias
            return torch.einsum("ni,io->no", h.relu(), out_kernel) + out_bias

    probe_with(ctx, "port", port_keras_weights=lambda keras_model: FunctionalBaseline(keras_model.get_weights()))
    full_marks(ctx, m02.registry, "port")


def test_layer_norm_with_var_mean_and_rsqrt(ctx):
    def layer_norm(x, weight, bias, eps=1e-5):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        return torch.addcmul(bias, (x - mean) * torch.rsqrt(var + eps), weight)

    probe_with(ctx, "layer_norm", layer_norm=layer_norm)
    full_marks(ctx, m02.registry, "layer_norm")


def test_silu_saving_its_output_and_using_exp(ctx):
    class SiLUFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            s = 1 / (1 + torch.exp(-x))
            ctx.save_for_backward(x, s)
            return x / (1 + torch.exp(-x))

        @staticmethod
        def backward(ctx, grad_output):
            x, s = ctx.saved_tensors
            return grad_output * (s + x * s * (1 - s))

    probe_with(ctx, "silu", SiLUFunction=SiLUFunction)
    full_marks(ctx, m02.registry, "silu")


def test_block_with_its_own_layer_norm_module_and_functional_linear(ctx):
    class LayerNorm(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.weight, self.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))

        def forward(self, x):
            centred = x - x.mean(-1, keepdim=True)
            return centred / centred.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * self.weight + self.bias

    class ResidualBlock(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.norm = LayerNorm(dim)
            self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

        def forward(self, x):
            h = F.linear(self.norm(x), self.fc1.weight, self.fc1.bias)
            return torch.add(x, F.linear(h * torch.sigmoid(h), self.fc2.weight, self.fc2.bias))

    probe_with(ctx, "block", ResidualBlock=ResidualBlock)
    full_marks(ctx, m02.registry, "block")


def test_loader_as_a_seeded_iterable_of_its_own(ctx):
    """No DataLoader: a class that draws a fresh permutation from its own seeded generator each epoch."""
    class Batches:
        def __init__(self, X, y, batch_size, seed):
            self.X, self.y, self.size = torch.as_tensor(X), torch.as_tensor(y), batch_size
            self.generator = torch.Generator().manual_seed(seed)

        def __iter__(self):
            order = torch.randperm(len(self.X), generator=self.generator)
            for start in range(0, len(order), self.size):
                rows = order[start:start + self.size]
                yield self.X[rows], self.y[rows]

    probe_with(ctx, "loader", make_loader=Batches)
    full_marks(ctx, m02.registry, "loader")


def test_train_epoch_in_another_order_and_style(ctx):
    """zero_grad at the end of each step (model.zero_grad, set_to_none=False), log_softmax + nll_loss, enumerate,
    and the mean loss weighted by batch size (equal batches here)."""
    def train_epoch(model, loader, optimizer, scheduler, max_grad_norm):
        model.train(True)
        total, seen = 0.0, 0
        for _, (inputs, targets) in enumerate(loader):
            loss = F.nll_loss(F.log_softmax(model(inputs), dim=-1), targets)
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), max_norm=max_grad_norm, norm_type=2.0)
            optimizer.step()
            scheduler.step()
            model.zero_grad(set_to_none=False)
            total, seen = total + loss.item() * len(targets), seen + len(targets)
        return total / seen

    probe_with(ctx, "train_epoch", train_epoch=train_epoch)
    full_marks(ctx, m02.registry, "train_epoch")


def test_train_epoch_with_one_hot_targets_and_manual_clipping(ctx):
    def train_epoch(model, loader, optimizer, scheduler, max_grad_norm):
        model.train()
        losses = []
        for xb, yb in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = nn.CrossEntropyLoss()(model(xb), F.one_hot(yb, 10).float())
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
            for g in grads:
                g.mul_(min(1.0, max_grad_norm / (float(norm) + 1e-6)))
            optimizer.step()
            scheduler.step()
            losses.append(float(loss))
        return float(np.mean(losses))

    probe_with(ctx, "train_epoch", train_epoch=train_epoch)
    full_marks(ctx, m02.registry, "train_epoch")


def test_predict_with_inference_mode(ctx):
    def predict(model, X):
        model.train(False)
        with torch.inference_mode():
            return model(torch.tensor(X, dtype=torch.float32))

    probe_with(ctx, "predict", predict=predict)
    full_marks(ctx, m02.registry, "predict")


def test_branch_with_masked_fill(ctx):
    class Abstain(nn.Module):
        def __init__(self, threshold):
            super().__init__()
            self.register_buffer("threshold", torch.tensor(threshold))

        def forward(self, logits):
            probabilities = torch.exp(logits - logits.logsumexp(dim=1, keepdim=True))
            confidence, label = torch.max(probabilities, dim=1)
            return label.masked_fill(confidence < self.threshold, -1)

    probe_with(ctx, "branch", Abstain=Abstain)
    full_marks(ctx, m02.registry, "branch")


def test_save_with_a_positional_dynamic_shape_and_the_train_flag_off(ctx):
    """dynamic_shapes as a tuple, a named minimum, model.train(False) instead of eval()."""
    model = trained_pixels().train(False)
    program = torch.export.export(model, (torch.rand(3, 64) * 16,),
                                  dynamic_shapes=({0: torch.export.Dim("rows", min=1, max=4096)},))
    torch.export.save(program, str(ctx.workdir / m02.PROGRAM_FILE))
    torch.save(dict(model.state_dict()), ctx.workdir / m02.STATE_FILE)
    full_marks(ctx, m02.registry, "save")


def test_save_helper_still_full_marks(ctx):
    save_artifacts(ctx, trained_pixels(dropout=0.3))  # eval mode: the dropout in the graph does not train
    full_marks(ctx, m02.registry, "save")
