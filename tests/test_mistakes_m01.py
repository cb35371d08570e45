"""Module 01's typical mistakes, each caught with a message that names it — on small crafted artifacts."""
import numpy as np
import pytest

from graders.checks import CheckContext
from graders.checks import m01_keras_prototype as m01
from mistakes import craft, fails_with
from polyglot_lab.probe import probe_io


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=7, device="cpu")


def split_variant(ctx, fit_on="train", one_hot=False, labels_dtype="int64", stratify=True):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    given = m01.split_inputs(ctx)
    X, y, seed = given["X"], given["y"], int(given["seed"])
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y if stratify else None, random_state=seed)
    if fit_on == "none":
        train, test = Xtr, Xte
    elif fit_on == "refit_test":
        train, test = StandardScaler().fit_transform(Xtr), StandardScaler().fit_transform(Xte)
    else:
        scaler = StandardScaler().fit({"train": Xtr, "test": Xte, "all": X}[fit_on])
        train, test = scaler.transform(Xtr), scaler.transform(Xte)
    ytr, yte = ytr.astype(labels_dtype), yte.astype(labels_dtype)
    if one_hot:
        ytr, yte = np.eye(10)[ytr], np.eye(10)[yte]
    craft(ctx, m01.split, X_train=train.astype("float32"), X_test=test.astype("float32"), y_train=ytr, y_test=yte)


def test_reference_split_passes(ctx):
    split_variant(ctx)
    for check in (m01.split_rows, m01.leak_free_scaling, m01.integer_labels):
        assert check(ctx)


@pytest.mark.parametrize("fit_on, words", [
    ("test", ("fit on the test set",)),
    ("refit_test", ("fit again on the test set",)),
    ("all", ("fit on all the data",)),
    ("none", ("not standardised",)),
])
def test_scaling_mistakes_are_named(ctx, fit_on, words):
    split_variant(ctx, fit_on=fit_on)
    fails_with(m01.leak_free_scaling, ctx, *words)


def test_labels_not_integer_encoded(ctx):
    split_variant(ctx, one_hot=True)
    failure = fails_with(m01.integer_labels, ctx, "one-hot", "sparse_categorical_crossentropy")
    assert "(n,)" in failure.expected
    split_variant(ctx, labels_dtype="float32")
    fails_with(m01.integer_labels, ctx, "not integer-encoded")


def test_split_not_stratified(ctx):
    split_variant(ctx, stratify=False)
    fails_with(m01.split_rows, ctx, "not stratified")


def tiny_model(last="softmax", extra_softmax=False, hidden=0):
    import keras
    layers = [keras.Input((64,))] + ([keras.layers.Dense(hidden, activation="relu")] if hidden else [])
    layers.append(keras.layers.Dense(10, activation=last))
    if extra_softmax:
        layers.append(keras.layers.Softmax())
    return keras.Sequential(layers)


def craft_model(ctx, model):
    io = probe_io("model", ctx.workdir, declared=m01.model.outputs)
    io.reset_outputs()
    model.save(io.output_path("model.keras"))
    io.mark_done()


def test_softmax_once_passes_missing_and_doubled_are_named(ctx):
    craft_model(ctx, tiny_model())
    assert m01.softmax_once(ctx)
    ctx.cache.clear()
    craft_model(ctx, tiny_model(last=None))
    fails_with(m01.softmax_once, ctx, "Softmax is missing", "logits")
    ctx.cache.clear()
    craft_model(ctx, tiny_model(extra_softmax=True))
    fails_with(m01.softmax_once, ctx, "applied 2 times")


def test_parameter_budget(ctx):
    craft_model(ctx, tiny_model(hidden=512))  # 64*512 + 512*10 + ... > 20,000
    fails_with(m01.param_budget, ctx, "over the parameter budget")


def test_model_never_saved(ctx):
    failure = fails_with(m01.loads, ctx, "digits_baseline.keras was not found", "never saved")
    assert "save" in failure.hint


def test_corrupt_model_file_names_the_file(ctx):
    (ctx.workdir / m01.MODEL_FILE).write_bytes(b"this is not a keras file")
    fails_with(m01.loads, ctx, "digits_baseline.keras could not be loaded")


def test_accuracy_under_the_bar(ctx):
    tiny_model().save(ctx.workdir / m01.MODEL_FILE)  # untrained: about 10% accuracy
    failure = fails_with(m01.holdout_accuracy, ctx, "under the bar")
    assert failure.expected == ">= 0.95"


@pytest.mark.parametrize("loss, words", [
    ({"name": "categorical_crossentropy"}, ("expects one-hot labels",)),
    ({"name": "sparse_categorical_crossentropy", "from_logits": True}, ("from_logits=True",)),
    ({"name": "mse"}, ("not sparse categorical",)),
])
def test_loss_mistakes(ctx, loss, words):
    craft(ctx, m01.train, loss=loss, callbacks=[], history={})
    fails_with(m01.loss_matches_labels, ctx, *words)


def test_early_stopping_must_restore_best_weights(ctx):
    craft(ctx, m01.train, loss={}, history={},
          callbacks=[{"type": "EarlyStopping", "monitor": "val_loss", "restore_best_weights": False}])
    fails_with(m01.early_stopping, ctx, "restore the best weights")


def test_plot_missing_a_curve(ctx):
    given = m01.plot_inputs(ctx)
    craft(ctx, m01.plot, lines=[given["loss"].tolist(), given["accuracy"].tolist()], n_axes=2)
    fails_with(m01.four_curves, ctx, "val_loss", "val_accuracy")


def test_torch_backend_predictions_must_come_from_the_same_file(ctx):
    model = tiny_model()
    model.save(ctx.workdir / m01.MODEL_FILE)
    X = m01.backends_inputs(ctx)["X"]
    right = model.predict(X, verbose=0)
    craft(ctx, m01.backends, torch_predictions=right.astype(np.float64))
    assert m01.torch_backend_parity(ctx)
    retrained = tiny_model().predict(X, verbose=0)  # another model's answers: retrained, or another file loaded
    craft(ctx, m01.backends, torch_predictions=retrained)
    failure = fails_with(m01.torch_backend_parity, ctx, "differ from TensorFlow's")
    assert failure.expected == "max abs diff <= 1e-05" and "do not retrain" in failure.hint
    craft(ctx, m01.backends, torch_predictions=right.argmax(1))  # class ids, not probabilities
    failure = fails_with(m01.torch_backend_parity, ctx, "wrong shape")
    assert "(16, 10)" in failure.expected


def test_model_shapes_are_named(ctx):
    import keras
    craft_model(ctx, tiny_model())
    assert m01.io_shapes(ctx)
    ctx.cache.clear()
    craft_model(ctx, keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]))
    failure = fails_with(m01.io_shapes, ctx, "input or output shape is wrong")  # images where features were asked
    assert "(None, 8, 8, 1)" in failure.found


def test_history_must_hold_validation_curves_and_a_falling_loss(ctx):
    curves = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}
    craft(ctx, m01.train, loss={}, callbacks=[], history=curves)
    assert m01.curves_recorded(ctx)
    craft(ctx, m01.train, loss={}, callbacks=[], history={"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]})
    fails_with(m01.curves_recorded, ctx, "lacks val_loss, val_accuracy")  # fit without validation data
    craft(ctx, m01.train, loss={}, callbacks=[], history={**curves, "loss": [1.0, 1.2]})
    fails_with(m01.curves_recorded, ctx, "did not go down")
