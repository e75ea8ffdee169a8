"""The load generator stops by itself at its bounds, sends to loopback only, and its Poisson
run neither waits for the server nor lets a backlog grow without bound."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hone.errors import InputError
from hone.serve.loadgen import Load, check_loopback, drive
from hone.serve.protocol import encode_request
from hone.serve.server import Server, ServerConfig


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000/inference", "http://192.168.0.7/inference", "http:///inference"])
def test_only_loopback_is_driven(url):
    with pytest.raises(InputError):
        check_loopback(url)
    check_loopback("http://127.0.0.1:8000/inference")
    check_loopback("http://localhost:8000/inference")


@pytest.mark.slow
def test_every_run_stops_at_its_count_or_its_seconds(served_mlp, tmp_path):
    directory, _ = served_mlp
    body = [encode_request({"x": np.zeros((1, 32), dtype=np.float32)})]
    config = ServerConfig.for_artifact(directory, port=0, max_batch_size=1, threads=1, log_requests=False)
    with Server(config, tmp_path / "serve.log") as server:
        by_count = drive(server.url, body, Load("concurrency", 4, max_requests=30, max_seconds=60, warmup_seconds=0))
        started = time.monotonic()
        by_time = drive(server.url, body, Load("poisson", 40, max_requests=10**9, max_seconds=1.0, warmup_seconds=0))
        elapsed = time.monotonic() - started
        # 5 ms a forward, one at a time: 200/s at most. Offered 1000/s with at most 3 unanswered,
        # the backlog stays bounded and the rest of the arrivals are dropped, never sent.
        flooded = drive(server.url, body, Load("poisson", 1000, max_requests=10**9, max_seconds=1.0, warmup_seconds=0,
                                               max_in_flight=3))
    assert (by_count.sent, by_count.ok, by_count.stopped_by) == (30, 30, "count")
    assert by_count.clean and by_count.p50_s <= by_count.p90_s <= by_count.p99_s
    assert by_time.stopped_by == "time" and 10 <= by_time.sent <= 120 and by_time.ok == by_time.sent
    assert elapsed < 1.0 + 5.0  # its second, plus what was in flight (answers take milliseconds)
    assert flooded.stopped_by == "time" and flooded.dropped > 0 and not flooded.clean
    assert flooded.sent + flooded.dropped <= 2000 and flooded.ok == flooded.sent
