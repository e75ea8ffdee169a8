"""Checks a .safetensors file's header before any library reads it.

The format is an 8-byte little-endian header length, that many bytes of JSON (name -> dtype,
shape, data_offsets), then the tensors' bytes. A file that lies about its header length makes a
reader allocate what it says (a terabyte: an out-of-memory, not an error); one whose offsets run
past the data makes it read out of bounds. Each is an InputError here, naming the file.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from hone.errors import InputError

# The safetensors library's own bound on a header: headers of real models are kilobytes.
MAX_HEADER_BYTES = 100 * 1024 * 1024
ITEM_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
              "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def check_safetensors(path: str | Path) -> dict[str, Any]:
    """The file's header (JSON), or InputError when the header or an offset is not what the file
    holds. Dtypes this table does not know are checked for bounds only."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _bad(path, f"{size} bytes, too short to be a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES:
                raise _bad(path, f"declares a safetensors header of {length} bytes (at most {MAX_HEADER_BYTES} are read)")
            if 8 + length > size:
                raise _bad(path, f"declares a safetensors header of {length} bytes, larger than the file ({size} bytes)")
            raw = f.read(length)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _bad(path, "its safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise _bad(path, "its safetensors header is not a JSON object")
    data_bytes = size - 8 - length
    for name, entry in header.items():
        if name != "__metadata__":
            _check_entry(path, name, entry, data_bytes)
    return header


def _check_entry(path: Path, name: str, entry: Any, data_bytes: int) -> None:
    try:
        begin, end = (int(v) for v in entry["data_offsets"])
        shape = [int(d) for d in entry["shape"]]
        dtype = str(entry["dtype"])
    except (KeyError, TypeError, ValueError):
        raise _bad(path, f"tensor {name!r} has no dtype, shape and data_offsets") from None
    if not 0 <= begin <= end <= data_bytes:
        raise _bad(path, f"tensor {name!r} lies at bytes {begin}-{end} of {data_bytes} bytes of data")
    if any(d < 0 for d in shape):
        raise _bad(path, f"tensor {name!r} has a negative dimension {shape}")
    if dtype in ITEM_BYTES and math.prod(shape) * ITEM_BYTES[dtype] != end - begin:
        raise _bad(path, f"tensor {name!r} ({dtype} {shape}) needs {math.prod(shape) * ITEM_BYTES[dtype]} bytes, "
                         f"its offsets give {end - begin}")


def _bad(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}", hint="the file is cut short or not a safetensors file; write it again "
                                              "(safetensors.torch.save_file, or save_pretrained)")
