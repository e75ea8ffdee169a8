"""A bounded load generator for `hone serve`, in the style of Triton's perf_analyzer and MLPerf's
scenarios, over loopback only.

    closed loop   `concurrency` clients, each sending its next request when the last one was
                  answered (perf_analyzer's --concurrency-range): throughput at a fixed number
                  of requests in flight
    Poisson       requests arrive at `rate` a second with exponential gaps, whether or not the
                  server keeps up (MLPerf's Server scenario): latency under an offered load

Every run is bounded twice, by a request count and by seconds, and stops by itself: no new
request starts after either bound, and what is still in flight then gets the request timeout
and no more. A Poisson run also bounds what is in flight at once (a server that falls behind
would otherwise collect an unbounded backlog of the client's own making): arrivals beyond it are
counted as dropped, never sent.

Latency is measured from the moment a request was due (its arrival time in a Poisson run, so a
client that fell behind does not hide the server's queueing: no coordinated omission) to the last
byte of its response, so it includes every queue on the way: the front end's, the batcher's
wait, and the worker's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from hone.errors import InputError

DEFAULT_REQUEST_TIMEOUT_S = 30.0
MAX_IN_FLIGHT = 1024  # a Poisson run's backlog bound


@dataclasses.dataclass(frozen=True)
class Load:
    """One load level: `mode` "concurrency" (level = clients) or "poisson" (level = requests/s)."""

    mode: str
    level: float
    max_requests: int = 2000
    max_seconds: float = 3.0
    warmup_seconds: float = 0.5  # before the measured window, at the same level; not recorded
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    seed: int = 0
    max_in_flight: int = MAX_IN_FLIGHT  # Poisson: arrivals beyond this many unanswered are dropped

    def __post_init__(self) -> None:
        if self.mode not in ("concurrency", "poisson"):
            raise InputError(f"load mode must be concurrency or poisson, not {self.mode!r}")
        if not self.level > 0 or (self.mode == "concurrency" and int(self.level) != self.level):
            raise InputError(f"a {self.mode} level must be a positive {'integer' if self.mode == 'concurrency' else 'rate'}, "
                             f"not {self.level!r}")
        if (self.max_requests < 1 or not self.max_seconds > 0 or self.warmup_seconds < 0 or not self.request_timeout_s > 0
                or self.max_in_flight < 1):
            raise InputError("a load needs a positive request count, positive seconds and a non-negative warm-up")

    def describe(self) -> str:
        return _describe_load(self.mode, self.level)


def _describe_load(mode: str, level: float) -> str:
    return f"concurrency {int(level)}" if mode == "concurrency" else f"Poisson {level:.4g}/s"


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.3g} ms"


@dataclasses.dataclass(frozen=True)
class LoadPoint:
    """What one load level gave. Latencies in seconds; throughput counts answered samples."""

    mode: str
    level: float
    sent: int  # requests started in the measured window
    ok: int  # answered 200
    errors: dict[str, int]  # "HTTP 429", "timeout", "connection" -> count
    dropped: int  # Poisson arrivals not sent (the in-flight bound)
    duration_s: float  # first due time to last answer
    throughput_per_s: float  # samples answered 200 a second
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    mean_s: float | None
    mean_batch_requests: float | None  # requests per batch the server said it served them in
    stopped_by: str  # "count" | "time"

    @property
    def clean(self) -> bool:
        """Every request sent was answered 200 and none was dropped."""
        return self.ok > 0 and not self.errors and not self.dropped

    def describe(self) -> str:
        p99 = f"p99 {_ms(self.p99_s)}" if self.p99_s is not None else "no answers"
        return f"{_describe_load(self.mode, self.level)}: {self.throughput_per_s:.4g}/s, {p99}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoadPoint":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def check_loopback(url: str) -> None:
    """Refuse any target but this machine: the generator is for measuring, not for load on others."""
    host = urlsplit(url).hostname
    if not host:
        raise InputError(f"{url!r} names no host")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise InputError(f"cannot resolve {host!r}: {exc}") from None
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise InputError(f"the load generator sends to loopback only, and {host} is not ({', '.join(sorted(addresses))})",
                         hint="serve on 127.0.0.1 and measure there")


def drive(url: str, bodies: Sequence[bytes], load: Load, rows_per_request: int = 1) -> LoadPoint:
    """Send `load` to `url` (loopback), cycling through `bodies`; block until it is over."""
    check_loopback(url)
    if not bodies:
        raise InputError("the load generator needs at least one request body")
    return asyncio.run(_drive(url, list(bodies), load, rows_per_request))


async def _drive(url: str, bodies: list[bytes], load: Load, rows: int) -> LoadPoint:
    import aiohttp

    from hone.serve.protocol import batch_of

    limit = int(load.level) if load.mode == "concurrency" else load.max_in_flight
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    timeout = aiohttp.ClientTimeout(total=load.request_timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        counter = iter(range(1 << 62))

        async def one(due: float, record: list | None) -> None:
            body = bodies[next(counter) % len(bodies)]
            outcome, batch = "connection", None
            try:
                async with session.post(url, data=body) as response:
                    payload = await response.read()
                    outcome = "ok" if response.status == 200 else f"HTTP {response.status}"
                    if response.status == 200:
                        batch = batch_of(payload)
            except asyncio.TimeoutError:
                outcome = "timeout"
            except aiohttp.ClientError:
                outcome = "connection"
            if record is not None:
                record.append((due, time.perf_counter(), outcome, batch))

        if load.warmup_seconds > 0:
            await _run(load, one, load.warmup_seconds, load.max_requests, None)
        record: list[tuple[float, float, str, Any]] = []
        started = time.perf_counter()
        sent, dropped, stopped_by = await _run(load, one, load.max_seconds, load.max_requests, record)
    return _point(load, record, sent, dropped, started, stopped_by, rows)


async def _run(load: Load, one, seconds: float, count: int, record: list | None) -> tuple[int, int, str]:
    """Issue requests for `seconds` or `count`, whichever ends first; wait for those in flight
    (each bounded by the request timeout). Returns (sent, dropped, which bound stopped it)."""
    deadline = time.perf_counter() + seconds
    sent = dropped = 0
    stopped_by = "time"
    if load.mode == "concurrency":
        async def client() -> None:
            nonlocal sent, stopped_by
            while True:
                if sent >= count:
                    stopped_by = "count"
                    return
                if time.perf_counter() >= deadline:
                    return
                sent += 1
                await one(time.perf_counter(), record)

        await asyncio.gather(*(client() for _ in range(int(load.level))))
        return sent, 0, stopped_by
    rng = random.Random(load.seed)
    in_flight: set[asyncio.Task] = set()
    due = time.perf_counter()
    while True:
        due += rng.expovariate(load.level)
        if due >= deadline:
            break
        if sent + dropped >= count:
            stopped_by = "count"
            break
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        if len(in_flight) >= load.max_in_flight:
            dropped += 1
            continue
        sent += 1
        task = asyncio.create_task(one(due, record))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)
    return sent, dropped, stopped_by


def _point(load: Load, record: list, sent: int, dropped: int, started: float, stopped_by: str, rows: int) -> LoadPoint:
    ok = sorted(end - due for due, end, outcome, _ in record if outcome == "ok")
    errors = Counter(outcome for *_, outcome, _ in record if outcome != "ok")
    batches = [b[0] for *_, b in record if b is not None]
    first = min((due for due, *_ in record), default=started)
    last = max((end for _, end, *_ in record), default=started)
    duration = max(last - first, 1e-9)
    return LoadPoint(
        mode=load.mode, level=load.level, sent=sent, ok=len(ok), errors=dict(errors), dropped=dropped,
        duration_s=duration, throughput_per_s=len(ok) * rows / duration,
        p50_s=_quantile(ok, 0.50), p90_s=_quantile(ok, 0.90), p99_s=_quantile(ok, 0.99),
        mean_s=sum(ok) / len(ok) if ok else None,
        mean_batch_requests=sum(batches) / len(batches) if batches else None,
        stopped_by=stopped_by,
    )


def _quantile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank quantile (the value below which a share q of the answers lie)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]
