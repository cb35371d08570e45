"""The checks of module 01_keras_prototype that a learner runs in the notebook (`grader.check(...)`), on the
core in polyglot_lab.checking. Written by `make notebooks` from the `# <notebook>` blocks of
graders/checks/m01_keras_prototype.py: edit those, not this file. The checks that run only at submission are not here."""
from __future__ import annotations

import numpy as np
from polyglot_lab.probes.m01_keras_prototype import (  # the probes, in the kernel side of the module
    backends,
    model,
    plot,
    save,
    split,
    train,
)

from polyglot_lab.checking import CheckContext, CheckFailed, Registry, describe_array


from polyglot_lab.checking.compare import expect_close
from polyglot_lab.checking.runtimes import keras_outputs, keras_summary
from polyglot_lab.data import digits

registry = Registry("01_keras_prototype")
PARAM_BUDGET = 20_000


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


@registry.inputs("split")
def split_inputs(ctx: CheckContext) -> dict:
    X, y = digits()
    return {"X": X, "y": y, "seed": np.int64(ctx.rng("split").integers(0, 2**31 - 1))}


def reference_split(X, y, seed):
    from sklearn.model_selection import train_test_split
    return train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)


def _class_ids(labels, n: int) -> np.ndarray:
    """Labels as class ids whatever their encoding (one-hot costs integer_labels only, not the split checks)."""
    found = np.asarray(labels).reshape(n, -1)
    return (found.argmax(1) if found.shape[1] > 1 else found[:, 0]).astype(np.int64)


COMMON_CONSTANT_SEEDS = (0, 1, 42, 123, 1234, 2024)


@registry.check("split", "split_rows")
def split_rows(ctx: CheckContext):
    out, given = ctx.outputs(split), split_inputs(ctx)
    X, y, seed = given["X"], given["y"], int(given["seed"])
    _, _, y_train, y_test = reference_split(X, y, seed)
    for name, expected in (("X_train", (len(y_train), 64)), ("X_test", (len(y_test), 64))):
        if out[name].shape != expected:
            raise CheckFailed(f"{name} has the wrong shape.", expected=str(expected), found=describe_array(out[name]),
                              hint="train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)")
    found_test = _class_ids(out["y_test"], len(y_test))
    if np.array_equal(found_test, y_test):
        return f"{len(y_train)} training and {len(y_test)} test rows, stratified"
    from sklearn.model_selection import train_test_split

    expected_counts, counts = np.bincount(y_test, minlength=10), np.bincount(found_test, minlength=10)
    observed = f"test labels {found_test[:8].tolist()}..., class counts {counts.tolist()}"
    reference = f"test labels {y_test[:8].tolist()}..., class counts {expected_counts.tolist()}"
    if np.array_equal(found_test, train_test_split(y, test_size=0.2, random_state=seed)[1]):
        raise CheckFailed("The split is not stratified: these are the rows train_test_split gives with "
                          "random_state=seed but without stratify=y.", expected=reference, found=observed,
                          hint="Pass stratify=y to train_test_split.")
    # Stratified splits share their class counts whatever the seed (up to one row where shares tie).
    if np.abs(counts - expected_counts).max() <= 1:
        constant = next((c for c in COMMON_CONSTANT_SEEDS if c != seed and np.array_equal(
            found_test, train_test_split(y, test_size=0.2, stratify=y, random_state=c)[1])), None)
        cause = (f"random_state={constant}, a constant, instead of the `seed` argument" if constant is not None
                 else "another random_state than the `seed` argument (was it passed on?)")
        raise CheckFailed(f"The split is stratified but not the one random_state=seed gives: {cause}.",
                          expected=reference, found=observed, hint="train_test_split(..., random_state=seed)")
    raise CheckFailed("The test rows are not those of train_test_split(X, y, test_size=0.2, stratify=y, "
                      "random_state=seed), and their class counts differ from a stratified split's.",
                      expected=reference, found=observed,
                      hint="train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed), nothing else.")


@registry.check("split", "float32_features")
def float32_features(ctx: CheckContext):
    out = ctx.outputs(split)
    wrong = {name: out[name].dtype for name in ("X_train", "X_test") if out[name].dtype != np.float32}
    if wrong:
        raise CheckFailed(f"The features are not float32: {', '.join(f'{k} is {v}' for k, v in wrong.items())}.",
                          expected="float32", found=", ".join(str(v) for v in wrong.values()),
                          hint="StandardScaler returns float64: .astype('float32') on both splits.")
    return "float32 features"


def _standardised(a: np.ndarray, tol=1e-3) -> bool:
    a = np.asarray(a, dtype=np.float64)
    varying = a.std(0) > tol
    return bool(np.all(np.abs(a.mean(0)) < tol) and np.all(np.abs(a.std(0)[varying] - 1) < tol))


def scaling_variants(X, X_train, X_test) -> dict:
    """(train, test) features as each known way of scaling makes them, from the reference rows."""
    from sklearn.preprocessing import StandardScaler

    def fit(rows):
        return StandardScaler().fit(rows)

    on_train, on_test, on_all = fit(X_train), fit(X_test), fit(X)
    return {
        "right": (on_train.transform(X_train), on_train.transform(X_test)),
        "test_raw": (on_train.transform(X_train), X_test),
        "test_refit": (on_train.transform(X_train), on_test.transform(X_test)),
        "fit_on_test": (on_test.transform(X_train), on_test.transform(X_test)),
        "fit_on_all": (on_all.transform(X_train), on_all.transform(X_test)),
        "raw": (X_train, X_test),
    }


SCALING_MISTAKES = {  # what went wrong, what the learner's features are, the fix (a hint, shown when asked for)
    "test_raw": ("X_test was not transformed: the scaler was fit on X_train, but the test rows are still raw pixels.",
                 "X_train standardised, X_test raw pixels (0..16)", "scaler.transform(X_test) too."),
    "test_refit": ("The scaler was fit again on the test set (fit_transform on X_test): the test rows are "
                   "standardised with their own statistics, not the training rows'.",
                   "X_test standardised with the statistics of X_test", "scaler.transform(X_test), not fit_transform."),
    "fit_on_test": ("The scaler was fit on the test set: its statistics leak into training.",
                    "both splits transformed by a scaler fit on X_test", "scaler = StandardScaler().fit(X_train)"),
    "fit_on_all": ("The scaler was fit on all the data before the split: test statistics leak into training.",
                   "both splits transformed by a scaler fit on all of X, before the split",
                   "Split first, then fit the scaler on X_train only."),
    "raw": ("The features are not standardised: they are still raw pixels.", "raw pixels (0..16) in both splits",
            "StandardScaler().fit(X_train), then transform both splits."),
}


def _same_features(found: np.ndarray, expected: np.ndarray) -> bool:
    return found.shape == expected.shape and bool(np.allclose(found, expected, rtol=1e-5, atol=1e-4))


@registry.check("split", "leak_free_scaling")
def leak_free_scaling(ctx: CheckContext):
    out, given = ctx.outputs(split), split_inputs(ctx)
    X_train, X_test = np.asarray(out["X_train"], np.float64), np.asarray(out["X_test"], np.float64)
    if X_train.ndim != 2 or X_test.ndim != 2:
        raise CheckFailed("X_train and X_test must be 2-D arrays.", found=f"{describe_array(X_train)}, {describe_array(X_test)}")
    X, y, seed = given["X"], given["y"], int(given["seed"])
    ref_X_train, ref_X_test, ref_y_train, ref_y_test = reference_split(X, y, seed)
    rows_match = (X_train.shape == ref_X_train.shape and X_test.shape == ref_X_test.shape
                  and np.array_equal(_class_ids(out["y_train"], len(ref_y_train)), ref_y_train)
                  and np.array_equal(_class_ids(out["y_test"], len(ref_y_test)), ref_y_test))
    if rows_match:  # the grader knows the rows: compare with each way of scaling them
        variants = scaling_variants(np.asarray(X, np.float64), ref_X_train.astype(np.float64),
                                    ref_X_test.astype(np.float64))
        matched = next((name for name, (train, test) in variants.items()
                        if _same_features(X_train, train) and _same_features(X_test, test)), None)
        if matched == "right":
            return "both splits transformed with the training rows' statistics"
        if matched:
            message, found, hint = SCALING_MISTAKES[matched]
            raise CheckFailed(message, expected="both splits transformed by a scaler fit on X_train", found=found,
                              hint=hint)
        right_train, right_test = variants["right"]
        raise CheckFailed("The features are not the training rows' standardisation of the split rows.",
                          expected="StandardScaler().fit(X_train) applied to X_train and X_test",
                          found=f"max difference {np.abs(X_train - right_train).max():.3g} on X_train, "
                                f"{np.abs(X_test - right_test).max():.3g} on X_test",
                          hint="Fit the scaler on X_train only, then transform both X_train and X_test with it.")
    # Other rows than the reference (split_rows says why): judge the columns' statistics.
    train_fit, test_fit = _standardised(X_train), _standardised(X_test)
    if train_fit and X_test.min() >= 0 and X_test.max() > 2:
        message, _, hint = SCALING_MISTAKES["test_raw"]
        raise CheckFailed(message, found=f"X_test values from {X_test.min():g} to {X_test.max():g}", hint=hint)
    if train_fit and not test_fit:
        return "standardised with the training rows' statistics (judged from the columns: the rows differ)"
    if train_fit and test_fit:
        message, _, hint = SCALING_MISTAKES["test_refit"]
        raise CheckFailed(message, expected="X_test transformed with the scaler fit on X_train",
                          found="X_test has mean 0 and std 1 itself", hint=hint)
    if test_fit:
        message, _, hint = SCALING_MISTAKES["fit_on_test"]
        raise CheckFailed(message, expected="training columns with mean 0 and std 1",
                          found="test columns with mean 0 and std 1", hint=hint)
    if X_train.min() >= 0 and X_train.max() > 2:
        message, _, hint = SCALING_MISTAKES["raw"]
        raise CheckFailed(message, expected="columns with mean 0 and std 1",
                          found=f"values from {X_train.min():g} to {X_train.max():g}", hint=hint)
    raise CheckFailed("The training columns are not standardised exactly (mean 0, std 1).",
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


def built_model(ctx: CheckContext):
    saved = ctx.outputs(model).get("model.keras")  # ctx.outputs says why there is none, when it knows
    if saved is None:
        raise CheckFailed("The model build_model() returned was not saved as a plain file.")
    return ctx.cached("built_model", lambda: load_keras_model(ctx, saved, "The model build_model() returned"))


def _shape(shape):
    return tuple(shape[0]) if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)) else tuple(shape)


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


def _sums_to_one(out: np.ndarray, axis: int) -> bool:
    return bool(np.all(out >= -1e-6) and np.allclose(out.sum(axis), 1.0, atol=1e-4))


@registry.check("model", "softmax_once")
def softmax_once(ctx: CheckContext):
    model = built_model(ctx)
    # Rows of the model's own input shape: a wrong input shape costs io_shapes, not this check too.
    features = model.input_shape()[1:]
    features = features if features and all(isinstance(d, int) and d > 0 for d in features) else (64,)
    X = ctx.rng("softmax").normal(size=(64, *features)).astype(np.float32) * 3
    out = np.asarray(model.predict(X, call=True))
    softmaxes = count_softmax(model)
    row_sums = f"row sums {np.round(out.sum(1)[:3], 3).tolist()}..."
    if not _sums_to_one(out, 1):
        if _sums_to_one(out, 0):  # said from what is seen: each column over the batch sums to 1
            raise CheckFailed("Softmax normalises the wrong axis: each column (one class over the batch) sums to 1, "
                              "not each row (one sample over the 10 classes).",
                              expected="rows that are non-negative and sum to 1",
                              found=f"{row_sums}, column sums {np.round(out.sum(0)[:3], 3).tolist()}...",
                              hint="Softmax over the last axis: Softmax(axis=-1), or activation='softmax'.")
        if softmaxes:
            raise CheckFailed(f"The outputs are not probabilities, though the model has {softmaxes} softmax: "
                              "something after it changes them.", expected="rows that are non-negative and sum to 1",
                              found=f"{row_sums}, values from {out.min():.3g} to {out.max():.3g}",
                              hint="Make the softmax the last step of the model.")
        raise CheckFailed("Softmax is missing: the model outputs logits, not probabilities.",
                          expected="rows that are non-negative and sum to 1", found=row_sums,
                          hint="Dense(10, activation='softmax') as the last layer.")
    if softmaxes > 1:
        raise CheckFailed(f"Softmax is applied {softmaxes} times: a doubled softmax squashes every probability toward 0.1.",
                          expected="one softmax", found=f"{softmaxes} softmax activations",
                          hint="Keep activation='softmax' on the last Dense layer and drop the extra Activation/Softmax.")
    if softmaxes == 0:
        raise CheckFailed("The rows sum to 1, but the grader finds no softmax layer or activation in the model.",
                          expected="one softmax", found="none", hint="Dense(10, activation='softmax')")
    return "outputs are probabilities from a single softmax"


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


def _is_a_val_loss(loss, val_losses) -> bool:
    """`loss` is one of history's val_loss values (the same data, evaluated by the same model: equal to float
    rounding; another data set of this size lands this close by chance far less than once in a thousand)."""
    return isinstance(loss, float) and any(abs(v - loss) <= 1e-5 * max(1.0, abs(loss)) for v in val_losses)


@registry.check("train", "held_out_validation")
def held_out_validation(ctx: CheckContext):
    out = ctx.outputs(train)
    val_losses = out["history"].get("val_loss")
    if not val_losses:
        raise CheckFailed("No validation ran, so early stopping had nothing to watch (history has no val_loss).",
                          hint="fit(X_train, y_train, validation_split=0.2, ...)")
    losses = out["validation_losses"]
    unreadable = {name: loss for name, loss in losses.items() if not isinstance(loss, float)}
    if unreadable:
        name, why = next(iter(unreadable.items()))
        raise CheckFailed(f"The grader could not evaluate `model` on the {name}: {why}",
                          hint="Keep `model` compiled, and X_train, y_train, X_test, y_test as prepare_data returned them.")
    if _is_a_val_loss(losses["test split"], val_losses):
        raise CheckFailed("Early stopping validated on the test split: the model's loss on (X_test, y_test) is one of "
                          "history's val_loss values. The test score then no longer measures unseen data.",
                          expected="validation rows held out of X_train", found="validation_data=(X_test, y_test)",
                          hint="fit(X_train, y_train, validation_split=0.2, ...): the test split stays unseen.")
    if _is_a_val_loss(losses["training rows"], val_losses):
        raise CheckFailed("Early stopping validated on the rows it trained on: the model's loss on (X_train, y_train) is "
                          "one of history's val_loss values, so it cannot see overfitting.",
                          expected="validation rows held out of X_train", found="validation_data=(X_train, y_train)",
                          hint="fit(X_train, y_train, validation_split=0.2, ...)")
    if _is_a_val_loss(losses["last fifth of X_train"], val_losses):
        return "validated on the last fifth of X_train (validation_split=0.2)"
    return "validated on rows that are neither the test split nor the training rows"


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


def saved_model(ctx: CheckContext):
    return ctx.cached("saved_model", lambda: load_keras_model(ctx, ctx.artifact(MODEL_FILE, "save"), MODEL_FILE))


@registry.check("save", "loads")
def loads(ctx: CheckContext):
    model = saved_model(ctx)
    if model.input_shape() != (None, 64):
        raise CheckFailed(f"{MODEL_FILE} must take 64 raw pixel values.", expected="input (None, 64)",
                          found=f"input {model.input_shape()}")
    return f"{MODEL_FILE} loads ({model.count_params():,} parameters)"


def _normalised(pixels: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """What keras.layers.Normalization(mean, variance) makes of `pixels` (it divides by at least epsilon)."""
    return ((pixels - mean) / np.maximum(np.sqrt(np.maximum(variance, 0.0)), 1e-7)).astype(np.float32)


def _all_rows_statistics() -> tuple[np.ndarray, np.ndarray]:
    """A StandardScaler's mean and scale_ ** 2 over every row the learner has: a Normalization adapted before the split."""
    X, _ = digits()
    X = np.asarray(X, np.float64)
    std = X.std(0)
    return X.mean(0), np.where(std > 0, std, 1.0) ** 2


@registry.check("save", "normalization_statistics")
def normalization_statistics(ctx: CheckContext):
    out = ctx.outputs(save)
    trained = out.get("trained.keras")  # ctx.outputs says why there is none, when it knows
    if trained is None:
        raise CheckFailed("The trained `model` could not be saved by the grader's probe.")
    inner = ctx.cached("trained_model", lambda: load_keras_model(ctx, trained, "The trained `model`"))
    mean, scale, var = out["scaler_mean"], out["scaler_scale"], out["scaler_var"]
    # Random pixels 0..16, so that pixels constant in the training rows (scale_ 1, var_ 0) take other values too.
    pixels = ctx.rng("normalization").integers(0, 17, size=(64, 64)).astype(np.float64)
    found = saved_model(ctx).predict(pixels.astype(np.float32))
    expected = inner.predict(_normalised(pixels, mean, scale ** 2))
    if found.shape == expected.shape and np.allclose(found, expected, atol=1e-4, rtol=1e-4):
        return "the trained model behind Normalization(mean=scaler.mean_, variance=scaler.scale_ ** 2)"
    variants = {
        "variance=scaler.var_: pixels constant in the training rows get variance 0, and Keras divides them by "
        "almost 0": (mean, var),
        "the standard deviation (scaler.scale_) passed as the variance": (mean, scale),
        "the mean and the variance swapped": (scale ** 2, mean),
        "no Normalization (or one adapted to the already standardised X_train): raw pixels reach the model":
            (np.zeros_like(mean), np.ones_like(mean)),
        "statistics of all the digits (training and test rows), not the scaler's": _all_rows_statistics(),
    }
    if np.allclose(var, scale ** 2):  # no constant pixel: var_ is the right variance, not a mistake
        variants.pop(next(iter(variants)))
    for cause, (m, v) in variants.items():
        candidate = inner.predict(_normalised(pixels, m, v))
        if candidate.shape == found.shape and np.allclose(found, candidate, atol=1e-4, rtol=1e-4):
            raise CheckFailed(f"{MODEL_FILE} does not hold the scaler's statistics: its outputs are those of {cause}.",
                              expected="Normalization(mean=scaler.mean_, variance=scaler.scale_ ** 2) before `model`",
                              found=cause.split(":")[0],
                              hint="keras.layers.Normalization(mean=scaler.mean_, variance=scaler.scale_ ** 2)")
    found_desc = describe_array(found) if found.shape != expected.shape else \
        f"max abs diff {np.abs(found - expected).max():.3g}"
    raise CheckFailed(f"{MODEL_FILE} does not compute the trained `model` behind the scaler's statistics: on raw "
                      "pixels its outputs differ from model((pixels - scaler.mean_) / scaler.scale_). Either the "
                      "Normalization holds other statistics, or the model inside is not the trained `model`.",
                      expected="Normalization(mean=scaler.mean_, variance=scaler.scale_ ** 2), then the trained `model`",
                      found=found_desc,
                      hint="keras.Sequential([keras.Input((64,)), keras.layers.Normalization(mean=scaler.mean_, "
                           "variance=scaler.scale_ ** 2), model])")


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


def _asks_for_torch(process: dict) -> bool:
    return process["backend"] == "torch" or "KERAS_BACKEND=torch" in process["command"].replace(" ", "")


@registry.check("backends", "torch_process")
def torch_process(ctx: CheckContext):
    processes = ctx.outputs(backends)["processes"]
    if not processes:
        raise CheckFailed("predict_under_backend(path, 'torch', X) started no process: the predictions were computed "
                          "in the notebook's own process, whose Keras backend is TensorFlow.",
                          expected="a fresh Python process with KERAS_BACKEND='torch'", found="no process started",
                          hint="subprocess.run([sys.executable, '-c', ...], env={**os.environ, 'KERAS_BACKEND': backend})")
    if not any(_asks_for_torch(p) for p in processes):
        backends_set = sorted({str(p["backend"]) for p in processes})
        raise CheckFailed("The process predict_under_backend started did not get KERAS_BACKEND='torch'.",
                          expected="KERAS_BACKEND='torch' in the child's environment",
                          found=f"KERAS_BACKEND {', '.join(backends_set)}",
                          hint="env={**os.environ, 'KERAS_BACKEND': backend}: pass the backend argument on.")
    return f"{len(processes)} process(es) started, with KERAS_BACKEND='torch'"
