"""The kernel side of module 01_keras_prototype: one probe per exercise, run in the learner's kernel
after the exercise's cells. Written by `make notebooks` from the `# <kernel>` blocks of
graders/checks/m01_keras_prototype.py, each in its exercise's section beside the inputs and checks:
edit those, not this file."""
import numpy as np

from polyglot_lab.probe import ARRAY, FILE, VALUE, constructor_recorder, need, probe


def _describe_loss(loss):
    if loss is None or isinstance(loss, str):
        return {"name": loss}
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    name = config.get("name") or getattr(loss, "__name__", None) or type(loss).__name__
    return {"name": name, "from_logits": config.get("from_logits", getattr(loss, "from_logits", None))}


@probe(X_train=ARRAY, X_test=ARRAY, y_train=ARRAY, y_test=ARRAY)
def split(ns, io):
    inputs = io.inputs
    result = need(ns, "prepare_data")(inputs["X"], inputs["y"], int(inputs["seed"]))
    if not isinstance(result, (tuple, list)) or len(result) != 5:
        raise TypeError("prepare_data must return 5 values (X_train, X_test, y_train, y_test, scaler), "
                        f"it returned {type(result).__name__}"
                        + (f" of length {len(result)}" if hasattr(result, "__len__") else ""))
    X_train, X_test, y_train, y_test, _scaler = result
    io.save(X_train=np.asarray(X_train), X_test=np.asarray(X_test),
            y_train=np.asarray(y_train), y_test=np.asarray(y_test))


@probe(**{"model.keras": FILE})
def model(ns, io):
    built = need(ns, "build_model")()
    if not hasattr(built, "save"):
        raise TypeError(f"build_model must return a keras.Model, it returned {type(built).__name__}")
    built.save(io.output_path("model.keras"))


def _losses_on(trained, splits: dict) -> dict:
    """The trained model's loss on each candidate validation set: the one early stopping validated on gives back
    one of history's val_loss values (the weights kept are those of one epoch)."""
    losses: dict[str, float | str] = {}
    for name, (X, y) in splits.items():
        try:
            losses[name] = float(trained.evaluate(X, y, verbose=0, return_dict=True)["loss"])
        except Exception as exc:  # noqa: BLE001 - an uncompiled model or a missing split is reported, not raised
            losses[name] = f"{type(exc).__name__}: {exc}"[:300]
    return losses


@probe(loss=VALUE, callbacks=VALUE, history=VALUE, validation_losses=VALUE)
def train(ns, io):
    trained, history, callbacks = need(ns, "model"), need(ns, "history"), need(ns, "callbacks")
    io.save(
        loss=_describe_loss(getattr(trained, "loss", None)),
        callbacks=[{"type": type(cb).__name__,
                    "monitor": getattr(cb, "monitor", None),
                    "restore_best_weights": getattr(cb, "restore_best_weights", None)}
                   for cb in list(callbacks)],
        history={str(k): [float(v) for v in values] for k, values in dict(history.history).items()},
    )
    X_train, y_train = np.asarray(need(ns, "X_train")), np.asarray(need(ns, "y_train"))
    X_test, y_test = np.asarray(need(ns, "X_test")), np.asarray(need(ns, "y_test"))
    held = int(len(X_train) * 0.8)  # where fit(validation_split=0.2) cuts: the last fifth, unshuffled
    io.save(validation_losses=_losses_on(trained, {
        "test split": (X_test, y_test), "training rows": (X_train, y_train),
        "last fifth of X_train": (X_train[held:], y_train[held:])}))


@probe(lines=VALUE, n_axes=VALUE)
def plot(ns, io):
    import matplotlib.pyplot as plt

    given = {k: io.inputs[k].tolist() for k in ("loss", "val_loss", "accuracy", "val_accuracy")}
    figure = need(ns, "plot_history")(given)
    if not hasattr(figure, "axes"):
        raise TypeError(f"plot_history must return the matplotlib Figure, it returned {type(figure).__name__}")
    lines = [np.asarray(line.get_ydata(), dtype=float).tolist() for ax in figure.axes for line in ax.get_lines()]
    io.save(lines=lines, n_axes=len(figure.axes))
    plt.close(figure)


@probe(scaler_mean=ARRAY, scaler_scale=ARRAY, scaler_var=ARRAY, **{"trained.keras": FILE})
def save(ns, io):
    """The notebook's scaler and trained `model`: the saved file must be that model behind the scaler's statistics."""
    scaler, trained = need(ns, "scaler"), need(ns, "model")
    io.save(scaler_mean=np.asarray(scaler.mean_, np.float64), scaler_scale=np.asarray(scaler.scale_, np.float64),
            scaler_var=np.asarray(scaler.var_, np.float64))
    trained.save(io.output_path("trained.keras"))


@probe(torch_predictions=ARRAY, processes=VALUE)
def backends(ns, io):
    """Records the processes predict_under_backend starts (subprocess.Popen: run, call and check_output go through
    it) with the KERAS_BACKEND each gets: the evidence that another backend computed the predictions."""
    import os
    import subprocess

    def child(args, kwargs) -> dict:  # read as the process starts: the environment it is given
        env = kwargs.get("env")
        backend = (env if env is not None else os.environ).get("KERAS_BACKEND")
        return {"backend": None if backend is None else str(backend),
                "command": str(args[0] if args else kwargs.get("args"))[:300]}

    inputs = io.inputs
    with constructor_recorder(subprocess.Popen, child) as started:
        predictions = need(ns, "predict_under_backend")(str(inputs["path"]), "torch", inputs["X"])
    io.save(torch_predictions=np.asarray(predictions, dtype=np.float64), processes=started)
