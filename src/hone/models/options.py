"""How a model file is to be loaded: what the file itself cannot say.

A graph file (.onnx, .pt2, an OpenVINO .xml) declares its inputs' names and ranks but may leave
dimensions dynamic, and a pickle may only be opened on the user's explicit word. These options
travel from the CLI / API to every loader in one value, so a new loader needs no new parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from hone.errors import InputError

SHAPE_HINT = "give each as name=DIMS with DIMS like 1x128 (--input-shape input_ids=1x128)"


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    # batch sizes to build example input sets for (None: the source's defaults)
    batch_sizes: tuple[int, ...] | None = None
    # input name -> concrete shape, for dimensions the file leaves dynamic (a batch dimension
    # named here is overridden by batch_sizes where both are given)
    input_shapes: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    # the user's explicit opt-in to unpickling a full .pt/.pth/.bin (it runs arbitrary code)
    trust_pickle: bool = False
    # how long the user's own code (a factory) may run before it is an InputError (None: no limit)
    timeout_s: float | None = None


def parse_input_shapes(values: Iterable[str] | Mapping[str, Iterable[int]] | None) -> dict[str, tuple[int, ...]]:
    """`["input_ids=1x128", "pixel_values=1x3x224x224"]` (or a mapping) -> {name: shape}."""
    if values is None:
        return {}
    if isinstance(values, Mapping):
        items = [(str(k), v) for k, v in values.items()]
    else:
        items = []
        for text in values:
            for part in str(text).split(","):
                name, sep, dims = part.strip().partition("=")
                if not sep or not name.strip() or not dims.strip():
                    raise InputError(f"input shape {part.strip()!r} is not name=DIMS", hint=SHAPE_HINT)
                try:
                    shape = tuple(int(d) for d in dims.lower().split("x"))
                except ValueError:
                    raise InputError(f"input shape {part.strip()!r}: dimensions must be integers", hint=SHAPE_HINT) from None
                items.append((name.strip(), shape))
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in items:
        shape = tuple(shape)
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise InputError(f"input shape of {name!r}: every dimension must be a positive integer, got {list(shape)}",
                             hint=SHAPE_HINT)
        if name in shapes:
            raise InputError(f"input shape of {name!r} given twice", hint=SHAPE_HINT)
        shapes[name] = shape
    return shapes
