"""The TensorFlow-Serving-compatible server (polyglot_lab/serving.py) with the reference codec
(graders/serving_codec.py), held to TensorFlow Serving's REST API.

Where an expected answer comes from TF Serving, the test says where:
  [api_rest]  "RESTful API", https://www.tensorflow.org/tfx/serving/api_rest (tensorflow/serving,
              tensorflow_serving/g3doc/api_rest.md): its examples are used as they are, with its half_plus_three model
              rebuilt here (y = 0.5 x + 3, version folder 00000123) and a model with its tag/signal/sensor inputs.
  [util]      tensorflow_serving/model_servers/http_rest_api_util.cc: the routes (regular expressions), the version
              and label parsing; http_rest_api_handler.cc: the dispatch and "Malformed request"; http_server.cc:
              the HTTP status of each error code; json_tensor.cc: the request checks and their messages;
              basic_manager.cc, get_model_status_impl.cc, server_core.cc: unknown models, versions and labels.

Most cases run in-process (FastAPI's TestClient, the reference codec, tiny SavedModels built in a temporary folder);
one test starts the real server on 127.0.0.1 and stops it by its own process id."""
import base64
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyglot_lab.catalogue import REPO
from polyglot_lab.serving import Server, ServedModel, create_app, load_codec, main

REFERENCE_CODEC = REPO / "graders" / "serving_codec.py"
W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
B = np.array([0.5, -0.5, 0.0], dtype=np.float32)
ROW = [0.0, 1.0, 2.0, 3.0]


# -- models and clients ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """Like module 04's: 'pixels' (n, 4) -> 'logits' (n, 3) as serving_default, and two more signatures: 'weighted'
    (pixels (n, 4) and weights (k, 3): inputs with different batch sizes) and 'pairs' (x (n, 1, 2) -> total (n,))."""
    import tensorflow as tf

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"logits": tf.matmul(pixels, W) + B}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="pixels"),
                                      tf.TensorSpec([None, 3], tf.float32, name="weights")])
        def weighted(self, pixels, weights):
            return {"logits": tf.matmul(pixels, weights) + B}

        @tf.function(input_signature=[tf.TensorSpec([None, 1, 2], tf.float32, name="x")])
        def pairs(self, x):
            return {"total": tf.reduce_sum(x, axis=[1, 2])}

    path = tmp_path_factory.mktemp("model") / "affine"
    module = Affine()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve, "weighted": module.weighted,
                                                       "pairs": module.pairs})
    return path


@pytest.fixture(scope="module")
def half_plus_three(tmp_path_factory):
    """[api_rest] "Example": half_plus_three, served from a base path whose one version folder is 00000123."""
    import tensorflow as tf

    class HalfPlusThree(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 0.5 * x + 3.0}

    base = tmp_path_factory.mktemp("model") / "half_plus_three"
    module = HalfPlusThree()
    tf.saved_model.save(module, str(base / "00000123"), signatures={"serving_default": module.serve})
    return base


@pytest.fixture(scope="module")
def tagged_model(tmp_path_factory):
    """[api_rest] "Specifying input tensors in row format": the named inputs tag (string), signal (5 numbers) and
    sensor (2 x 2); two outputs. A 'words' signature: one string input, a binary output (its name ends in _bytes)."""
    import tensorflow as tf

    class Tagged(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tag"),
                                      tf.TensorSpec([None, 5], tf.float32, name="signal"),
                                      tf.TensorSpec([None, 2, 2], tf.int64, name="sensor")])
        def serve(self, tag, signal, sensor):
            return {"tag_length": tf.strings.length(tag),
                    "total": tf.reduce_sum(signal, axis=1) + tf.cast(tf.reduce_sum(sensor, axis=[1, 2]), tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="word")])
        def words(self, word):
            return {"upper_bytes": tf.strings.upper(word)}

    path = tmp_path_factory.mktemp("model") / "tagged"
    module = Tagged()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve, "words": module.words})
    return path


def client_for(model_dir, name, codec=REFERENCE_CODEC, labels=()):
    from fastapi.testclient import TestClient

    return TestClient(create_app(ServedModel(model_dir, name, labels=labels), load_codec(codec)))


@pytest.fixture(scope="module")
def digits(saved_model):
    return client_for(saved_model, "digits", labels=["stable"])


@pytest.fixture(scope="module")
def docs_model(half_plus_three):
    return client_for(half_plus_three, "half_plus_three", labels=["stable"])


@pytest.fixture(scope="module")
def tagged(tagged_model):
    return client_for(tagged_model, "tagged")


def post(client, path, body):
    kwargs = {"content": body} if isinstance(body, (bytes, str)) else {"json": body}
    return client.post(path, **kwargs)


def error_of(response, status):
    """The answer's {"error": ...} message, after checking its status and that the body is nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    return body["error"]


# -- TF Serving's documented examples --------------------------------------------------------------------------------
def test_doc_example_model_status(docs_model):
    """[api_rest] "Make REST API calls to ModelServer": GET /v1/models/half_plus_three, its answer verbatim."""
    assert docs_model.get("/v1/models/half_plus_three").json() == {
        "model_version_status": [{"version": "123", "state": "AVAILABLE",
                                  "status": {"error_code": "OK", "error_message": ""}}]}


def test_doc_example_predict_with_its_version_and_a_label(docs_model):
    """[api_rest] the predict call {"instances": [1.0,2.0,5.0]} -> {"predictions": [3.5, 4.0, 5.5]}, and the same at
    the "/versions/${VERSION}" and "/labels/${LABEL}" forms of the URL (Predict API, "URL")."""
    for path in ("/v1/models/half_plus_three:predict", "/v1/models/half_plus_three/versions/123:predict",
                 "/v1/models/half_plus_three/labels/stable:predict"):
        response = post(docs_model, path, {"instances": [1.0, 2.0, 5.0]})
        assert response.status_code == 200 and response.json() == {"predictions": [3.5, 4.0, 5.5]}, path


def test_doc_example_unknown_model(docs_model):
    """[api_rest] "An incorrect request URL or body returns an HTTP error status": POST .../half:predict ->
    404 {"error": "Servable not found for request: Latest(half)"}."""
    response = post(docs_model, "/v1/models/half:predict", {"instances": [1.0, 5.0]})
    assert error_of(response, 404) == "Servable not found for request: Latest(half)"


def test_doc_example_regress_is_refused_as_tf_serving_refuses_it_here(docs_model):
    """[api_rest] the regress call names the signature "tensorflow/serving/regress"; this model (like every one
    tf.saved_model.save writes) has predict signatures only, so TF Serving answers 400 (regressor.cc, classifier.cc)."""
    response = post(docs_model, "/v1/models/half_plus_three:regress",
                    {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]})
    assert error_of(response, 400) == "No signature was found with the name: tensorflow/serving/regress"
    response = post(docs_model, "/v1/models/half_plus_three:classify", {"examples": [{"x": 1.0}]})
    assert error_of(response, 400) == ("Expected classification signature method_name to be "
                                       "tensorflow/serving/classify. Was: tensorflow/serving/predict")
    response = post(docs_model, "/v1/models/half_plus_three/versions/123:regress", {"examples": [{"x": 1.0}]})
    assert error_of(response, 400).startswith("Expected regression signature method_name")
    assert error_of(post(docs_model, "/v1/models/half_plus_three:regress", b"{not json"), 400).startswith("JSON Parse")


DOC_NAMED_ROWS = {"instances": [  # [api_rest], its typo ("[3, 4, 1, 2, 5]],") corrected
    {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
    {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]}]}
DOC_COLUMNS = {"inputs": {  # [api_rest] "Columnar representation of the previous example"
    "tag": ["foo", "bar"], "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]], "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]}}


def test_doc_example_named_rows(tagged):
    """[api_rest] several named inputs in row format; the answer is "a list of objects" when the model has several
    outputs (Response format)."""
    response = post(tagged, "/v1/models/tagged:predict", DOC_NAMED_ROWS)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [{"tag_length": 3, "total": 25.0}, {"tag_length": 3, "total": 38.0}]}


def test_doc_example_columns(tagged):
    """[api_rest] the same request in columnar format; the answer is "an object instead. Each key of this object
    corresponds to a named output tensor"."""
    response = post(tagged, "/v1/models/tagged:predict", DOC_COLUMNS)
    assert response.status_code == 200, response.text
    assert response.json() == {"outputs": {"tag_length": [3, 3], "total": [25.0, 38.0]}}


def test_doc_example_plain_rows(tagged, digits):
    """[api_rest] "When there is only one named input": {"instances": ["foo", "bar", "baz"]} (3 scalar tensors) and
    {"instances": [[[1, 2]], [[3, 4]]]} (2 tensors of shape [1, 2]); a binary output as {"b64": ...} ("Output of
    binary values") and a {"b64": ...} input ("Encoding binary values")."""
    response = post(tagged, "/v1/models/tagged:predict", {"signature_name": "words", "instances": ["foo", "bar", "baz"]})
    b64 = [{"b64": base64.b64encode(word).decode()} for word in (b"FOO", b"BAR", b"BAZ")]
    assert response.status_code == 200 and response.json() == {"predictions": b64}, response.text
    response = post(tagged, "/v1/models/tagged:predict", {"signature_name": "words", "instances": [{"b64": "Zm9v"}]})
    assert response.json() == {"predictions": b64[:1]}
    response = post(digits, "/v1/models/digits:predict", {"signature_name": "pairs", "instances": [[[1, 2]], [[3, 4]]]})
    assert response.status_code == 200 and response.json() == {"predictions": [3.0, 7.0]}, response.text


def test_doc_example_columns_need_not_share_a_batch(digits):
    """[api_rest] "Each input can have arbitrary shape and need not share the same 0-th dimension (aka batch size)
    as required by the row format": pixels (2, 4) with weights (4, 3)."""
    X = np.array([ROW, [1.0, 0.0, -1.0, 2.0]], dtype=np.float32)
    response = post(digits, "/v1/models/digits:predict",
                    {"signature_name": "weighted", "inputs": {"pixels": X.tolist(), "weights": W.tolist()}})
    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["outputs"], X @ W + B, atol=1e-5)


# -- routes, versions and labels ----------------------------------------------------------------------------------------
def test_versions_and_labels_resolve_to_the_one_served_version(digits):
    """[api_rest] every API takes "[/versions/${VERSION}|/labels/${LABEL}]"; [util] the errors for others."""
    expected = (np.array([ROW], np.float32) @ W + B).tolist()
    for prefix in ("/v1/models/digits", "/v1/models/digits/versions/1", "/v1/models/digits/labels/stable"):
        response = post(digits, prefix + ":predict", {"instances": [ROW]})
        assert response.status_code == 200 and np.allclose(response.json()["predictions"], expected), prefix
        assert digits.get(prefix).json()["model_version_status"][0]["version"] == "1"
        assert digits.get(prefix + "/metadata").json()["model_spec"] == {"name": "digits", "signature_name": "",
                                                                         "version": "1"}
    missing = {
        ("POST", "/v1/models/digits/versions/2:predict"): (404, "Servable not found for request: Specific(digits, 2)"),
        ("GET", "/v1/models/digits/versions/2/metadata"): (404, "Servable not found for request: Specific(digits, 2)"),
        ("GET", "/v1/models/digits/versions/2"): (404, "Could not find version 2 of model digits"),
        ("GET", "/v1/models/other"): (404, "Could not find any versions of model other"),
        ("GET", "/v1/models/other/metadata"): (404, "Servable not found for request: Latest(other)"),
        ("POST", "/v1/models/digits/labels/canary:predict"): (400, "Unrecognized servable version label: canary"),
        ("GET", "/v1/models/digits/labels/canary"): (400, "Unrecognized servable version label: canary"),
        ("POST", "/v1/models/digits/versions/99999999999999999999:predict"):
            (400, "Failed to convert version: 99999999999999999999 to numeric."),
    }
    for (method, path), (status, message) in missing.items():
        assert error_of(digits.request(method, path, json={"instances": [ROW]}), status) == message, path


@pytest.mark.parametrize("method, path, status, message", [
    ("PUT", "/v1/models/digits", 400, "Malformed request: PUT /v1/models/digits"),
    ("DELETE", "/v1/models/digits:predict", 400, "Malformed request: DELETE /v1/models/digits:predict"),
    ("GET", "/v1/models/digits:predict", 400, "Malformed request: GET /v1/models/digits:predict"),
    ("POST", "/v1/models/digits", 400, "Malformed request: POST /v1/models/digits"),
    ("POST", "/v1/models/digits:PREDICT", 400, "Malformed request: POST /v1/models/digits:PREDICT"),
    ("POST", "/v1/models/digits:explain", 400, "Malformed request: POST /v1/models/digits:explain"),
    ("POST", "/v1/models/digits/versions/one:predict", 400,
     "Malformed request: POST /v1/models/digits/versions/one:predict"),
    ("GET", "/v1/models", 400, "Missing model name in request."),
    ("OPTIONS", "/v1/models/digits:predict", 400, "Origin header is missing in CORS preflight"),
    ("GET", "/", 404, None),
    ("POST", "/v2/models/digits/infer", 404, None),
])
def test_unknown_routes_and_methods_answer_tf_servings_errors(digits, method, path, status, message):
    """[util] a /v1/ path TF Serving's regular expressions do not match, or another method, is a 400 "Malformed
    request"; outside /v1/ TF Serving's HTTP server answers 404 (here with a JSON error too)."""
    found = error_of(digits.request(method, path, json={"instances": [ROW]}), status)
    assert found == message if message else path in found


def test_the_route_is_matched_ignoring_case_and_the_name_percent_decoded(digits):
    """[util] the path expressions are case-insensitive ((?i)) and the model name is URL-decoded (DecodeArg)."""
    assert post(digits, "/V1/MODELS/digits:predict", {"instances": [ROW]}).status_code == 200
    assert post(digits, "/v1/models/%64igits:predict", {"instances": [ROW]}).status_code == 200
    assert digits.options("/v1/models/digits:predict", headers={"Origin": "http://localhost"}).status_code == 200


def test_metadata_lists_every_signature_as_tf_serving_prints_it(digits):
    """[api_rest] "Model Metadata API": GetModelMetadataResponse, with the SavedModel's SignatureDefs."""
    metadata = digits.get("/v1/models/digits/metadata").json()
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "weighted", "pairs"} <= set(signatures)
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in default["inputs"]["pixels"]["tensor_shape"]["dim"]] == ["-1", "4"]
    assert list(default["outputs"]) == ["logits"]


# -- signature_name, named rows, columns ---------------------------------------------------------------------------
def test_signature_name_is_honoured_or_refused(digits):
    """[api_rest] "signature_name": "(Optional) Serving signature to use. If unspecifed default serving signature is
    used"; [util] json_tensor.cc and http_rest_api_handler.cc (GetInfoMap) for the refusals."""
    response = post(digits, "/v1/models/digits:predict", {"signature_name": "pairs", "instances": [[[1, 2]]]})
    assert response.json() == {"predictions": [3.0]}
    default = post(digits, "/v1/models/digits:predict", {"signature_name": "", "instances": [ROW]})
    assert np.allclose(default.json()["predictions"], np.array([ROW], np.float32) @ W + B)
    unknown = post(digits, "/v1/models/digits:predict", {"signature_name": "nope", "instances": [ROW]})
    assert error_of(unknown, 400) == 'Serving signature name: "nope" not found in signature def'
    not_text = post(digits, "/v1/models/digits:predict", {"signature_name": 3, "instances": [ROW]})
    assert "'signature_name' key must be a string value" in error_of(not_text, 400)
    wrong_inputs = post(digits, "/v1/models/digits:predict", {"signature_name": "pairs", "instances": [ROW]})
    assert "'x' must have shape (n, 1, 2)" in error_of(wrong_inputs, 400)


def test_named_rows_and_named_columns_with_one_input(digits):
    """[api_rest] a row may name its inputs even when there is one ({"instances": [{"pixels": [...]}]}), and
    "inputs" may be the tensor itself or an object naming it."""
    X = np.array([ROW, [4.0, 3.0, 2.0, 1.0]], np.float32)
    expected = X @ W + B
    for body, key in (({"instances": [{"pixels": row} for row in X.tolist()]}, "predictions"),
                      ({"instances": X.tolist()}, "predictions"),
                      ({"inputs": {"pixels": X.tolist()}}, "outputs"), ({"inputs": X.tolist()}, "outputs")):
        response = post(digits, "/v1/models/digits:predict", body)
        assert response.status_code == 200 and np.allclose(response.json()[key], expected, atol=1e-5), body


@pytest.mark.parametrize("body, words", [
    ({"instances": [{"pixels": ROW}, ROW]}, "instance 1 is not an object"),
    ({"instances": [ROW, {"pixels": ROW}]}, "mix objects and values"),
    ({"instances": [{"pixels": ROW, "extra": 1}]}, "unknown: ['extra']"),
    ({"instances": [{"image": ROW}]}, "missing: ['pixels']"),
    ({"instances": [{"pixels": ROW}, {"pixels": ROW[:3]}]}, "ragged"),
    ({"inputs": {"image": [ROW]}}, "unknown: ['image']"),
    ({"signature_name": "weighted", "instances": [ROW]}, "each instance is an object with keys"),
    ({"signature_name": "weighted", "inputs": [ROW]}, "'inputs' is an object with keys"),
])
def test_named_inputs_that_do_not_match_the_signature_are_refused(digits, body, words):
    """[util] json_tensor.cc: every row an object when the first is; its keys equal to the signature's inputs."""
    assert words in error_of(post(digits, "/v1/models/digits:predict", body), 400)


def test_named_rows_and_columns_with_several_inputs_of_each_dtype(tagged):
    """[api_rest] "JSON mapping": numbers for DT_FLOAT (integers too) and DT_INT64 (whole numbers only), strings
    for DT_STRING; a value of another JSON type, or an integer beyond int64, is refused (json_tensor.cc)."""
    for field, value, words in (("sensor", [[1.5, 2], [3, 4]], "must hold int64 numbers; it holds floats"),
                                ("sensor", [[2**63, 2], [3, 4]], "out of int64's range"),
                                ("signal", [1, 2, True, 4, 5], "must hold float32 numbers; it holds true/false"),
                                ("tag", 7, "must hold strings; it holds numbers")):
        body = json.loads(json.dumps(DOC_NAMED_ROWS))
        body["instances"][0][field] = value
        assert words in error_of(post(tagged, "/v1/models/tagged:predict", body), 400), field


# -- numbers and errors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e39", "-1e39", "1e400", "1" + "0" * 400])
def test_non_finite_and_out_of_range_inputs_are_refused(digits, value):
    """Not TF Serving's rule: its JSON mapping takes NaN and ±Infinity for DT_FLOAT, and 1e39 silently becomes
    Infinity there. This server refuses them with 400: no course model means anything by them."""
    for body in (f'{{"instances": [[0, {value}, 0, 0]]}}', f'{{"inputs": {{"pixels": [[0, 0, 0, {value}]]}}}}'):
        message = error_of(post(digits, "/v1/models/digits:predict", body), 400)
        assert "'pixels' holds" in message and ("range" in message or "Infinity" in message), message


def test_the_server_refuses_non_finite_numbers_whatever_the_codec(saved_model, tmp_path):
    """A learner's codec that passes NaN, Infinity or 1e39 on: the server itself answers 400 (check_range)."""
    codec = tmp_path / "passing_codec.py"
    codec.write_text(
        "import json\nimport numpy as np\n"
        "def request_to_tensors(body, inputs):\n"
        "    return {'pixels': np.asarray(json.loads(body)['instances'], np.float64)}, 'row'\n"
        "def response_from_tensors(outputs, layout):\n"
        "    return {'predictions': outputs['logits'].tolist()}\n")
    client = client_for(saved_model, "digits", codec=codec)
    for value, words in (("NaN", "NaN or Infinity"), ("-Infinity", "NaN or Infinity"), ("1e39", "float32's range")):
        assert words in error_of(post(client, "/v1/models/digits:predict", f'{{"instances": [[{value}, 0, 0, 0]]}}'), 400)
    assert post(client, "/v1/models/digits:predict", {"instances": [ROW]}).status_code == 200


def test_non_finite_outputs_are_written_as_tf_serving_writes_them(digits):
    """[api_rest] "JSON conformance": NaN and ±Infinity are written as the tokens NaN, Infinity, -Infinity. Finite
    inputs near float32's limit overflow here."""
    response = post(digits, "/v1/models/digits:predict", {"instances": [[3e38] * 4]})
    assert response.status_code == 200 and "Infinity" in response.text
    assert response.json()["predictions"][0][2] == float("inf")


def test_a_model_error_on_a_feed_that_fits_the_signature_gets_tf_servings_status(digits):
    """weights (5, 3) fit the signature ([None, 3]) but not the matmul: TensorFlow's InvalidArgument, which TF
    Serving answers 400 (http_server.cc, ToHTTPStatusCode)."""
    body = {"signature_name": "weighted", "inputs": {"pixels": [ROW], "weights": [[0.0] * 3] * 5}}
    assert "Matrix size-incompatible" in error_of(post(digits, "/v1/models/digits:predict", body), 400)


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (b"[" * 100_000, 400, "not valid JSON"),
    (b'{"instances": [' + b"9" * 5000 + b"]}", 400, "not valid JSON"),
    ([1, 2, 3], 400, "JSON object"),
    ({"instances": [[1.0, 2.0, 3.0]]}, 400, "shape (n, 4)"),
    ({"instances": [[1.0, 2.0], [1.0, 2.0, 3.0, 4.0]]}, 400, "ragged"),
    ({"instances": [["a", "b", "c", "d"]]}, 400, "float32 numbers"),
    ({"instances": [[None] * 4]}, 400, "float32 numbers"),
    ({"rows": [[0.0] * 4]}, 400, "exactly one of"),
    ({"instances": [[0.0] * 4], "inputs": [[0.0] * 4]}, 400, "exactly one of"),
    ({"instances": []}, 400, "non-empty"),
    ({"instances": [[0.0] * 4] * 1025}, 400, "over the limit of 1024"),
    ({"inputs": 5}, 400, "shape (n, 4); it has shape ()"),
])
def test_bad_requests_get_4xx_and_a_reason(digits, body, status, words):
    assert words in error_of(post(digits, "/v1/models/digits:predict", body), status)


def test_a_codec_bug_answers_500_and_the_server_goes_on(saved_model, tmp_path):
    """A learner's codec that forgets bad JSON, or feeds a shape the signature does not take: 500 and a JSON error
    (the grader counts a 500 against the codec), and the next request is answered."""
    codec = tmp_path / "careless_codec.py"
    codec.write_text(
        "import json\nimport numpy as np\n"
        "def request_to_tensors(body, inputs):\n"
        "    return {'pixels': np.asarray(json.loads(body)['instances'], np.float32)}, 'row'\n"
        "def response_from_tensors(outputs, layout):\n"
        "    return {'predictions': outputs['logits'].tolist()}\n")
    client = client_for(saved_model, "digits", codec=codec)
    assert "JSONDecodeError" in error_of(post(client, "/v1/models/digits:predict", b"{not json"), 500)
    assert "shape (1, 3)" in error_of(post(client, "/v1/models/digits:predict", {"instances": [[1.0, 2.0, 3.0]]}), 500)
    assert post(client, "/v1/models/digits:predict", {"instances": [ROW]}).status_code == 200


def test_bad_codec_file_is_refused_with_a_clear_line(saved_model, tmp_path, capsys):
    codec = tmp_path / "empty_codec.py"
    codec.write_text("x = 1\n")
    assert main([str(saved_model), "--codec", str(codec)]) == 2
    assert "must define request_to_tensors" in capsys.readouterr().err


# -- no body yields a 5xx ------------------------------------------------------------------------------------------
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(width=32),
                    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([0, 1, 3e38, -3.5e38, 1e39]))
LEAVES = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=4), st.just({"b64": "Zm9v"}))
JSON = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                    st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                    max_leaves=30)
NAMES = st.sampled_from(["pixels", "weights", "x", "tag", "signal", "sensor", "word", "other"])
TENSORS = st.one_of(
    st.integers(1, 3).flatmap(lambda n: st.lists(st.lists(NUMBERS, min_size=4, max_size=4), min_size=n, max_size=n)),
    st.builds(lambda value, n: [[value] * 4] * n, NUMBERS, st.integers(1, 3)),  # extremes fill whole rows
    st.lists(st.lists(st.lists(NUMBERS, min_size=2, max_size=2), min_size=1, max_size=1), min_size=1, max_size=3),
    JSON)
SIGNATURES = st.one_of(st.sampled_from(["", "serving_default", "weighted", "pairs", "words", "nope"]), JSON)
ROWS = st.one_of(TENSORS, st.lists(st.dictionaries(NAMES, TENSORS, max_size=3), min_size=1, max_size=3))
COLUMNS = st.one_of(TENSORS, st.dictionaries(NAMES, TENSORS, max_size=3))
REQUESTS = st.one_of(  # mostly well-formed, so that the model runs on what hypothesis draws
    st.fixed_dictionaries({"instances": ROWS}, optional={"signature_name": SIGNATURES}),
    st.fixed_dictionaries({"inputs": COLUMNS}, optional={"signature_name": SIGNATURES}),
    st.dictionaries(st.sampled_from(["instances", "inputs", "signature_name", "examples"]), JSON, max_size=3))
BODIES = st.one_of(REQUESTS.map(lambda r: json.dumps(r).encode()), JSON.map(lambda j: json.dumps(j).encode()),
                   st.binary(max_size=64))
PATHS = st.sampled_from(["/v1/models/digits:predict", "/v1/models/tagged:predict", "/v1/models/digits:regress",
                         "/v1/models/digits/versions/1:predict", "/v1/models/digits/labels/stable:predict"])


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=BODIES, path=PATHS)
def test_no_request_body_yields_a_5xx(digits, tagged, body, path):
    """Any body, valid or not: a 2xx or a 4xx with {"error": ...}, never a 5xx (hypothesis)."""
    response = (tagged if "tagged" in path else digits).post(path, content=body)
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str)


# -- the real server -----------------------------------------------------------------------------------------------
def test_real_server_routes_limits_and_a_concurrent_burst(saved_model):
    """The server in its own process on 127.0.0.1 (as `make serve`, the notebook and the grader run it): status,
    an error over real HTTP, the body limit, and a burst of concurrent requests answered correctly."""
    with Server(saved_model, REFERENCE_CODEC) as server:
        assert httpx.get(server.url()).json()["model_version_status"][0]["state"] == "AVAILABLE"
        unknown = httpx.post(server.url(":predict").replace("/digits:", "/other:"), json={"instances": [ROW]})
        assert unknown.status_code == 404 and unknown.json() == {"error": "Servable not found for request: Latest(other)"}
        assert httpx.put(server.url()).json() == {"error": f"Malformed request: PUT /v1/models/{server.name}"}
        oversized = httpx.post(server.url(":predict"), content=b"[" + b"0," * 5_000_000 + b"0]", timeout=30)
        assert oversized.status_code == 413 and "over the limit" in oversized.json()["error"]
        rng = np.random.default_rng(1)
        batches = [rng.normal(size=(int(rng.integers(1, 50)), 4)).astype(np.float32) for _ in range(40)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(
                lambda X: httpx.post(server.url(":predict"), json={"instances": X.tolist()}, timeout=30), batches))
        assert [r.status_code for r in responses] == [200] * len(batches)
        for X, response in zip(batches, responses):
            assert np.allclose(response.json()["predictions"], X @ W + B, atol=1e-5)
        assert server.alive()
