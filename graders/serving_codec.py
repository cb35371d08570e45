"""The reference codec for polyglot_lab.serving: TensorFlow Serving's REST request and response formats
(row format: "instances" -> "predictions"; columnar: "inputs" -> "outputs"). `make serve` uses it, and
module 04's checks compare a learner's codec with it."""
from __future__ import annotations

import json

import numpy as np

from polyglot_lab.serving import BadRequest

MAX_BATCH = 1024


def request_to_tensors(body: bytes, inputs: dict) -> tuple[dict[str, np.ndarray], str]:
    """The feed for the signature's inputs, and the layout the answer must use."""
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest("the body must be a JSON object with 'instances' (rows) or 'inputs' (columns)")
    if ("instances" in request) == ("inputs" in request):
        raise BadRequest("give exactly one of 'instances' (rows) or 'inputs' (columns)")
    names = list(inputs)
    columns: dict | None
    if "instances" in request:
        rows, layout = request["instances"], "row"
        if not isinstance(rows, list) or not rows:
            raise BadRequest("'instances' must be a non-empty list of rows")
        if len(names) == 1:
            columns = {names[0]: rows}
        elif all(isinstance(row, dict) for row in rows):
            columns = {name: [row.get(name) for row in rows] for name in names}
        else:
            raise BadRequest(f"with several inputs, each instance is an object with keys {names}")
    else:
        given, layout = request["inputs"], "columnar"
        columns = given if isinstance(given, dict) else {names[0]: given} if len(names) == 1 else None
        if columns is None:
            raise BadRequest(f"with several inputs, 'inputs' is an object with keys {names}")
    unknown, missing = sorted(set(columns) - set(names)), sorted(set(names) - set(columns))
    if unknown or missing:
        raise BadRequest(f"the inputs must be {names}" + (f"; unknown: {unknown}" if unknown else "")
                         + (f"; missing: {missing}" if missing else ""))
    feed = {name: to_array(name, columns[name], inputs[name]) for name in names}
    batch = {len(a) for a in feed.values()}
    if len(batch) > 1:
        raise BadRequest("all inputs must have the same number of rows")
    if batch.pop() > MAX_BATCH:
        raise BadRequest(f"a batch of {len(next(iter(feed.values())))} rows is over the limit of {MAX_BATCH}")
    return feed, layout


def to_array(name: str, value, spec: dict) -> np.ndarray:
    """One input's JSON value as an array of the signature's dtype and shape, or BadRequest saying why not."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise BadRequest(f"'{name}' is ragged: its rows have different lengths") from None
    dtype = np.dtype(spec["dtype"])
    allowed = "iuf" if dtype.kind == "f" else "iu" if dtype.kind in "iu" else dtype.kind
    if array.dtype.kind not in allowed:
        what = "ragged or mixed" if array.dtype.kind == "O" else f"of JSON type {array.dtype.kind!r}"
        raise BadRequest(f"'{name}' must hold {dtype.name} numbers; it is {what}")
    shape = spec["shape"]
    if array.ndim != len(shape) or any(d is not None and d != n for d, n in zip(shape, array.shape)):
        expected = "(" + ", ".join("n" if d is None else str(d) for d in shape) + ")"
        raise BadRequest(f"'{name}' must have shape {expected}; it has shape {array.shape}")
    return array.astype(dtype)


def response_from_tensors(outputs: dict[str, np.ndarray], layout: str) -> dict:
    lists = {name: np.asarray(value).tolist() for name, value in outputs.items()}
    if layout == "columnar":
        return {"outputs": next(iter(lists.values())) if len(lists) == 1 else lists}
    if len(lists) == 1:
        return {"predictions": next(iter(lists.values()))}
    rows = len(next(iter(lists.values())))
    return {"predictions": [{name: values[i] for name, values in lists.items()} for i in range(rows)]}
