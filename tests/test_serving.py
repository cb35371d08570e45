"""The TensorFlow-Serving-compatible server: started on 127.0.0.1 by the test, called with a real HTTP
client (valid requests, every kind of bad one, a burst of concurrent ones), stopped afterwards."""
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from polyglot_lab.catalogue import REPO
from polyglot_lab.serving import Server

REFERENCE_CODEC = REPO / "graders" / "serving_codec.py"
W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
B = np.array([0.5, -0.5, 0.0], dtype=np.float32)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A SavedModel like module 04's: 'pixels' (n, 4) in, 'logits' (n, 3) out, dynamic batch."""
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self):
            super().__init__()
            self.w, self.b = tf.constant(W), tf.constant(B)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"logits": tf.matmul(pixels, self.w) + self.b}

    path = tmp_path_factory.mktemp("model") / "affine"
    module = Affine()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="module")
def server(saved_model):
    with Server(saved_model, REFERENCE_CODEC) as running:
        yield running


def post(server, body, **kwargs):
    kwargs = {"json": body} if not isinstance(body, (bytes, str)) else {"content": body}
    return httpx.post(server.url(":predict"), timeout=30, **kwargs)


def test_status_and_metadata(server):
    status = httpx.get(server.url()).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    signature = httpx.get(server.url("/metadata")).json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in signature["inputs"]["pixels"]["tensor_shape"]["dim"]] == ["-1", "4"]
    assert list(signature["outputs"]) == ["logits"]


def test_row_and_columnar_predictions(server):
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expected = X @ W + B
    rows = post(server, {"instances": X.tolist()})
    assert rows.status_code == 200
    assert np.allclose(rows.json()["predictions"], expected, atol=1e-5)
    columns = post(server, {"inputs": {"pixels": X.tolist()}})
    assert np.allclose(columns.json()["outputs"], expected, atol=1e-5)
    assert np.allclose(post(server, {"inputs": X[:1].tolist()}).json()["outputs"], expected[:1], atol=1e-5)


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    ([1, 2, 3], 400, "JSON object"),
    ({"instances": [[1.0, 2.0, 3.0]]}, 400, "shape (n, 4)"),
    ({"instances": [[1.0, 2.0], [1.0, 2.0, 3.0, 4.0]]}, 400, "ragged"),
    ({"instances": [["a", "b", "c", "d"]]}, 400, "float32 numbers"),
    ({"rows": [[0.0] * 4]}, 400, "exactly one of"),
    ({"instances": [[0.0] * 4], "inputs": [[0.0] * 4]}, 400, "exactly one of"),
    ({"inputs": {"image": [[0.0] * 4]}}, 400, "unknown: ['image']"),
    ({"instances": []}, 400, "non-empty"),
    ({"instances": [[0.0] * 4] * 1025}, 400, "over the limit of 1024"),
])
def test_bad_requests_get_4xx_and_a_reason(server, body, status, words):
    response = post(server, body)
    assert response.status_code == status
    assert words in response.json()["error"]


def test_oversized_body_and_unknown_model(server):
    assert post(server, b"[" + b"0," * 5_000_000 + b"0]").status_code == 413
    unknown = httpx.post(server.url(":predict").replace("/digits:", "/other:"), json={"instances": [[0] * 4]})
    assert unknown.status_code == 404 and "error" in unknown.json()


def test_concurrent_burst(server):
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(int(rng.integers(1, 50)), 4)).astype(np.float32) for _ in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda X: post(server, {"instances": X.tolist()}), batches))
    assert [r.status_code for r in responses] == [200] * len(batches)
    for X, response in zip(batches, responses):
        assert np.allclose(response.json()["predictions"], X @ W + B, atol=1e-5)
    assert server.alive()


def test_a_codec_bug_answers_500_and_the_server_goes_on(saved_model, tmp_path):
    """A learner's codec that forgets bad JSON: the server answers 500 with a JSON error and keeps serving."""
    codec = tmp_path / "careless_codec.py"
    codec.write_text(
        "import json\nimport numpy as np\n"
        "def request_to_tensors(body, inputs):\n"
        "    return {'pixels': np.asarray(json.loads(body)['instances'], np.float32)}, 'row'\n"
        "def response_from_tensors(outputs, layout):\n"
        "    return {'predictions': outputs['logits'].tolist()}\n")
    with Server(saved_model, codec) as running:
        broken = post(running, b"{not json")
        assert broken.status_code == 500 and "JSONDecodeError" in broken.json()["error"]
        assert post(running, {"instances": [[0.0] * 4]}).status_code == 200
        assert running.alive()


def test_bad_codec_file_is_refused_with_a_clear_line(saved_model, tmp_path):
    codec = tmp_path / "empty_codec.py"
    codec.write_text("x = 1\n")
    with pytest.raises(RuntimeError, match="must define request_to_tensors"):
        with Server(saved_model, codec, startup_s=60):
            pass
