"""Module 01's typical mistakes, each caught with a message that names it: on small crafted artifacts, and as
mutants (learner code with one mistake) through the real probe."""
import numpy as np
import pytest

from graders.checks import CheckContext
from graders.checks import m01_keras_prototype as m01
from mistakes import costs_only, craft, fails_with, run_probe
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


SAVE_CHECKS = ("loads", "normalization_statistics", "holdout_accuracy")


def test_model_never_saved(ctx, learner_split):
    probe_with(ctx, "save", scaler=learner_split[4], model=tiny_model())  # the notebook never wrote the file
    failure = fails_with(m01.loads, ctx, "digits_baseline.keras was not found", "never saved")
    assert "save" in failure.hint
    # No file: nothing of it can be checked, each check says why.
    costs_only(ctx, m01.registry, "save", SAVE_CHECKS, "digits_baseline.keras was not found", "never saved")


def test_corrupt_model_file_names_the_file(ctx, learner_split):
    probe_with(ctx, "save", scaler=learner_split[4], model=tiny_model())
    (ctx.workdir / m01.MODEL_FILE).write_bytes(b"this is not a keras file")
    fails_with(m01.loads, ctx, "digits_baseline.keras could not be loaded")
    costs_only(ctx, m01.registry, "save", SAVE_CHECKS, "digits_baseline.keras could not be loaded")


def test_accuracy_under_the_bar(ctx, learner_split):
    untrained, scaler = tiny_model(), learner_split[4]  # saved before training: about 10% accuracy
    serve(ctx, untrained, scaler.mean_, scaler.scale_ ** 2)
    probe_with(ctx, "save", scaler=scaler, model=untrained)
    failure = fails_with(m01.holdout_accuracy, ctx, "under the bar")
    assert failure.expected == ">= 0.95"
    costs_only(ctx, m01.registry, "save", "holdout_accuracy", "under the bar")


CURVES = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}


def craft_train(ctx, **mistake):
    """The train probe's outputs of a right answer (validation_split=0.2), with `mistake` in place of some."""
    right = dict(loss={"name": "sparse_categorical_crossentropy", "from_logits": False},
                 callbacks=[{"type": "EarlyStopping", "monitor": "val_loss", "restore_best_weights": True}],
                 history=CURVES,
                 validation_losses={"test split": 0.9, "training rows": 0.3, "last fifth of X_train": 0.7})
    craft(ctx, m01.train, **{**right, **mistake})


def test_crafted_train_answer_passes(ctx):
    craft_train(ctx)
    costs_only(ctx, m01.registry, "train", ())


@pytest.mark.parametrize("loss, words", [
    ({"name": "categorical_crossentropy"}, ("expects one-hot labels",)),
    ({"name": "sparse_categorical_crossentropy", "from_logits": True}, ("from_logits=True",)),
    ({"name": "mse"}, ("not sparse categorical",)),
])
def test_loss_mistakes(ctx, loss, words):
    craft_train(ctx, loss=loss)
    fails_with(m01.loss_matches_labels, ctx, *words)
    costs_only(ctx, m01.registry, "train", "loss_matches_labels", *words)


def test_early_stopping_must_restore_best_weights(ctx):
    craft_train(ctx, callbacks=[{"type": "EarlyStopping", "monitor": "val_loss", "restore_best_weights": False}])
    fails_with(m01.early_stopping, ctx, "restore the best weights")
    costs_only(ctx, m01.registry, "train", "early_stopping", "restore the best weights")


def test_plot_missing_a_curve(ctx):
    given = m01.plot_inputs(ctx)
    craft(ctx, m01.plot, lines=[given["loss"].tolist(), given["accuracy"].tolist()], n_axes=2)
    fails_with(m01.four_curves, ctx, "val_loss", "val_accuracy")
    costs_only(ctx, m01.registry, "plot", "four_curves", "val_loss", "val_accuracy")


def test_torch_backend_predictions_must_come_from_the_same_file(ctx):
    model = tiny_model()
    model.save(ctx.workdir / m01.MODEL_FILE)
    X = m01.backends_inputs(ctx)["X"]
    right = model.predict(X, verbose=0)
    torch_child = [{"backend": "torch", "command": "['python', '-c', '...']"}]  # a fresh process, as asked
    craft(ctx, m01.backends, torch_predictions=right.astype(np.float64), processes=torch_child)
    assert m01.torch_backend_parity(ctx)
    costs_only(ctx, m01.registry, "backends", ())
    retrained = tiny_model().predict(X, verbose=0)  # another model's answers: retrained, or another file loaded
    craft(ctx, m01.backends, torch_predictions=retrained, processes=torch_child)
    failure = fails_with(m01.torch_backend_parity, ctx, "differ from TensorFlow's")
    assert failure.expected == "max abs diff <= 1e-05" and "do not retrain" in failure.hint
    costs_only(ctx, m01.registry, "backends", "torch_backend_parity", "differ from TensorFlow's")
    craft(ctx, m01.backends, torch_predictions=right.argmax(1), processes=torch_child)  # class ids, not probabilities
    failure = fails_with(m01.torch_backend_parity, ctx, "wrong shape")
    assert "(16, 10)" in failure.expected
    costs_only(ctx, m01.registry, "backends", "torch_backend_parity", "wrong shape")


def test_model_shapes_are_named(ctx):
    import keras
    craft_model(ctx, tiny_model())
    assert m01.io_shapes(ctx)
    ctx.cache.clear()
    craft_model(ctx, keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                       keras.layers.Dense(10, activation="softmax")]))
    failure = fails_with(m01.io_shapes, ctx, "input or output shape is wrong")  # images where features were asked
    assert "(None, 8, 8, 1)" in failure.found
    costs_only(ctx, m01.registry, "model", "io_shapes", "input or output shape is wrong")


def test_history_must_hold_validation_curves_and_a_falling_loss(ctx):
    craft_train(ctx)
    assert m01.curves_recorded(ctx)
    craft_train(ctx, history={"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]})  # fit without validation data
    fails_with(m01.curves_recorded, ctx, "lacks val_loss, val_accuracy")
    # No validation ran: early stopping had nothing to watch either, and says so.
    results = costs_only(ctx, m01.registry, "train", ("curves_recorded", "held_out_validation"), "val_loss")
    assert "No validation ran" in results["held_out_validation"].message
    craft_train(ctx, history={**CURVES, "loss": [1.0, 1.2]})
    fails_with(m01.curves_recorded, ctx, "did not go down")
    costs_only(ctx, m01.registry, "train", "curves_recorded", "did not go down")


# -- mutants: one requirement violated, through the real probe -------------------------------------
PROBES = "polyglot_lab.probes.m01_keras_prototype"


def probe_with(ctx, exercise, **namespace):
    return run_probe(ctx, m01.registry, PROBES, exercise, **namespace)


def preparer(seed_used=lambda seed: seed, stratify=True, dtype="float32", transform_test=True, one_hot=False):
    """prepare_data with one mistake at most."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    def prepare_data(X, y, seed):
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y if stratify else None,
                                                            random_state=seed_used(seed))
        scaler = StandardScaler().fit(X_train)
        X_test = scaler.transform(X_test) if transform_test else X_test
        if one_hot:
            y_train, y_test = np.eye(10)[y_train], np.eye(10)[y_test]
        return (scaler.transform(X_train).astype(dtype), np.asarray(X_test).astype(dtype), y_train, y_test, scaler)
    return prepare_data


@pytest.mark.parametrize("mistake, failing, words", [
    (dict(), (), ()),
    (dict(seed_used=lambda seed: None), "split_rows", ("stratified but not the one random_state=seed gives",
                                                       "was it passed on?")),
    (dict(seed_used=lambda seed: 42), "split_rows", ("random_state=42, a constant",)),
    (dict(stratify=False), "split_rows", ("not stratified", "without stratify=y")),
    (dict(dtype="float64"), "float32_features", ("not float32", "X_train is float64")),
    (dict(transform_test=False), "leak_free_scaling", ("X_test was not transformed",)),
    (dict(one_hot=True), "integer_labels", ("one-hot",)),
])
def test_split_mutants_cost_only_their_check(ctx, mistake, failing, words):
    probe_with(ctx, "split", prepare_data=preparer(**mistake))
    costs_only(ctx, m01.registry, "split", failing, *words)


def test_test_rows_left_raw_are_caught_when_the_rows_differ_too(ctx):
    probe_with(ctx, "split", prepare_data=preparer(seed_used=lambda seed: seed + 1, transform_test=False))
    costs_only(ctx, m01.registry, "split", ("split_rows", "leak_free_scaling"), "")
    fails_with(m01.leak_free_scaling, ctx, "X_test was not transformed")


def builder(last="softmax", extra=None, hidden=16, inputs=(64,), classes=10):
    import keras

    def build_model():
        flatten = [keras.layers.Flatten()] if len(inputs) > 1 else []
        layers = [keras.Input(inputs), *flatten, keras.layers.Dense(hidden, activation="relu"),
                  keras.layers.Dense(classes, activation=last)]
        return keras.Sequential(layers + ([extra()] if extra else []))
    return build_model


@pytest.mark.parametrize("build, failing, words", [
    (dict(last=None, extra=lambda: __import__("keras").layers.Softmax(axis=0)), "softmax_once",
     ("wrong axis", "each column")),
    (dict(last=None), "softmax_once", ("Softmax is missing",)),
    (dict(extra=lambda: __import__("keras").layers.Softmax()), "softmax_once", ("applied 2 times",)),
    (dict(hidden=400), "param_budget", ("over the parameter budget",)),
    (dict(inputs=(8, 8)), "io_shapes", ("input or output shape is wrong",)),
    (dict(classes=9), "io_shapes", ("input or output shape is wrong",)),
])
def test_model_mutants_cost_only_their_check(ctx, build, failing, words):
    probe_with(ctx, "model", build_model=builder(**build))
    costs_only(ctx, m01.registry, "model", failing, *words)


@pytest.fixture(scope="module")
def learner_split():
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    X, y = m01.digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=42)
    scaler = StandardScaler().fit(X_train)
    return (scaler.transform(X_train).astype("float32"), scaler.transform(X_test).astype("float32"),
            y_train, y_test, scaler)


def trained_on(learner_split, epochs=3, **fit):
    import keras
    X_train, _, y_train, _, _ = learner_split
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)]
    history = model.fit(X_train, y_train, epochs=epochs, batch_size=32, callbacks=callbacks, verbose=0, **fit)
    return model, history, callbacks


def train_namespace(learner_split, model, history, callbacks):
    X_train, X_test, y_train, y_test, _ = learner_split
    return dict(model=model, history=history, callbacks=callbacks, X_train=X_train, X_test=X_test,
                y_train=y_train, y_test=y_test)


@pytest.mark.parametrize("validation, words", [
    ("test", ("validated on the test split",)),
    ("train", ("validated on the rows it trained on",)),
])
def test_validating_on_the_wrong_rows_costs_only_held_out_validation(ctx, learner_split, validation, words):
    X_train, X_test, y_train, y_test, _ = learner_split
    data = {"test": (X_test, y_test), "train": (X_train, y_train)}[validation]
    model, history, callbacks = trained_on(learner_split, validation_data=data)
    probe_with(ctx, "train", **train_namespace(learner_split, model, history, callbacks))
    costs_only(ctx, m01.registry, "train", "held_out_validation", *words)


def test_validation_split_passes_and_is_recognised(ctx, learner_split):
    model, history, callbacks = trained_on(learner_split, validation_split=0.2)
    probe_with(ctx, "train", **train_namespace(learner_split, model, history, callbacks))
    assert "validation_split=0.2" in m01.held_out_validation(ctx)


@pytest.fixture(scope="module")
def well_trained(learner_split):
    """A model that clears the held-out bar, so that a wrong Normalization costs its own check only."""
    model, _, _ = trained_on(learner_split, epochs=40, validation_split=0.2)
    return model


def serve(ctx, model, mean, variance):
    import keras
    keras.Sequential([keras.Input((64,)), keras.layers.Normalization(mean=mean, variance=variance), model]
                     ).save(ctx.workdir / m01.MODEL_FILE)


def test_normalization_with_other_statistics_costs_only_its_check(ctx, learner_split, well_trained):
    scaler = learner_split[4]
    serve(ctx, well_trained, scaler.mean_, scaler.scale_ ** 2)
    probe_with(ctx, "save", scaler=scaler, model=well_trained)
    assert m01.normalization_statistics(ctx) and m01.holdout_accuracy(ctx)
    X, _ = m01.digits()  # adapted to every row before the split: close enough to clear the accuracy bar
    serve(ctx, well_trained, X.mean(0), np.where(X.std(0) > 0, X.std(0), 1) ** 2)
    ctx.cache.clear()
    costs_only(ctx, m01.registry, "save", "normalization_statistics", "statistics of all the digits")


def test_normalization_with_var_is_named(ctx, learner_split, well_trained):
    scaler = learner_split[4]
    serve(ctx, well_trained, scaler.mean_, scaler.var_)  # constant pixels: variance 0
    probe_with(ctx, "save", scaler=scaler, model=well_trained)
    fails_with(m01.normalization_statistics, ctx, "variance=scaler.var_", "variance 0")


def test_predictions_computed_in_process_cost_only_the_process_check(ctx):
    model = tiny_model()
    model.save(ctx.workdir / m01.MODEL_FILE)

    def predict_under_backend(path, backend, X):  # no second process: TensorFlow's own answers
        import keras
        return keras.saving.load_model(ctx.workdir / path).predict(X, verbose=0)

    probe_with(ctx, "backends", predict_under_backend=predict_under_backend)
    costs_only(ctx, m01.registry, "backends", "torch_process", "started no process")


def test_a_process_without_the_torch_backend_is_named(ctx, monkeypatch):
    import os
    import subprocess
    import sys
    tiny_model().save(ctx.workdir / m01.MODEL_FILE)
    monkeypatch.chdir(ctx.workdir)

    def predict_under_backend(path, backend, X):  # the backend argument dropped: the child runs TensorFlow
        np.save("x.npy", X)
        script = ("import sys, numpy as np, keras; m = keras.saving.load_model(sys.argv[1]); "
                  "np.save('p.npy', m.predict(np.load('x.npy'), verbose=0))")
        subprocess.run([sys.executable, "-c", script, path], check=True,
                       env={**os.environ, "KERAS_BACKEND": "tensorflow"})
        return np.load("p.npy")

    probe_with(ctx, "backends", predict_under_backend=predict_under_backend)
    costs_only(ctx, m01.registry, "backends", "torch_process", "did not get KERAS_BACKEND='torch'")
