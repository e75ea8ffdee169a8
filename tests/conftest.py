"""Shared fixtures and the one wording of each skip reason."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from skips import REQUIRES_BF16_CPU, REQUIRES_CUDA, REQUIRES_NO_CUDA  # noqa: F401 - the one wording


@pytest.fixture(scope="session")
def _session_peaks(tmp_path_factory) -> Path:
    """Where the first real measurement of this machine's peaks in this session is kept."""
    return tmp_path_factory.mktemp("session-peaks")


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch, _session_peaks):
    """No test reads or writes the user's store or cache. Each test's cache starts with the
    machine's peaks as first measured in this session, as a user's cache would hold them after
    their first run: measuring them is about 6 s of every `hone optimize` with an empty cache,
    which a hundred tests would pay again. Tests of the peaks' cache itself point
    HONE_CACHE_DIR elsewhere and start empty."""
    cache = tmp_path / "hone-cache"
    cache.mkdir()
    for measured in _session_peaks.glob("hardware-*.json"):
        shutil.copy(measured, cache)
    monkeypatch.setenv("HONE_DB", str(tmp_path / "hone-runs" / "hone.db"))
    monkeypatch.setenv("HONE_CACHE_DIR", str(cache))
    monkeypatch.setenv("HONE_NO_PROGRESS", "1")
    # Its own timing slot (search.exclusive): a test never waits on a real run on this machine.
    monkeypatch.setenv("HONE_TIMING_LOCK", str(tmp_path / "timing.lock"))
    yield
    # Keep a real measurement, never one a test faked (its monkeypatch is still in place here).
    peaks = sys.modules.get("hone.hardware.peaks")
    if peaks is not None and getattr(peaks.measure_in_child, "__module__", None) == peaks.__name__:
        for measured in cache.glob("hardware-*.json"):
            if not (_session_peaks / measured.name).exists() and _valid_peaks(measured):
                shutil.copy(measured, _session_peaks / measured.name)


def _valid_peaks(path: Path) -> bool:
    from hone.hardware.probe import _cached_peaks

    fingerprint = path.stem.removeprefix("hardware-")
    return _cached_peaks(path, fingerprint) is not None


@pytest.fixture(scope="session")
def hardware():
    """This machine, without measuring peaks (fast); tests that need peaks measure them."""
    from hone.hardware import probe

    return probe(measure_peaks=False)
