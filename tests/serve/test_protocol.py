"""What a request may be, and the one-line refusal of each thing it must not be (no server)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hone.serve.protocol import InputSpec, RequestError, batch_of, decode_request, encode_request, encode_response

from skips import REQUIRES_SERVE

msgpack = pytest.importorskip("msgpack", reason=REQUIRES_SERVE)

SPECS = [InputSpec("input_ids", "int64", (4,)), InputSpec("pixel", "float32", (2, 2))]


def _inputs(rows: int = 1) -> dict[str, np.ndarray]:
    return {"input_ids": np.arange(4 * rows, dtype=np.int64).reshape(rows, 4),
            "pixel": np.linspace(0, 1, 4 * rows, dtype=np.float32).reshape(rows, 2, 2)}


@pytest.mark.parametrize("binary", [False, True])
def test_json_and_messagepack_bodies_give_the_same_arrays(binary):
    sent = _inputs(rows=3)
    request = decode_request(encode_request(sent, binary=binary, outputs=["logits"]), SPECS, max_rows=4,
                             output_names=["hidden", "logits"])
    assert request.rows == 3 and list(request.arrays) == ["input_ids", "pixel"] and request.outputs == ("logits",)
    for name, array in sent.items():
        assert request.arrays[name].dtype == array.dtype and np.array_equal(request.arrays[name], array)
    assert decode_request(encode_request(sent, binary=binary), SPECS, 4, ["hidden", "logits"]).outputs is None  # all


def _refusal(body: bytes | dict, max_rows: int = 4) -> tuple[int, str]:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    with pytest.raises(RequestError) as caught:
        decode_request(raw, SPECS, max_rows, ["hidden", "logits"])
    assert "\n" not in caught.value.reason
    return caught.value.status, caught.value.reason


def test_each_bad_request_is_refused_with_its_status_and_a_reason_naming_what_is_wrong():
    good = {n: a.tolist() for n, a in _inputs().items()}
    assert _refusal(b"") == (400, 'empty body: send {"inputs": {name: values}} as JSON or MessagePack')
    assert _refusal(b"{not json")[0] == 400
    assert _refusal(b"\xc1\xff\x00")[0] == 400  # neither JSON nor MessagePack
    assert _refusal({"x": 1})[0] == 400  # no "inputs"
    status, reason = _refusal({"inputs": {"input_ids": good["input_ids"], "pixels": good["pixel"]}})
    assert status == 422 and "missing pixel" in reason and "unknown pixels" in reason and "input_ids: int64[N, 4]" in reason
    status, reason = _refusal({"inputs": {**good, "input_ids": [[1, 2, 3]]}})
    assert status == 422 and reason.startswith("input_ids: shape [1, 3], this model takes input_ids: int64[N, 4]")
    status, reason = _refusal({"inputs": {**good, "pixel": [[0.0, 1.0]]}})
    assert status == 422 and reason.startswith("pixel: rank 2")
    status, reason = _refusal({"inputs": {**good, "input_ids": [[0.5, 1, 2, 3]]}})
    assert status == 422 and "floating-point values for an int64 input" in reason
    status, reason = _refusal({"inputs": {**good, "input_ids": [["a", "b", "c", "d"]]}})
    assert status == 422 and "values must be numbers" in reason
    status, reason = _refusal({"inputs": {**good, "input_ids": [[1, 2], [1, 2, 3, 4]]}})
    assert status == 422 and "ragged" in reason
    status, reason = _refusal({"inputs": {**good, "pixel": [[[float("nan"), 0], [0, 0]]]}})
    assert status == 422 and "NaN or Inf" in reason
    status, reason = _refusal({"inputs": {**good, "input_ids": [[1, 2, 3, 4], [1, 2, 3, 4]]}})
    assert status == 422 and "disagree on the number of samples" in reason
    status, reason = _refusal(encode_request(_inputs(rows=5)), max_rows=4)
    assert status == 422 and "5 samples in one request; this server takes at most 4" in reason
    assert _refusal({"inputs": good, "outputs": ["logit"]}) == (422, "unknown output logit: this model gives hidden, logits")
    assert _refusal({"inputs": good, "outputs": "logits"})[0] == 400


def test_binary_inputs_are_checked_against_their_declared_dtype_and_size():
    sent = _inputs()
    body = msgpack.unpackb(encode_request(sent))
    body["inputs"]["pixel"]["dtype"] = "float64"
    assert _refusal(msgpack.packb(body)) == (422, "pixel: dtype float64, this model takes float32")
    body = msgpack.unpackb(encode_request(sent))
    body["inputs"]["pixel"]["data"] = body["inputs"]["pixel"]["data"][:-4]
    status, reason = _refusal(msgpack.packb(body))
    assert status == 422 and "12 bytes of data for shape [1, 2, 2] of float32 (16 expected)" in reason


def test_a_response_says_the_batch_it_was_served_in():
    body = encode_response({"y": np.ones((1, 3), dtype=np.float32)}, requests=2, rows=5)
    assert json.loads(body) == {"outputs": {"y": [[1.0, 1.0, 1.0]]}, "batch": {"requests": 2, "rows": 5}}
    assert batch_of(body) == (2, 5) == batch_of(json.dumps(json.loads(body), indent=1).encode())  # any spacing
    assert batch_of(b'{"outputs": {}}') is None
