"""Serving tests need mosec (hone[serve]); a served artifact of a tiny model, exported in-process."""

from __future__ import annotations

import pytest
import torch

from hone._optional import is_available
from skips import REQUIRES_SERVE
from tiny_models import TinyMLP

SERVE_MISSING = not all(is_available(p) for p in ("mosec", "aiohttp", "msgpack"))


def pytest_collection_modifyitems(config, items):
    if SERVE_MISSING:
        for item in items:
            if "tests/serve/" in str(item.fspath).replace("\\", "/"):
                item.add_marker(pytest.mark.skip(reason=REQUIRES_SERVE))


@pytest.fixture(scope="session")
def served_mlp(tmp_path_factory):
    """(export directory, module): TinyMLP on the fixed-service-time runtime, 5 ms a forward."""
    from serving_plugins import export_served

    torch.manual_seed(0)
    module = TinyMLP().eval()
    directory = export_served(tmp_path_factory.mktemp("served") / "mlp", module, {"x": torch.randn(4, 32)}, service_s=0.005)
    return directory, module
