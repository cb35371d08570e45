"""Checks for module 01 (Keras prototype). Models are loaded in the sandboxed checker (ctx.run, Keras's safe mode);
the grader reads back their shapes, layers and predictions and decides here."""
from __future__ import annotations

# <kernel>  imports of the probes (the kernel side, written to the probes file by `make notebooks`)
import numpy as np

from polyglot_lab.probe import ARRAY, FILE, VALUE, need, probe
# </kernel>

from graders.checks import (
    CheckContext,
    CheckFailed,
    Registry,
    check_holdout_accuracy,
    describe_array,
)
from graders.checks.compare import expect_close
from graders.checks.runtimes import keras_outputs, keras_summary
from polyglot_lab.data import digits

registry = Registry("01_keras_prototype")
PARAM_BUDGET = 20_000
ACCURACY_BAR = 0.95
(MODEL_FILE,) = registry.artifacts("save")


class KerasFile:
    """A .keras file the run wrote, as the checker saw it: `summary` (shapes, layers, parameters), and predictions."""

    def __init__(self, ctx: CheckContext, path, what: str):
        self.ctx, self.path, self.what = ctx, path, what
        self.summary = keras_summary(ctx, path, f"{what} could not be loaded by Keras")

    def input_shape(self):
        return _shape(self.summary["input_shape"])

    def output_shape(self):
        return _shape(self.summary["output_shape"])

    def count_params(self) -> int:
        return int(self.summary["params"])

    def predict(self, X: np.ndarray, call: bool = False) -> np.ndarray:
        return keras_outputs(self.ctx, self.path, np.ascontiguousarray(X, np.float32),
                             f"{self.what} fails on a batch of {len(X)} rows", call=call)


def load_keras_model(ctx: CheckContext, path, what: str) -> KerasFile:
    return KerasFile(ctx, path, what)


# <kernel>  helpers of this module's probes
def _describe_loss(loss):
    if loss is None or isinstance(loss, str):
        return {"name": loss}
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    name = config.get("name") or getattr(loss, "__name__", None) or type(loss).__name__
    return {"name": name, "from_logits": config.get("from_logits", getattr(loss, "from_logits", None))}
# </kernel>


# -- split -----------------------------------------------------------------------------------
# <kernel>
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
# </kernel>


@registry.inputs("split")
def split_inputs(ctx: CheckContext) -> dict:
    X, y = digits()
    return {"X": X, "y": y, "seed": np.int64(ctx.rng("split").integers(0, 2**31 - 1))}


def reference_split(X, y, seed):
    from sklearn.model_selection import train_test_split
    return train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)


@registry.check("split", "split_rows")
def split_rows(ctx: CheckContext):
    out, given = ctx.outputs(split), split_inputs(ctx)
    _, _, y_train, y_test = reference_split(given["X"], given["y"], int(given["seed"]))
    for name, expected in (("X_train", (len(y_train), 64)), ("X_test", (len(y_test), 64))):
        if out[name].shape != expected:
            raise CheckFailed(f"{name} has the wrong shape.", expected=str(expected), found=describe_array(out[name]),
                              hint="train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)")
    found_test = np.asarray(out["y_test"]).reshape(len(y_test), -1)
    found_test = found_test.argmax(1) if found_test.shape[1] > 1 else found_test[:, 0]
    if not np.array_equal(found_test.astype(np.int64), y_test):
        counts = np.bincount(found_test.astype(np.int64), minlength=10)
        if not np.array_equal(counts, np.bincount(y_test, minlength=10)):
            raise CheckFailed("The split is not stratified: the test set's class counts differ from the reference.",
                              expected=f"test class counts {np.bincount(y_test, minlength=10).tolist()}",
                              found=f"test class counts {counts.tolist()}", hint="Pass stratify=y to train_test_split.")
        raise CheckFailed("The rows are not split as train_test_split(..., random_state=seed) splits them.",
                          hint="Use the `seed` argument as random_state.")
    return f"{len(y_train)} training and {len(y_test)} test rows, stratified"


def _standardised(a: np.ndarray, tol=1e-3) -> bool:
    a = np.asarray(a, dtype=np.float64)
    varying = a.std(0) > tol
    return bool(np.all(np.abs(a.mean(0)) < tol) and np.all(np.abs(a.std(0)[varying] - 1) < tol))


@registry.check("split", "leak_free_scaling")
def leak_free_scaling(ctx: CheckContext):
    out = ctx.outputs(split)
    X_train, X_test = np.asarray(out["X_train"], np.float64), np.asarray(out["X_test"], np.float64)
    if X_train.ndim != 2 or X_test.ndim != 2:
        raise CheckFailed("X_train and X_test must be 2-D arrays.", found=f"{describe_array(X_train)}, {describe_array(X_test)}")
    train_fit, test_fit = _standardised(X_train), _standardised(X_test)
    if train_fit and not test_fit:
        return "standardised with the training rows' statistics"
    if train_fit and test_fit:
        raise CheckFailed("The scaler was fit again on the test set (fit_transform on X_test): "
                          "the test rows are standardised with their own statistics.",
                          expected="X_test transformed with the scaler fit on X_train",
                          found="X_test has mean 0 and std 1 itself", hint="scaler.transform(X_test), not fit_transform.")
    if test_fit:
        raise CheckFailed("The scaler was fit on the test set: its statistics leak into training.",
                          expected="training columns with mean 0 and std 1", found="test columns with mean 0 and std 1",
                          hint="scaler = StandardScaler().fit(X_train)")
    if X_train.min() >= 0 and X_train.max() > 2:
        raise CheckFailed("The features are not standardised: they are still raw pixels.",
                          expected="columns with mean 0 and std 1", found=f"values from {X_train.min():g} to {X_train.max():g}",
                          hint="StandardScaler().fit(X_train), then transform both splits.")
    raise CheckFailed("The scaler was fit on all the data before the split: test statistics leak into training.",
                      expected="training columns with mean 0 and std 1 exactly",
                      found=f"training column means up to {np.abs(X_train.mean(0)).max():.3g}",
                      hint="Split first, then fit the scaler on X_train only.")


@registry.check("split", "integer_labels")
def integer_labels(ctx: CheckContext):
    out = ctx.outputs(split)
    for name in ("y_train", "y_test"):
        labels = np.asarray(out[name])
        if labels.ndim == 2 and labels.shape[1] == 10:
            raise CheckFailed(f"{name} is one-hot encoded, but sparse_categorical_crossentropy wants integer class ids.",
                              expected="shape (n,), integer dtype", found=describe_array(labels),
                              hint="Keep y as it comes: integers 0..9. Drop to_categorical / one-hot encoding.")
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise CheckFailed(f"{name} is not integer-encoded for the loss.", expected="shape (n,), integer dtype",
                              found=describe_array(labels), hint="y.astype('int64')")
        if labels.min() < 0 or labels.max() > 9:
            raise CheckFailed(f"{name} has labels outside 0..9.", found=f"{labels.min()}..{labels.max()}")
    return "labels are integer class ids"


# -- model -----------------------------------------------------------------------------------
def built_model(ctx: CheckContext):
    saved = ctx.outputs(model).get("model.keras")  # ctx.outputs says why there is none, when it knows
    if saved is None:
        raise CheckFailed("The model build_model() returned was not saved as a plain file.")
    return ctx.cached("built_model", lambda: load_keras_model(ctx, saved, "The model build_model() returned"))


def _shape(shape):
    return tuple(shape[0]) if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)) else tuple(shape)


# <kernel>
@probe(**{"model.keras": FILE})
def model(ns, io):
    built = need(ns, "build_model")()
    if not hasattr(built, "save"):
        raise TypeError(f"build_model must return a keras.Model, it returned {type(built).__name__}")
    built.save(io.output_path("model.keras"))
# </kernel>


@registry.check("model", "io_shapes")
def io_shapes(ctx: CheckContext):
    model = built_model(ctx)
    found = (model.input_shape(), model.output_shape())
    if found != ((None, 64), (None, 10)):
        raise CheckFailed("The model's input or output shape is wrong.", expected="input (None, 64), output (None, 10)",
                          found=f"input {found[0]}, output {found[1]}", hint="keras.Input(shape=(64,)) ... Dense(10)")
    return "input (None, 64), output (None, 10)"


@registry.check("model", "param_budget")
def param_budget(ctx: CheckContext):
    count = built_model(ctx).count_params()
    if count > PARAM_BUDGET:
        raise CheckFailed("The model is over the parameter budget.", expected=f"at most {PARAM_BUDGET:,} parameters",
                          found=f"{count:,} parameters", hint="Use fewer or narrower hidden layers.")
    return f"{count:,} parameters (budget {PARAM_BUDGET:,})"


def count_softmax(model: KerasFile) -> int:
    """Softmax layers and softmax activations inside the model (nested models included)."""
    layers = model.summary["layers"]
    inner = [layer for layer in layers if layer["depth"] > 0] if len(layers) > 1 else layers
    return sum(layer["type"] == "Softmax" or layer["activation"] == "softmax" for layer in inner)


def probability_rows(model: KerasFile, X) -> tuple[bool, np.ndarray]:
    out = np.asarray(model.predict(X, call=True))
    return bool(np.all(out >= -1e-6) and np.allclose(out.sum(1), 1.0, atol=1e-4)), out


@registry.check("model", "softmax_once")
def softmax_once(ctx: CheckContext):
    model = built_model(ctx)
    X = ctx.rng("softmax").normal(size=(64, 64)).astype(np.float32) * 3
    is_probability, out = probability_rows(model, X)
    softmaxes = count_softmax(model)
    if not is_probability or softmaxes == 0:
        raise CheckFailed("Softmax is missing: the model outputs logits, not probabilities.",
                          expected="rows that are non-negative and sum to 1", found=f"row sums {np.round(out.sum(1)[:3], 3).tolist()}...",
                          hint="Dense(10, activation='softmax') as the last layer.")
    if softmaxes > 1:
        raise CheckFailed(f"Softmax is applied {softmaxes} times: a doubled softmax squashes every probability toward 0.1.",
                          expected="one softmax", found=f"{softmaxes} softmax activations",
                          hint="Keep activation='softmax' on the last Dense layer and drop the extra Activation/Softmax.")
    return "outputs are probabilities from a single softmax"


# -- train -----------------------------------------------------------------------------------
# <kernel>
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
# </kernel>


@registry.check("train", "loss_matches_labels")
def loss_matches_labels(ctx: CheckContext):
    loss = ctx.outputs(train)["loss"]
    name = str(loss.get("name") or "")
    normalized = name.replace("_", "").lower()
    if normalized == "categoricalcrossentropy":
        raise CheckFailed("categorical_crossentropy expects one-hot labels; the labels are integer class ids.",
                          expected="sparse_categorical_crossentropy", found=name)
    if normalized != "sparsecategoricalcrossentropy":
        raise CheckFailed("The loss is not sparse categorical cross-entropy.", expected="sparse_categorical_crossentropy",
                          found=name or "no loss (was the model compiled?)")
    if loss.get("from_logits"):
        raise CheckFailed("from_logits=True, but the model already outputs probabilities (softmax).",
                          expected="from_logits=False", found="from_logits=True")
    return "sparse categorical cross-entropy on probabilities"


@registry.check("train", "early_stopping")
def early_stopping(ctx: CheckContext):
    callbacks = ctx.outputs(train)["callbacks"]
    stoppers = [cb for cb in callbacks if cb["type"] == "EarlyStopping"]
    if not stoppers:
        raise CheckFailed("No EarlyStopping callback in `callbacks`.", found=str([cb["type"] for cb in callbacks]),
                          hint="keras.callbacks.EarlyStopping(monitor='val_loss', patience=5, restore_best_weights=True)")
    stopper = stoppers[0]
    if stopper["monitor"] != "val_loss" or not stopper["restore_best_weights"]:
        raise CheckFailed("EarlyStopping must watch val_loss and restore the best weights.",
                          expected="monitor='val_loss', restore_best_weights=True",
                          found=f"monitor={stopper['monitor']!r}, restore_best_weights={stopper['restore_best_weights']}")
    return "EarlyStopping(monitor='val_loss', restore_best_weights=True)"


@registry.check("train", "curves_recorded")
def curves_recorded(ctx: CheckContext):
    history = ctx.outputs(train)["history"]
    missing = [k for k in ("loss", "val_loss", "accuracy", "val_accuracy") if k not in history]
    if missing:
        raise CheckFailed(f"history.history lacks {', '.join(missing)}.", found=str(sorted(history)),
                          hint="metrics=['accuracy'] in compile, and validation data (validation_split=0.2) in fit.")
    loss = history["loss"]
    if len(loss) < 2 or not loss[-1] < loss[0]:
        raise CheckFailed("The training loss did not go down.", found=f"loss per epoch {np.round(loss, 4).tolist()}")
    return f"{len(loss)} epochs, loss {loss[0]:.3f} -> {loss[-1]:.3f}"


# -- plot ------------------------------------------------------------------------------------
# <kernel>
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
# </kernel>


@registry.inputs("plot")
def plot_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("plot")
    epochs = int(rng.integers(5, 12))
    decay = np.sort(rng.uniform(0.05, 2.0, size=(2, epochs)), axis=1)[:, ::-1]
    rise = np.sort(rng.uniform(0.3, 1.0, size=(2, epochs)), axis=1)
    return {"loss": decay[0], "val_loss": decay[1], "accuracy": rise[0], "val_accuracy": rise[1]}


@registry.check("plot", "four_curves")
def four_curves(ctx: CheckContext):
    out, given = ctx.outputs(plot), plot_inputs(ctx)
    lines = [np.asarray(line, dtype=float) for line in out["lines"]]
    missing = [k for k, series in given.items()
               if not any(line.shape == series.shape and np.allclose(line, series) for line in lines)]
    if missing:
        raise CheckFailed(f"The figure does not show: {', '.join(missing)}.",
                          expected="a line for each of loss, val_loss, accuracy, val_accuracy", found=f"{len(lines)} line(s)")
    if out["n_axes"] < 2:
        raise CheckFailed("Loss and accuracy share one panel; give each its own.", expected="2 axes", found=f"{out['n_axes']} axes",
                          hint="fig, (ax_loss, ax_acc) = plt.subplots(1, 2)")
    return "loss and accuracy panels with training and validation curves"


# -- save ------------------------------------------------------------------------------------
def saved_model(ctx: CheckContext):
    return ctx.cached("saved_model", lambda: load_keras_model(ctx, ctx.artifact(MODEL_FILE, "save"), MODEL_FILE))


@registry.check("save", "loads")
def loads(ctx: CheckContext):
    model = saved_model(ctx)
    if model.input_shape() != (None, 64):
        raise CheckFailed(f"{MODEL_FILE} must take 64 raw pixel values.", expected="input (None, 64)",
                          found=f"input {model.input_shape()}")
    return f"{MODEL_FILE} loads ({model.count_params():,} parameters)"


@registry.check("save", "holdout_accuracy")
def holdout_accuracy(ctx: CheckContext):
    model = saved_model(ctx)
    return check_holdout_accuracy(model.predict, ACCURACY_BAR,
                                  hint="Train until early stopping ends it, and save the model with its Normalization "
                                       "layer in front: the grader feeds raw pixels (0..16).")


# -- backends --------------------------------------------------------------------------------
# <kernel>
@probe(torch_predictions=ARRAY)
def backends(ns, io):
    inputs = io.inputs
    predictions = need(ns, "predict_under_backend")(str(inputs["path"]), "torch", inputs["X"])
    io.save(torch_predictions=np.asarray(predictions, dtype=np.float64))
# </kernel>


@registry.inputs("backends")
def backends_inputs(ctx: CheckContext) -> dict:
    X, _ = digits()
    rng = ctx.rng("backends")
    rows = X[rng.choice(len(X), size=16, replace=False)]
    return {"X": np.clip(rows + rng.normal(0, 0.5, rows.shape), 0, 16).astype(np.float32), "path": MODEL_FILE}


@registry.check("backends", "torch_backend_parity")
def torch_backend_parity(ctx: CheckContext):
    found = ctx.outputs(backends)["torch_predictions"]
    expected = saved_model(ctx).predict(backends_inputs(ctx)["X"])  # TensorFlow's, in the checker
    diff = expect_close(found, expected, "The torch-backend predictions",
                        mistake="The torch-backend predictions differ from TensorFlow's.",
                        hint="Load the same file with KERAS_BACKEND='torch' in a fresh process; do not retrain.")
    return f"torch and TensorFlow backends agree (max abs diff {diff:.1e})"
