"""The kernel side of module 01_keras_prototype: one probe per exercise, run in the learner's kernel
after the exercise's cells. Written by `make notebooks` from the `# <kernel>` blocks of
graders/checks/m01_keras_prototype.py, each in its exercise's section beside the inputs and checks:
edit those, not this file."""
import numpy as np

from polyglot_lab.probe import ARRAY, FILE, VALUE, need, probe


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


@probe(loss=VALUE, callbacks=VALUE, history=VALUE)
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


@probe(torch_predictions=ARRAY)
def backends(ns, io):
    inputs = io.inputs
    predictions = need(ns, "predict_under_backend")(str(inputs["path"]), "torch", inputs["X"])
    io.save(torch_predictions=np.asarray(predictions, dtype=np.float64))
