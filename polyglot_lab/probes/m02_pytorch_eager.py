"""The kernel side of module 02_pytorch_eager: one probe per exercise, run in the learner's kernel
after the exercise's cells. Written by `make notebooks` from the `# <kernel>` blocks of
graders/checks/m02_pytorch_eager.py, each in its exercise's section beside the inputs and checks:
edit those, not this file."""
import numpy as np
import torch

from polyglot_lab import models
from polyglot_lab.probe import ARRAY, ARRAYS, VALUE, need, probe, torch_call_recorder


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _module(obj, made_by: str) -> torch.nn.Module:
    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"{made_by} must give a torch.nn.Module, it gave {type(obj).__name__}")
    return obj


def _state(module: torch.nn.Module) -> dict:
    """The module's state dict as arrays (an ARRAYS output)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _weights(inputs: dict, name: str) -> dict:
    """The grader's weights for a model: the input `name`, a state dict of arrays."""
    return {k: _tensor(v) for k, v in inputs[name].items()}


def _load(module: torch.nn.Module, weights: dict, what: str) -> None:
    expected, found = sorted(weights), sorted(module.state_dict())
    if expected != found:
        raise KeyError(f"{what}'s state_dict keys must be {expected}, they are {found}")
    module.load_state_dict(weights)


TRAINING_HIDDEN = 8  # few weights, large steps: each known mistake moves them visibly


def training_setup(inputs: dict):
    """The model, batches, optimizer and scheduler of the train_epoch probe (the grader replays the same)."""
    net = models.bn_net(hidden=TRAINING_HIDDEN)
    net.load_state_dict(_weights(inputs, "net"))
    net.eval()  # train_epoch must switch to train mode itself
    X, y, size = _tensor(inputs["X"]), _tensor(inputs["y"]), int(inputs["batch_size"])
    batches = [(X[i:i + size], y[i:i + size]) for i in range(0, len(X), size)]
    optimizer = torch.optim.SGD(net.parameters(), lr=float(inputs["lr"]), momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(inputs["step_size"]), gamma=0.5)
    return net, batches, optimizer, scheduler


@probe(logits=ARRAY, state=ARRAYS)
def port(ns, io):
    inputs = io.inputs
    keras_model = models.build_keras_baseline()
    keras_model.set_weights([inputs[f"keras_{i}"] for i in range(len(keras_model.weights))])
    net = _module(need(ns, "port_keras_weights")(keras_model), "port_keras_weights").eval()
    with torch.no_grad():
        logits = net(_tensor(inputs["X"]))
    io.save(logits=logits, state=_state(net))


@probe(calls=VALUE, out_a=ARRAY, out_b=ARRAY)
def layer_norm(ns, io):
    fn, inputs = need(ns, "layer_norm"), io.inputs
    recorder = torch_call_recorder(qualified=True)
    outputs = {}
    with recorder:
        for case in ("a", "b"):
            outputs[f"out_{case}"] = fn(_tensor(inputs[f"x_{case}"]), _tensor(inputs[f"weight_{case}"]),
                                        _tensor(inputs[f"bias_{case}"]), float(inputs[f"eps_{case}"]))
    io.save(calls=sorted(recorder.calls), **outputs)


@probe(is_function=VALUE, y=ARRAY, grad=ARRAY)
def silu(ns, io):
    function, inputs = need(ns, "SiLUFunction"), io.inputs
    is_function = isinstance(function, type) and issubclass(function, torch.autograd.Function)
    io.save(is_function=is_function)
    if not is_function:
        return
    x = _tensor(inputs["x"]).requires_grad_()
    y = function.apply(x)
    y.backward(_tensor(inputs["grad_output"]))
    io.save(y=y, **({"grad": x.grad} if x.grad is not None else {}))


@probe(out=ARRAY)
def block(ns, io):
    inputs = io.inputs
    residual = _module(need(ns, "ResidualBlock")(int(inputs["dim"]), int(inputs["hidden"])),
                       "ResidualBlock(dim, hidden)")
    _load(residual, _weights(inputs, "block"), "ResidualBlock")
    with torch.no_grad():
        io.save(out=residual(_tensor(inputs["x"])))


@probe(logits=ARRAY, gradients=VALUE, buffers=ARRAYS)
def model(ns, io):
    inputs = io.inputs
    torch.manual_seed(int(inputs["seed"]))
    net = _module(need(ns, "DigitsNet")(_tensor(inputs["mean"]), _tensor(inputs["std"])), "DigitsNet(mean, std)")
    net.train()
    logits = net(_tensor(inputs["X"]))
    torch.nn.functional.cross_entropy(logits, _tensor(inputs["y"])).backward()
    gradients = {name: (None if p.grad is None else float(p.grad.norm())) for name, p in net.named_parameters()}
    io.save(logits=logits.detach(), gradients=gradients, buffers={k: v for k, v in net.named_buffers()})


@probe(first=ARRAY, batch_sizes=VALUE, second_epoch=ARRAY, same_seed=ARRAY, other_seed=ARRAY)
def loader(ns, io):
    make_loader, inputs = need(ns, "make_loader"), io.inputs
    n, batch_size, seed = int(inputs["n"]), int(inputs["batch_size"]), int(inputs["seed"])
    X = np.repeat(np.arange(n, dtype=np.float32)[:, None], 64, axis=1)
    y = np.arange(n, dtype=np.int64)  # labels are row ids, so the order of rows shows

    def epoch(loader):
        return [np.asarray(batch[1]).ravel() for batch in loader]

    first_loader = make_loader(X, y, batch_size, seed)
    first = epoch(first_loader)
    io.save(first=np.concatenate(first), batch_sizes=[len(b) for b in first],
            second_epoch=np.concatenate(epoch(first_loader)),
            same_seed=np.concatenate(epoch(make_loader(X, y, batch_size, seed))),
            other_seed=np.concatenate(epoch(make_loader(X, y, batch_size, seed + 1))))


class _LoopRecorder:
    """Watches a training loop without changing what it computes: each forward pass of the model (its mode, which
    of the given batches, the weights it saw), each backward (the loss, the gradient it computed and what .grad then
    held) and each optimizer step (which optimizer, the learning rate, the gradients it stepped with)."""
    MAX_EVENTS = 200  # a runaway loop is recorded up to here

    def __init__(self, net, batches, optimizer):
        from torch.optim.optimizer import register_optimizer_step_pre_hook
        from torch.overrides import TorchFunctionMode
        self.net, self.batches, self.optimizer = net, batches, optimizer
        self.params = dict(net.named_parameters())
        self.events: list = []
        self.arrays: dict = {"weights": {}, "fresh": {}, "accumulated": {}, "stepped": {}}
        self._fresh: dict = {}
        self._register_step_hook = register_optimizer_step_pre_hook
        recorder = self

        class BackwardWatch(TorchFunctionMode):  # sees loss.backward() and torch.autograd.backward(loss)
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func not in (torch.Tensor.backward, torch.autograd.backward):
                    return func(*args, **(kwargs or {}))
                recorder._fresh = {}
                result = func(*args, **(kwargs or {}))
                recorder._backward(args[0] if args else kwargs.get("tensors"))
                return result
        self._watch = BackwardWatch()

    def _event(self, kind: str, arrays: dict | None = None, **facts) -> None:
        if len(self.events) >= self.MAX_EVENTS:
            return
        index = len(self.events)
        self.events.append({"event": kind, **facts})
        for name, values in (arrays or {}).items():
            self.arrays[name].update({f"{index}.{key}": value for key, value in values.items()})

    def _grads(self) -> dict:
        return {name: p.grad.detach().cpu().clone() for name, p in self.params.items() if p.grad is not None}

    def _forward(self, module, args):
        x = args[0].detach().cpu() if args and isinstance(args[0], torch.Tensor) else None
        batch = next((i for i, (xb, _) in enumerate(self.batches)
                      if x is not None and xb.shape == x.shape and torch.equal(xb, x)), -1)
        self._event("forward", {"weights": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}},
                    training=bool(module.training), grad=torch.is_grad_enabled(), batch=batch)

    def _backward(self, loss):
        loss = loss[0] if isinstance(loss, (tuple, list)) and loss else loss
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) and loss.numel() == 1 else None
        self._event("backward", {"fresh": dict(self._fresh), "accumulated": self._grads()}, loss=value)

    def _step(self, optimizer, args, kwargs):
        self._event("step", {"stepped": self._grads()}, given=optimizer is self.optimizer,
                    optimizer=type(optimizer).__name__, lr=float(self.optimizer.param_groups[0]["lr"]))

    def __enter__(self):
        self._handles = [self.net.register_forward_pre_hook(self._forward), self._register_step_hook(self._step)]
        self._handles += [p.register_hook(lambda grad, name=name: self._fresh.__setitem__(name, grad.detach().cpu().clone()))
                          for name, p in self.params.items()]
        self._watch.__enter__()
        return self

    def __exit__(self, *exc):
        self._watch.__exit__(*exc)
        for handle in self._handles:
            handle.remove()


@probe(returned=VALUE, events=VALUE, scheduler_steps=VALUE, weights=ARRAYS, fresh=ARRAYS, accumulated=ARRAYS,
       stepped=ARRAYS)
def train_epoch(ns, io):
    inputs = io.inputs
    net, batches, optimizer, scheduler = training_setup(inputs)
    with _LoopRecorder(net, batches, optimizer) as recorder:
        returned = need(ns, "train_epoch")(net, batches, optimizer, scheduler, float(inputs["max_grad_norm"]))
    io.save(returned=float(returned), events=recorder.events, scheduler_steps=int(scheduler.last_epoch),
            **recorder.arrays)


@probe(logits=ARRAY, requires_grad=VALUE)
def predict(ns, io):
    inputs = io.inputs
    net = models.bn_net(dropout=0.5)
    net.load_state_dict(_weights(inputs, "net"))
    net.train()  # as a training loop leaves it
    logits = need(ns, "predict")(net, inputs["X"])
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"predict must return a torch.Tensor, it returned {type(logits).__name__}")
    io.save(logits=logits.detach(), requires_grad=bool(logits.requires_grad))


@probe(history=VALUE)
def fit(ns, io):
    history = need(ns, "history")
    io.save(history={str(k): [float(v) for v in values] for k, values in dict(history).items()})


@probe(stats=VALUE, hooks_left=VALUE, dead_public=VALUE, dead_hidden=VALUE)
def hooks(ns, io):
    inputs = io.inputs
    widths = [int(w) for w in inputs["widths"]]
    x = _tensor(inputs["x"])
    for tag in ("public", "hidden"):
        found = []
        for number in range(int(inputs["nets"])):
            net = models.relu_mlp(widths)
            net.load_state_dict(_weights(inputs, f"{tag}{number}"))
            if tag == "public" and number == 0:
                stats = need(ns, "activation_stats")(net, x)
                io.save(stats={str(name): {k: float(v) for k, v in dict(s).items()} for name, s in dict(stats).items()},
                        hooks_left=sum(len(m._forward_hooks) for m in net.modules()))
            found.append(need(ns, "find_dead_layer")(net, x))
        io.save(**{f"dead_{tag}": found})


@probe(eager=ARRAY, eager_other=ARRAY, exported=ARRAY, export_error=VALUE)
def branch(ns, io):
    inputs = io.inputs
    module = _module(need(ns, "Abstain")(float(inputs["threshold"])), "Abstain(threshold)")
    with torch.no_grad():
        io.save(eager=module(_tensor(inputs["logits"])), eager_other=module(_tensor(inputs["other_logits"])))
    try:
        batch = torch.export.Dim("batch")
        program = torch.export.export(module, (_tensor(inputs["logits"][:3]),), dynamic_shapes=({0: batch},))
        with torch.no_grad():
            io.save(exported=program.module()(_tensor(inputs["other_logits"])))
    except Exception as exc:  # noqa: BLE001 - a failed export is the finding, not a probe error
        io.save(export_error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")
