"""What a request and a response of `hone serve` look like, and the checks a request passes
before it may join a batch.

A request carries one or more samples (dim 0 of every input: the same count in each), either as
JSON or as MessagePack, told apart by the first byte (`{` or whitespace for JSON, a map for
MessagePack: no header is needed, so `curl -d` works):

    JSON         {"inputs": {"input_ids": [[101, 2023, ...]], "attention_mask": [[1, 1, ...]]}}
    MessagePack  {"inputs": {"input_ids": {"dtype": "int64", "shape": [1, 128], "data": <bytes>}}}

A request may name the outputs it wants (`"outputs": ["logits"]`, default all of them): a
model's other outputs (a ResNet's feature map beside its logits) are then neither encoded nor
sent. The response is JSON: those outputs for this request's samples, and the batch it was
served in:

    {"outputs": {"sentence_embedding": [[0.01, ...]]}, "batch": {"requests": 3, "rows": 3}}

The non-batch dimensions of each input must be the exported example's: they are the shapes the
artifact was validated and measured at (an OpenVINO IR or a TVM library may hold no other), so
the server answers what it measured or refuses, never guesses. Every refusal is a
`RequestError` with an HTTP status and a one-line reason naming the input.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np

# dtypes a request may carry, by the names manifests use (torch's, without the prefix).
NUMPY_DTYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64, "int64": np.int64, "int32": np.int32,
    "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
}


class RequestError(Exception):
    """A request the server refuses: `status` (4xx) and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One input the artifact takes: its name, dtype, and the shape of one sample (dim 0 dropped)."""

    name: str
    dtype: str
    sample_shape: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.name}: {self.dtype}[N, {', '.join(map(str, self.sample_shape))}]" if self.sample_shape \
            else f"{self.name}: {self.dtype}[N]"


def input_specs(manifest: dict[str, Any]) -> list[InputSpec]:
    """The inputs an exported artifact takes, from its manifest (dim 0 is the batch: hone's
    convention for inputs, recorded as `batch_axes.inputs`)."""
    return [InputSpec(d["name"], d["dtype"], tuple(int(s) for s in d["shape"][1:])) for d in manifest["inputs"]]


@dataclasses.dataclass(frozen=True)
class Request:
    arrays: dict[str, np.ndarray]  # by input name, in the artifact's order
    rows: int  # samples (dim 0 of every input)
    outputs: tuple[str, ...] | None = None  # the outputs asked for (None: every output)


def decode_request(body: bytes, specs: list[InputSpec], max_rows: int,
                   output_names: list[str] | None = None) -> Request:
    """The request's inputs as arrays, its sample count and the outputs it asks for (optional
    `"outputs": [names]`, checked against `output_names`); RequestError (400 for an unreadable
    body, 422 for one that does not fit the artifact) otherwise."""
    if not body:
        raise RequestError(400, 'empty body: send {"inputs": {name: values}} as JSON or MessagePack')
    payload = _parse(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), dict):
        raise RequestError(400, 'the body must be an object with "inputs": {name: values}')
    given = payload["inputs"]
    wanted = [s.name for s in specs]
    missing = [n for n in wanted if n not in given]
    extra = sorted(set(given) - set(wanted))
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra else [])
        raise RequestError(422, f"{'; '.join(parts)}: this model takes {', '.join(s.describe() for s in specs)}")
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        arrays[spec.name] = _check(spec, _as_array(spec, given[spec.name]))
    rows = {a.shape[0] for a in arrays.values()}
    if len(rows) > 1:
        sizes = ", ".join(f"{n} {a.shape[0]}" for n, a in arrays.items())
        raise RequestError(422, f"inputs disagree on the number of samples (dim 0): {sizes}")
    count = rows.pop()
    if count < 1:
        raise RequestError(422, "no samples: dim 0 of every input must be at least 1")
    if count > max_rows:
        raise RequestError(422, f"{count} samples in one request; this server takes at most {max_rows} (send several requests)")
    return Request(arrays, count, _outputs(payload.get("outputs"), output_names))


def _outputs(asked: Any, names: list[str] | None) -> tuple[str, ...] | None:
    if asked is None:
        return None
    if not isinstance(asked, list) or not asked or not all(isinstance(n, str) for n in asked):
        raise RequestError(400, '"outputs" is a list of output names')
    unknown = [n for n in asked if names is not None and n not in names]
    if unknown:
        raise RequestError(422, f"unknown output {', '.join(unknown)}: this model gives {', '.join(names or [])}")
    return tuple(dict.fromkeys(asked))


def _parse(body: bytes) -> Any:
    if body[:1] in (b"{", b"[", b" ", b"\n", b"\r", b"\t"):
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise RequestError(400, f"the body is not valid JSON ({str(exc).splitlines()[0]})") from None
    import msgpack

    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - msgpack raises several unrelated types for bad bytes
        raise RequestError(400, f"the body is neither JSON nor MessagePack ({type(exc).__name__})") from None


def _as_array(spec: InputSpec, value: Any) -> np.ndarray:
    dtype = NUMPY_DTYPES.get(spec.dtype)
    if dtype is None:
        raise RequestError(422, f"{spec.name}: dtype {spec.dtype} cannot be sent to this server")
    if isinstance(value, dict):  # binary: {"dtype", "shape", "data"}
        try:
            sent, shape, data = value["dtype"], [int(s) for s in value["shape"]], value["data"]
        except (KeyError, TypeError, ValueError):
            raise RequestError(400, f'{spec.name}: a binary input is {{"dtype", "shape", "data"}}') from None
        if sent != spec.dtype:
            raise RequestError(422, f"{spec.name}: dtype {sent}, this model takes {spec.dtype}")
        if not isinstance(data, (bytes, bytearray)) or any(s < 0 for s in shape):
            raise RequestError(400, f"{spec.name}: data must be bytes and the shape non-negative")
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if len(data) != expected:
            raise RequestError(422, f"{spec.name}: {len(data)} bytes of data for shape {shape} of {sent} ({expected} expected)")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise RequestError(422, f"{spec.name}: ragged values (rows of different lengths)") from None
    if array.dtype == object:
        raise RequestError(422, f"{spec.name}: ragged or non-numeric values")
    if array.dtype.kind not in "biuf":
        raise RequestError(422, f"{spec.name}: values must be numbers, got {array.dtype.kind!r} data")
    target = np.dtype(dtype)
    if array.dtype.kind == "f" and target.kind in "biu":
        raise RequestError(422, f"{spec.name}: floating-point values for an {spec.dtype} input")
    if target.kind in "iu" and array.size and (array.min() < np.iinfo(target).min or array.max() > np.iinfo(target).max):
        raise RequestError(422, f"{spec.name}: values out of range for {spec.dtype}")
    return array.astype(target, copy=False)


def _check(spec: InputSpec, array: np.ndarray) -> np.ndarray:
    if array.ndim != len(spec.sample_shape) + 1:
        raise RequestError(422, f"{spec.name}: rank {array.ndim} (shape {list(array.shape)}), this model takes "
                                f"{spec.describe()}")
    if tuple(array.shape[1:]) != spec.sample_shape:
        raise RequestError(422, f"{spec.name}: shape {list(array.shape)}, this model takes {spec.describe()} "
                                "(the shapes it was validated and measured at)")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise RequestError(422, f"{spec.name}: NaN or Inf in the values")
    return array


def encode_request(inputs: dict[str, np.ndarray], binary: bool = True, outputs: list[str] | None = None) -> bytes:
    """A request body for `inputs` (arrays with the batch on dim 0), asking for `outputs` (None:
    all): MessagePack with raw bytes (cheap to make and to read: what the load generator sends)
    or JSON."""
    asked = {"outputs": list(outputs)} if outputs is not None else {}
    if not binary:
        return json.dumps({"inputs": {n: a.tolist() for n, a in inputs.items()}, **asked}).encode()
    import msgpack

    return msgpack.packb({"inputs": {n: {"dtype": str(a.dtype), "shape": list(a.shape),
                                         "data": np.ascontiguousarray(a).tobytes()} for n, a in inputs.items()},
                          **asked})


def encode_response(outputs: dict[str, np.ndarray], requests: int, rows: int) -> bytes:
    """JSON, through msgspec where it is installed (mosec brings it): seven times faster than
    the standard library on float arrays (a ResNet's 100k-float feature map: 19 ms, not 134 ms,
    which a request would otherwise wait for after its forward)."""
    body = {"outputs": {n: a.tolist() for n, a in outputs.items()}, "batch": {"requests": requests, "rows": rows}}
    try:
        import msgspec
    except ImportError:
        return json.dumps(body).encode()
    return msgspec.json.encode(body)


def batch_of(response: bytes) -> tuple[int, int] | None:
    """(requests, rows) of the batch a response says it was served in; None if it says nothing."""
    # The batch record is the last key: read it from the tail, never parsing megabytes of outputs.
    found = _BATCH.search(response[-80:])
    return (int(found.group(1)), int(found.group(2))) if found else None


_BATCH = re.compile(rb'"batch"\s*:\s*\{\s*"requests"\s*:\s*(\d+)\s*,\s*"rows"\s*:\s*(\d+)\s*\}\s*\}\s*$')
