"""Module 01: valid answers written in other styles than the master's score full marks through the real probe."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from graders.checks import CheckContext
from graders.checks import m01_keras_prototype as m01
from mistakes import full_marks, run_probe

PROBES = "polyglot_lab.probes.m01_keras_prototype"


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=13, device="cpu")


def test_split_with_fit_transform_a_list_and_int32_labels(ctx):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    def prepare_data(X, y, seed):
        parts = train_test_split(X, y, stratify=y, test_size=0.2, random_state=seed, shuffle=True)
        X_train, X_test, y_train, y_test = parts
        scaler = StandardScaler()
        X_train = np.asarray(scaler.fit_transform(X_train), dtype=np.float32)
        X_test = np.asarray(scaler.transform(X_test), dtype=np.float32)
        return [X_train, X_test, y_train.astype(np.int32), y_test.astype(np.int32), scaler]

    run_probe(ctx, m01.registry, PROBES, "split", prepare_data=prepare_data)
    full_marks(ctx, m01.registry, "split")


def test_functional_model_with_a_separate_softmax_layer(ctx):
    import keras

    def build_model():
        features = keras.Input(shape=(64,), name="pixels")
        hidden = keras.layers.Dense(48, activation="relu")(features)
        logits = keras.layers.Dense(10)(keras.layers.Dropout(0.1)(hidden))
        return keras.Model(features, keras.layers.Softmax(name="probabilities")(logits))

    run_probe(ctx, m01.registry, PROBES, "model", build_model=build_model)
    full_marks(ctx, m01.registry, "model")


@pytest.fixture(scope="module")
def learner_split():
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    X, y = m01.digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=7)
    scaler = StandardScaler().fit(X_train)
    return (scaler.transform(X_train).astype("float32"), scaler.transform(X_test).astype("float32"),
            y_train, y_test, scaler)


@pytest.fixture(scope="module")
def trained(learner_split):
    """Loss and metric objects instead of strings, and validation rows split off X_train by hand."""
    import keras
    from sklearn.model_selection import train_test_split
    X_train, _, y_train, _, _ = learner_split
    keras.utils.set_random_seed(1)
    fit_X, val_X, fit_y, val_y = train_test_split(X_train, y_train, test_size=0.15, stratify=y_train, random_state=3)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.RMSprop(2e-3), loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    callbacks = [keras.callbacks.EarlyStopping(patience=4, monitor="val_loss", min_delta=1e-4,
                                               restore_best_weights=True)]
    history = model.fit(fit_X, fit_y, validation_data=(val_X, val_y), epochs=30, batch_size=64,
                        callbacks=callbacks, verbose=0)
    return model, history, callbacks


def test_train_with_loss_objects_and_validation_split_off_by_hand(ctx, learner_split, trained):
    X_train, X_test, y_train, y_test, _ = learner_split
    model, history, callbacks = trained
    run_probe(ctx, m01.registry, PROBES, "train", model=model, history=history, callbacks=callbacks,
              X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test)
    full_marks(ctx, m01.registry, "train")


def test_plot_stacked_panels_with_epoch_numbers(ctx):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def plot_history(history):
        fig = plt.figure(figsize=(5, 6))
        for row, metric in enumerate(("loss", "accuracy"), start=1):
            ax = fig.add_subplot(2, 1, row)
            epochs = range(1, len(history[metric]) + 1)
            ax.plot(epochs, history[f"val_{metric}"], "--", label=f"validation {metric}")
            ax.plot(epochs, history[metric], label=f"training {metric}")
            ax.set_ylabel(metric)
            ax.legend()
        return fig

    run_probe(ctx, m01.registry, PROBES, "plot", plot_history=plot_history)
    full_marks(ctx, m01.registry, "plot")


def test_functional_serving_model_with_numpy_statistics(ctx, learner_split, trained):
    import keras
    scaler, (model, _, _) = learner_split[4], trained
    raw = keras.Input(shape=(64,), name="raw_pixels")
    scaled = keras.layers.Normalization(mean=np.asarray(scaler.mean_, "float32"),
                                        variance=np.square(scaler.scale_).astype("float32"))(raw)
    keras.Model(raw, model(scaled), name="served").save(ctx.workdir / m01.MODEL_FILE)
    run_probe(ctx, m01.registry, PROBES, "save", scaler=scaler, model=model)
    full_marks(ctx, m01.registry, "save")


def test_backend_through_a_script_file_and_an_inherited_environment(ctx, learner_split, trained, monkeypatch):
    scaler, (model, _, _) = learner_split[4], trained
    import keras
    keras.Sequential([keras.Input((64,)), keras.layers.Normalization(mean=scaler.mean_, variance=scaler.scale_ ** 2),
                      model]).save(ctx.workdir / m01.MODEL_FILE)
    monkeypatch.chdir(ctx.workdir)

    def predict_under_backend(path, backend, X):
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            np.save(folder / "inputs.npy", np.asarray(X, np.float32))
            (folder / "predict.py").write_text(
                "import sys\nimport numpy as np\nimport keras\n"
                "model = keras.models.load_model(sys.argv[1], compile=False)\n"
                "np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]))))\n")
            previous = os.environ.get("KERAS_BACKEND")
            os.environ["KERAS_BACKEND"] = backend  # inherited by the child
            try:
                subprocess.check_call([sys.executable, str(folder / "predict.py"), os.path.abspath(path),
                                       str(folder / "inputs.npy"), str(folder / "outputs.npy")])
            finally:
                os.environ["KERAS_BACKEND"] = previous or "tensorflow"
            return np.load(folder / "outputs.npy")

    run_probe(ctx, m01.registry, PROBES, "backends", predict_under_backend=predict_under_backend)
    full_marks(ctx, m01.registry, "backends")
