"""Module 02's typical mistakes, each caught with a message that names it.

Small learner functions (a right one and the usual wrong ones) go through the module's real probe,
in this process, on the grader's inputs; the checks then decide as they do at grade time.
Artifacts are crafted as tiny exported programs and state dicts.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graders.checks import CheckContext
from graders.checks import m02_pytorch_eager as m02
from mistakes import costs_only, craft, fails_with, full_marks, run_probe, verdicts

PROBES = "polyglot_lab.probes.m02_pytorch_eager"


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=11, device="cpu")


def probe_with(ctx, exercise, **namespace):
    return run_probe(ctx, m02.registry, PROBES, exercise, **namespace)


def m02_verdicts(ctx, exercise):
    return verdicts(ctx, m02.registry, exercise)


# -- port --------------------------------------------------------------------------------------
class BaselineNet(nn.Module):
    def __init__(self, nhwc_flatten=False, softmax=False):
        super().__init__()
        self.conv, self.fc, self.out = nn.Conv2d(1, 16, 3, padding=1), nn.Linear(256, 32), nn.Linear(32, 10)
        self.nhwc_flatten, self.softmax = nhwc_flatten, softmax

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x.view(-1, 1, 8, 8))), 2)
        x = x.permute(0, 2, 3, 1) if self.nhwc_flatten else x
        x = self.out(F.relu(self.fc(x.flatten(1))))
        return x.softmax(1) if self.softmax else x


def porter(conv="permute", dense="reorder", out="transpose", nhwc_flatten=False, softmax=False):
    def port_keras_weights(keras_model):
        (kernel, conv_bias), (dense_kernel, dense_bias), (out_kernel, out_bias) = (
            layer.get_weights() for layer in keras_model.layers if layer.weights)
        conv_weight = {"permute": kernel.transpose(3, 2, 0, 1), "swap_hw": kernel.transpose(3, 2, 1, 0),
                       "reshape": kernel.reshape(16, 1, 3, 3)}[conv]
        reordered = dense_kernel.reshape(4, 4, 16, 32).transpose(2, 0, 1, 3).reshape(256, 32)
        fc_weight = {"reorder": reordered.T, "transpose_only": dense_kernel.T,
                     "reshape": reordered.reshape(32, 256)}[dense]
        out_weight = {"transpose": out_kernel.T, "reshape": out_kernel.reshape(10, 32)}[out]
        net = BaselineNet(nhwc_flatten, softmax)
        state = {"conv.weight": conv_weight, "conv.bias": conv_bias, "fc.weight": fc_weight, "fc.bias": dense_bias,
                 "out.weight": out_weight, "out.bias": out_bias}
        net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
        return net
    return port_keras_weights


def test_port_right_both_ways(ctx):
    probe_with(ctx, "port", port_keras_weights=porter())
    assert m02.port_parity(ctx) and m02.port_returns_logits(ctx)
    # Permuting the activations to NHWC before flatten is just as right as reordering the kernel.
    probe_with(ctx, "port", port_keras_weights=porter(dense="transpose_only", nhwc_flatten=True))
    assert m02.port_parity(ctx)


@pytest.mark.parametrize("mistake, words", [
    (dict(dense="transpose_only"), ("flatten order is wrong", "NHWC")),
    (dict(dense="reshape"), ("reshaped instead of transposed",)),
    (dict(out="reshape"), ("reshaped instead of transposed",)),
    (dict(conv="reshape"), ("convolution kernel", "reshaped")),
    (dict(conv="swap_hw"), ("convolution kernel", "height and width are swapped")),
])
def test_port_layout_mistakes_are_named(ctx, mistake, words):
    probe_with(ctx, "port", port_keras_weights=porter(**mistake))
    failure = fails_with(m02.port_parity, ctx, *words)
    assert "max abs diff" in failure.found
    costs_only(ctx, m02.registry, "port", "parity", *words)


def test_port_with_softmax_inside_costs_only_the_logits_check(ctx):
    probe_with(ctx, "port", port_keras_weights=porter(softmax=True))
    assert m02.port_parity(ctx)  # the weights are right
    fails_with(m02.port_returns_logits, ctx, "returns probabilities", "cross_entropy")
    costs_only(ctx, m02.registry, "port", "returns_logits", "returns probabilities", "cross_entropy")


# -- layer_norm --------------------------------------------------------------------------------
def layer_norm_right(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + eps) * weight + bias


def layer_norm_unbiased(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias


def layer_norm_eps_outside(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / (((x - mean) ** 2).mean(-1, keepdim=True).sqrt() + eps) * weight + bias


def layer_norm_no_affine(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + eps)


def layer_norm_library(x, weight, bias, eps=1e-5):
    return nn.functional.layer_norm(x, x.shape[-1:], weight, bias, eps)


def test_layer_norm_right(ctx):
    probe_with(ctx, "layer_norm", layer_norm=layer_norm_right)
    assert m02.layer_norm_matches_library(ctx) and m02.layer_norm_from_tensor_ops(ctx)


@pytest.mark.parametrize("fn, words", [
    (layer_norm_unbiased, ("unbiased",)),
    (layer_norm_eps_outside, ("eps is added to the standard deviation",)),
    (layer_norm_no_affine, ("scale and shift are missing",)),
])
def test_layer_norm_mistakes_are_named(ctx, fn, words):
    probe_with(ctx, "layer_norm", layer_norm=fn)
    costs_only(ctx, m02.registry, "layer_norm", "matches_library", *words)


def test_layer_norm_from_the_library_is_caught(ctx):
    probe_with(ctx, "layer_norm", layer_norm=layer_norm_library)
    assert m02.layer_norm_matches_library(ctx)
    failure = fails_with(m02.layer_norm_from_tensor_ops, ctx, "torch's own normalisation")
    assert "layer_norm" in failure.found
    costs_only(ctx, m02.registry, "layer_norm", "from_tensor_ops", "torch's own normalisation")


# -- silu --------------------------------------------------------------------------------------
def silu_function(backward):
    class SiLUFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * torch.sigmoid(x)

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return backward(x, torch.sigmoid(x), grad_output)
    return SiLUFunction


def test_silu_right(ctx):
    probe_with(ctx, "silu", SiLUFunction=silu_function(lambda x, s, g: g * s * (1 + x * (1 - s))))
    assert m02.silu_forward(ctx) and m02.silu_backward(ctx)


@pytest.mark.parametrize("backward, words", [
    (lambda x, s, g: s * (1 + x * (1 - s)), ("ignores grad_output",)),
    (lambda x, s, g: g * s, ("product rule",)),
    (lambda x, s, g: g * s * (1 - x * (1 - s)), ("backward is off",)),
    (lambda x, s, g: None, ("No gradient reached x",)),
])
def test_silu_backward_mistakes_are_named(ctx, backward, words):
    probe_with(ctx, "silu", SiLUFunction=silu_function(backward))
    costs_only(ctx, m02.registry, "silu", "backward", *words)


def test_silu_must_be_an_autograd_function(ctx):
    class SiLUFunction(nn.Module):
        def forward(self, x):
            return F.silu(x)
    probe_with(ctx, "silu", SiLUFunction=SiLUFunction)
    costs_only(ctx, m02.registry, "silu", {"forward", "backward"}, "not a torch.autograd.Function")


# -- block and model ---------------------------------------------------------------------------
def residual_block(residual=True, post_norm=False):
    class ResidualBlock(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.norm, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.Linear(hidden, dim)

        def forward(self, x):
            if post_norm:
                return self.norm(x + self.fc2(F.silu(self.fc1(x))))
            h = self.fc2(F.silu(self.fc1(self.norm(x))))
            return x + h if residual else h
    return ResidualBlock


def test_block_right_and_wrong(ctx):
    assert m02.block_matches_library(probe_with(ctx, "block", ResidualBlock=residual_block()))
    probe_with(ctx, "block", ResidualBlock=residual_block(residual=False))
    costs_only(ctx, m02.registry, "block", "matches_library", "residual connection is missing")
    probe_with(ctx, "block", ResidualBlock=residual_block(post_norm=True))
    costs_only(ctx, m02.registry, "block", "matches_library", "differs from x + fc2")


def test_block_with_other_parameter_names_says_which(ctx):
    class ResidualBlock(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.layer_norm, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.Linear(hidden, dim)
    probe_with(ctx, "block", ResidualBlock=ResidualBlock)
    costs_only(ctx, m02.registry, "block", "matches_library", "state_dict keys must be", "norm.weight")


def digits_net(detach=False, softmax=False, unused_layer=False, plain_statistics=False):
    class DigitsNet(nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            if plain_statistics:  # attributes, not buffers: lost from the state dict
                self.mean, self.std = mean, std
            else:
                self.register_buffer("mean", mean)
                self.register_buffer("std", std)
            self.stem, self.head = nn.Linear(64, 32), nn.Linear(32, 10)
            self.spare = nn.Linear(32, 32) if unused_layer else None

        def forward(self, x):
            h = F.silu(self.stem((x - self.mean) / self.std))
            out = self.head(h.detach() if detach else h)
            return out.softmax(1) if softmax else out
    return DigitsNet


def test_model_right(ctx):
    probe_with(ctx, "model", DigitsNet=digits_net())
    assert m02.every_parameter_learns(ctx) and m02.model_returns_logits(ctx)


@pytest.mark.parametrize("mistake, stuck", [
    (dict(detach=True), "stem.weight, stem.bias"),
    (dict(unused_layer=True), "spare.weight, spare.bias"),
])
def test_parameters_that_never_learn_are_named(ctx, mistake, stuck):
    probe_with(ctx, "model", DigitsNet=digits_net(**mistake))
    costs_only(ctx, m02.registry, "model", "every_parameter_learns", f"never get a gradient, so they never learn: {stuck}")


def test_model_with_softmax_inside(ctx):
    probe_with(ctx, "model", DigitsNet=digits_net(softmax=True))
    fails_with(m02.model_returns_logits, ctx, "returns probabilities")
    costs_only(ctx, m02.registry, "model", "returns_logits", "returns probabilities")


def test_model_statistics_must_be_buffers(ctx):
    probe_with(ctx, "model", DigitsNet=digits_net(plain_statistics=True))
    costs_only(ctx, m02.registry, "model", "standardises_with_buffers", "no buffer with the mean and the std")


# -- loader ------------------------------------------------------------------------------------
def loader_variant(kind):
    def make_loader(X, y, batch_size, seed):
        dataset = torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y))
        if kind == "right":
            return torch.utils.data.DataLoader(dataset, batch_size, shuffle=True,
                                               generator=torch.Generator().manual_seed(seed))
        if kind == "unseeded":
            return torch.utils.data.DataLoader(dataset, batch_size, shuffle=True)
        if kind == "seed_ignored":
            return torch.utils.data.DataLoader(dataset, batch_size, shuffle=True,
                                               generator=torch.Generator().manual_seed(0))
        if kind == "not_shuffled":
            return torch.utils.data.DataLoader(dataset, batch_size)
        if kind == "drop_last":
            return torch.utils.data.DataLoader(dataset, batch_size, shuffle=True, drop_last=True,
                                               generator=torch.Generator().manual_seed(seed))
        if kind == "shuffled_once":
            order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
            return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, order.tolist()), batch_size)
    return make_loader


def test_loader_right(ctx):
    probe_with(ctx, "loader", make_loader=loader_variant("right"))
    assert m02.loader_reproducible(ctx) and m02.loader_shuffles_every_row(ctx)


@pytest.mark.parametrize("kind, check, words", [
    ("unseeded", "reproducible", ("not reproducible",)),
    ("seed_ignored", "reproducible", ("seed is ignored",)),
    ("drop_last", "shuffles_every_row", ("every row exactly once",)),
    ("shuffled_once", "shuffles_every_row", ("same order",)),
])
def test_loader_mistakes_are_named(ctx, kind, check, words):
    probe_with(ctx, "loader", make_loader=loader_variant(kind))
    costs_only(ctx, m02.registry, "loader", check, *words)


def test_unshuffled_loader_also_ignores_the_seed(ctx):
    """Without shuffling there is no order for the seed to set: both checks fail, each naming the missing shuffle."""
    probe_with(ctx, "loader", make_loader=loader_variant("not_shuffled"))
    results = costs_only(ctx, m02.registry, "loader", {"reproducible", "shuffles_every_row"}, "not shuffled")
    assert "seed is ignored" in results["reproducible"].message


# -- train_epoch -------------------------------------------------------------------------------
def loop(*skip, returns="mean"):
    """A learner's train_epoch, written independently of the grader, with the mistakes named in `skip`."""
    def train_epoch(model, loader, optimizer, scheduler, max_grad_norm):
        if "train_mode" not in skip:
            model.train()
        if "own_optimizer" in skip:
            optimizer = torch.optim.Adam(model.parameters())
        losses = []
        for xb, yb in loader:
            if "zero_grad" not in skip and "zero_grad_before_step" not in skip:
                optimizer.zero_grad()
            logits = model(xb)
            loss = nn.CrossEntropyLoss(reduction="sum" if "summed_loss" in skip else "mean")(
                F.softmax(logits, dim=1) if "loss_on_logits" in skip else logits, yb)
            if "clip_before_backward" in skip:  # a common slip: clipping before there are gradients to clip
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            loss.backward()
            if not {"clipping", "clip_before_backward"} & set(skip):
                nn.utils.clip_grad_norm_(model.parameters(), 1.0 if "clip_to_one" in skip else max_grad_norm)
            if "zero_grad_before_step" in skip:
                optimizer.zero_grad()
            if "scheduler_first" in skip:
                scheduler.step()
            if "every_other_step" not in skip or len(losses) % 2 == 0:
                optimizer.step()
            if not {"schedule", "scheduler_first"} & set(skip):
                scheduler.step()
            losses.append(loss.item())
        if "schedule_per_epoch" in skip:
            scheduler.step()
        return {"mean": np.mean(losses), "sum": np.sum(losses), "last": losses[-1]}[returns]
    return train_epoch


def test_right_loop_passes_every_check(ctx):
    probe_with(ctx, "train_epoch", train_epoch=loop())
    full_marks(ctx, m02.registry, "train_epoch")


@pytest.mark.parametrize("skip, failing, words", [
    (("train_mode",), "train_mode", ("eval mode in 6 of the 6",)),
    (("zero_grad",), "zero_grad", ("Gradients accumulate", "batch 2")),
    (("zero_grad_before_step",), ("zero_grad", "clipping"), ("between backward and step",)),
    (("loss_on_logits",), "loss_on_logits", ("Softmax is applied before the cross-entropy",)),
    (("summed_loss",), "loss_on_logits", ("16 times that gradient", "summed")),
    (("clipping",), "clipping", ("not clipped", "above max_grad_norm")),
    (("clip_before_backward",), "clipping", ("not clipped", "after backward")),
    (("clip_to_one",), "clipping", ("clipped to norm 1, not to max_grad_norm",)),
    (("schedule",), "schedule", ("never called",)),
    (("schedule", "schedule_per_epoch"), "schedule", ("stepped 1 times in an epoch of 6 batches",)),
    (("scheduler_first",), "schedule", ("scheduler.step() runs before optimizer.step()",)),
    (("own_optimizer",), "steps", ("optimizer of its own (Adam)",)),
    (("every_other_step",), "steps", ("trained on once", "3 steps")),
])
def test_loop_mistakes_are_named_and_cost_only_their_checks(ctx, skip, failing, words):
    probe_with(ctx, "train_epoch", train_epoch=loop(*skip))
    costs_only(ctx, m02.registry, "train_epoch", failing, *words)


def test_two_loop_mistakes_cost_their_two_checks(ctx):
    probe_with(ctx, "train_epoch", train_epoch=loop("train_mode", "loss_on_logits"))
    costs_only(ctx, m02.registry, "train_epoch", ("train_mode", "loss_on_logits"), "")
    probe_with(ctx, "train_epoch", train_epoch=loop("zero_grad", "clipping"))
    costs_only(ctx, m02.registry, "train_epoch", ("zero_grad", "clipping"), "")


@pytest.mark.parametrize("returns, cause", [("sum", "their sum"), ("last", "last batch's loss")])
def test_loop_must_return_the_mean_loss(ctx, returns, cause):
    probe_with(ctx, "train_epoch", train_epoch=loop(returns=returns))
    costs_only(ctx, m02.registry, "train_epoch", "returns_mean_loss", "mean of the batch losses", cause)


def test_loop_on_wrong_labels_says_what_differs(ctx):
    """A mistake no check names: the loss uses labels of another batch; only the loss check fails, saying what it saw."""
    def train_epoch(model, loader, optimizer, scheduler, max_grad_norm):
        model.train()
        batches, losses = list(loader), []
        for i, (xb, _) in enumerate(batches):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), batches[i - 1][1])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        return sum(losses) / len(losses)
    probe_with(ctx, "train_epoch", train_epoch=train_epoch)
    costs_only(ctx, m02.registry, "train_epoch", "loss_on_logits", "not that of the mean cross-entropy", "batch 1")


def test_loop_that_never_runs_says_so(ctx):
    probe_with(ctx, "train_epoch", train_epoch=lambda model, loader, optimizer, scheduler, max_grad_norm: 0.0)
    results = m02_verdicts(ctx, "train_epoch")
    assert all(r.status == "failed" for r in results.values()), {k: r.message for k, r in results.items()}
    assert "never ran the model" in results["train_mode"].message


def test_replayed_gradients_tell_softmax_from_logits(tmp_path):
    """The loss check's two replays differ on every batch, so naming the softmax mistake is never a guess."""
    ctx = CheckContext(tmp_path, seed=3, device="cpu")
    probe_with(ctx, "train_epoch", train_epoch=loop())
    for backward in [e for e in m02.loop_record(ctx) if e["event"] == "backward"]:
        logits, soft = (m02.replay_gradient(ctx, backward["after"], kind) for kind in ("logits", "softmax"))
        assert not all(m02.close(soft[k], v) for k, v in logits.items())


# -- predict -----------------------------------------------------------------------------------
def predictor(eval_mode=True, no_grad=True):
    def predict(model, X):
        if eval_mode:
            model.eval()
        with torch.set_grad_enabled(not no_grad):
            return model(torch.as_tensor(X))
    return predict


def test_predict(ctx):
    probe_with(ctx, "predict", predict=predictor())
    assert m02.predict_eval_mode(ctx) and m02.predict_no_grad(ctx)
    probe_with(ctx, "predict", predict=predictor(eval_mode=False))
    costs_only(ctx, m02.registry, "predict", "eval_mode", "left in train mode")
    probe_with(ctx, "predict", predict=predictor(no_grad=False))
    costs_only(ctx, m02.registry, "predict", "no_grad", "autograd graph")


# -- fit ---------------------------------------------------------------------------------------
def test_history_with_a_flat_learning_rate(ctx):
    probe_with(ctx, "fit", history={"train_loss": [2.0, 1.0, 0.5], "val_accuracy": [0.5, 0.8, 0.9], "lr": [1e-3] * 3})
    fails_with(m02.fit_curves, ctx, "learning rate never changed")
    probe_with(ctx, "fit", history={"train_loss": [2.0, 1.0], "lr": [1e-3, 2e-3]})
    fails_with(m02.fit_curves, ctx, "lacks val_accuracy")


def one_cycle_lrs(epochs, steps_per_epoch, per_batch=True):
    """The learning rate after each epoch of a OneCycleLR stepped per batch (or, wrongly, once per epoch)."""
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=3e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    lrs = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch if per_batch else 1):
            optimizer.step()
            scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    return lrs


def test_history_right_and_its_mistakes(ctx):
    loss, accuracy = [2.0, 1.2, 0.8, 0.5, 0.4], [0.5, 0.8, 0.9, 0.95, 0.96]
    probe_with(ctx, "fit", history={"train_loss": loss, "val_accuracy": accuracy, "lr": one_cycle_lrs(5, 23)})
    assert m02.fit_curves(ctx)
    probe_with(ctx, "fit", history={"train_loss": loss, "val_accuracy": accuracy,
                                    "lr": one_cycle_lrs(5, 23, per_batch=False)})
    costs_only(ctx, m02.registry, "fit", "curves", "did not anneal")
    probe_with(ctx, "fit", history={"train_loss": loss, "val_accuracy": [100 * a for a in accuracy],
                                    "lr": one_cycle_lrs(5, 23)})
    costs_only(ctx, m02.registry, "fit", "curves", "a fraction")


# -- save --------------------------------------------------------------------------------------
class Pixels(nn.Module):
    """A tiny stand-in for DigitsNet: raw pixels in, logits out."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.fc, self.dropout = nn.Linear(64, 10), nn.Dropout(dropout)

    def forward(self, x):
        return self.fc(self.dropout(x / 16))


def save_artifacts(ctx, model, *, train_mode=False, dynamic=True, state=None):
    model.train(train_mode)
    example = (torch.rand(4, 64) * 16,)
    dynamic_shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic_shapes), ctx.workdir / m02.PROGRAM_FILE)
    torch.save(model.state_dict() if state is None else state, ctx.workdir / m02.STATE_FILE)


def trained_pixels(dropout=0.0, standardised=False) -> Pixels:
    """Logistic regression's weights in a Pixels model: over the bar on digits, in a second (`standardised`: fitted
    on centred pixels, for BatchStandardised)."""
    from sklearn.linear_model import LogisticRegression

    from polyglot_lab.data import digits
    X, y = digits()
    features = (X - X.mean(0)) / 16 if standardised else X / 16
    fitted = LogisticRegression(max_iter=500).fit(features, y)
    model = Pixels(dropout)
    model.fc.weight.data = torch.tensor(fitted.coef_, dtype=torch.float32)
    model.fc.bias.data = torch.tensor(fitted.intercept_, dtype=torch.float32)
    return model


def test_saved_program_right(ctx):
    save_artifacts(ctx, trained_pixels())
    for check in (m02.program_loads, m02.custom_holdout_accuracy, m02.program_eval_mode, m02.state_dict_matches):
        assert check(ctx)


def test_device_parity_moves_the_program(ctx):
    """The GPU check's code path, run with the CPU as the target (CI has no GPU)."""
    save_artifacts(ctx, trained_pixels())
    assert "the same outputs on cpu" in m02.device_parity(ctx, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_parity_on_a_gpu(ctx):
    save_artifacts(ctx, trained_pixels())
    assert m02.program_gpu_parity(ctx)


class DropoutOnTheSide(Pixels):
    """Dropout on a branch that scales the logits by at most 1e-4: in train mode the outputs vary from run to run,
    but too little to move the held-out accuracy, so only the eval-mode check can see it."""

    def forward(self, x):
        logits = self.fc(x / 16)
        return logits + 1e-4 * self.dropout(logits)


def test_program_exported_in_train_mode(ctx):
    """Train-mode dropout, named from the program's own graph; the trained weights keep every other check passing."""
    model = DropoutOnTheSide(dropout=0.5)
    model.load_state_dict(trained_pixels().state_dict())
    save_artifacts(ctx, model, train_mode=True)
    costs_only(ctx, m02.registry, "save", "eval_mode", "exported in train mode", "aten.dropout.default",
               "different outputs on two runs")


class NoisyPixels(Pixels):
    """Random noise at inference, in eval mode: non-deterministic, but not because of train mode."""

    def forward(self, x):
        return super().forward(x + 0.01 * torch.randn_like(x))


class BatchStandardised(Pixels):
    """Centres each batch on its own mean: deterministic, but a row depends on the rest of its batch."""

    def forward(self, x):
        return self.fc((x - x.mean(0)) / 16)


@pytest.mark.parametrize("model, observed", [
    (NoisyPixels, "different outputs on two runs"),
    (BatchStandardised, "changed with the rest of its batch"),
])
def test_program_non_determinism_other_than_train_mode_is_described(ctx, model, observed):
    pixels = model()
    pixels.load_state_dict(trained_pixels(standardised=model is BatchStandardised).state_dict())
    save_artifacts(ctx, pixels)
    failure = costs_only(ctx, m02.registry, "save", "eval_mode", "holds no dropout or batch norm in training mode",
                         observed)["eval_mode"]
    assert "exported in train mode" not in failure.message


def test_program_with_a_static_batch(ctx):
    """A program that takes only its example's batch cannot be run on the grader's batches at all: every check that
    runs it fails, each saying the batch size is what fails; the state dict still matches."""
    save_artifacts(ctx, trained_pixels(), dynamic=False)
    failure = fails_with(m02.program_loads, ctx, "fails on a batch of 1")
    assert "dynamic" in failure.hint
    costs_only(ctx, m02.registry, "save", {"program_loads", "holdout_accuracy", "eval_mode"}, "fails on a batch of",
               "Guard failed")


def test_untrained_program_is_under_the_bar(ctx):
    save_artifacts(ctx, Pixels())
    costs_only(ctx, m02.registry, "save", "holdout_accuracy", "under the bar")


def test_state_dict_of_another_model(ctx):
    save_artifacts(ctx, trained_pixels(), state=Pixels().state_dict())
    costs_only(ctx, m02.registry, "save", "state_dict_matches", "other weights", "fc.weight")


def test_whole_model_pickled_instead_of_state_dict(ctx):
    save_artifacts(ctx, trained_pixels())
    torch.save(Pixels(), ctx.workdir / m02.STATE_FILE)  # a pickled module: weights_only refuses it
    failure = fails_with(m02.state_dict_matches, ctx, "could not be loaded with torch.load(weights_only=True)")
    assert "state_dict()" in failure.hint
    costs_only(ctx, m02.registry, "save", "state_dict_matches", "could not be loaded with torch.load(weights_only=True)")


def test_missing_and_corrupt_artifacts_name_the_file(ctx):
    fails_with(m02.program_loads, ctx, "digits_custom.pt2 was not found")
    (ctx.workdir / m02.PROGRAM_FILE).write_bytes(b"not a program")
    ctx.cache.clear()
    fails_with(m02.program_loads, ctx, "digits_custom.pt2 could not be loaded")
    # With a good state dict beside it, a program that cannot load costs every check that needs it, each saying so.
    torch.save(trained_pixels().state_dict(), ctx.workdir / m02.STATE_FILE)
    ctx.cache.clear()
    costs_only(ctx, m02.registry, "save", {"program_loads", "holdout_accuracy", "eval_mode", "state_dict_matches"},
               "digits_custom.pt2 could not be loaded")


# -- hooks -------------------------------------------------------------------------------------
def hook_functions(remove=True, leaves_only=True, dead_means="zero_output"):
    def activation_stats(model, x):
        stats, handles = {}, []
        for name, module in model.named_modules():
            if leaves_only and list(module.children()):
                continue
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: stats.__setitem__(name, {
                    "mean": o.mean().item(), "std": o.std().item(), "zero_fraction": (o == 0).float().mean().item()})))
        with torch.no_grad():
            model(x)
        if remove:
            for handle in handles:
                handle.remove()
        return stats

    def find_dead_layer(model, x):
        names = list(activation_stats(model, x))
        for i, (name, s) in enumerate(activation_stats(model, x).items()):
            if s["zero_fraction"] == 1.0:
                return names[i - 1] if dead_means == "layer_before" else name
        return None
    return {"activation_stats": activation_stats, "find_dead_layer": find_dead_layer}


def test_hooks_right(ctx):
    probe_with(ctx, "hooks", **hook_functions())
    for check in ("stats_match", "hooks_removed", "dead_layer_found", "dead_layer_hidden"):
        assert m02.registry.checks[("hooks", check)](ctx)


def test_hooks_left_registered(ctx):
    probe_with(ctx, "hooks", **hook_functions(remove=False))
    costs_only(ctx, m02.registry, "hooks", "hooks_removed", "leaves", "hook(s) registered")


def test_dead_layer_must_be_the_one_with_zero_output(ctx):
    probe_with(ctx, "hooks", **hook_functions(dead_means="layer_before"))
    fails_with(m02.registry.checks[("hooks", "dead_layer_found")], ctx, "wrong layer")


def test_a_hard_coded_dead_layer_is_caught(ctx):
    """The dead layer is drawn for each of several networks, so one name written in cannot pass."""
    functions = hook_functions()
    probe_with(ctx, "hooks", activation_stats=functions["activation_stats"], find_dead_layer=lambda model, x: "act3")
    costs_only(ctx, m02.registry, "hooks", ("dead_layer_found", "dead_layer_hidden"), "names the wrong layer in network")


def test_wrong_statistics_are_named(ctx):
    functions = hook_functions()
    stats = functions["activation_stats"]

    def activation_stats(model, x):  # the std of the input instead of the output
        return {name: {**s, "std": s["std"] + 0.5} for name, s in stats(model, x).items()}
    probe_with(ctx, "hooks", activation_stats=activation_stats, find_dead_layer=functions["find_dead_layer"])
    costs_only(ctx, m02.registry, "hooks", "stats_match", "['std'] is wrong")


# -- branch ------------------------------------------------------------------------------------
class AbstainEager(nn.Module):
    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold

    def forward(self, logits):
        return torch.stack([row.argmax() if row.max() >= self.threshold else torch.tensor(-1)
                            for row in logits.softmax(1)])


class AbstainWhere(AbstainEager):
    def forward(self, logits):
        confidence, label = logits.softmax(1).max(1)
        return torch.where(confidence >= self.threshold, label, torch.full_like(label, -1))


class NeverAbstains(AbstainEager):
    def forward(self, logits):
        return logits.argmax(1)


def test_branch_right(ctx):
    probe_with(ctx, "branch", Abstain=AbstainWhere)
    assert m02.branch_matches_eager(ctx) and m02.branch_exports(ctx)


def test_python_branch_works_eagerly_but_does_not_export(ctx):
    probe_with(ctx, "branch", Abstain=AbstainEager)
    assert m02.branch_matches_eager(ctx)
    failure = fails_with(m02.branch_exports, ctx, "data-dependent branch")
    assert "torch.where" in failure.hint
    costs_only(ctx, m02.registry, "branch", "exports", "data-dependent branch")


def test_branch_that_never_abstains(ctx):
    """Wrong answers cost the answers check only: the export check compares the program with the learner's module."""
    probe_with(ctx, "branch", Abstain=NeverAbstains)
    costs_only(ctx, m02.registry, "branch", "matches_eager", "differ from the reference")


def test_branch_wrong_only_on_another_batch_is_still_caught(ctx):
    """A module right on the grader's batch but not on another (as its program is): the eager check costs it."""
    given = m02.branch_inputs(ctx)
    never_abstains = given["other_logits"].argmax(1)
    craft(ctx, m02.branch, eager=m02.abstain_reference(given["logits"], given["threshold"]),
          eager_other=never_abstains, exported=never_abstains)
    costs_only(ctx, m02.registry, "branch", "matches_eager", "differ from the reference")


def test_program_that_disagrees_with_its_module_costs_the_export_check(ctx):
    """A program whose answers on another batch size are not its module's: the export baked something in."""
    given = m02.branch_inputs(ctx)
    right = {name: m02.abstain_reference(given[rows], given["threshold"])
             for name, rows in (("eager", "logits"), ("eager_other", "other_logits"))}
    craft(ctx, m02.branch, **right, exported=given["other_logits"].argmax(1))
    costs_only(ctx, m02.registry, "branch", "exports", "baked in the example's shapes")
