"""Shared fixtures and the one wording of each skip reason."""

from __future__ import annotations

import pytest

from skips import REQUIRES_BF16_CPU, REQUIRES_CUDA, REQUIRES_NO_CUDA  # noqa: F401 - the one wording


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch):
    """No test reads or writes the user's store or cache."""
    monkeypatch.setenv("HONE_DB", str(tmp_path / "hone-runs" / "hone.db"))
    monkeypatch.setenv("HONE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HONE_NO_PROGRESS", "1")
    # Its own timing slot (search.exclusive): a test never waits on a real run on this machine.
    monkeypatch.setenv("HONE_TIMING_LOCK", str(tmp_path / "timing.lock"))


@pytest.fixture(scope="session")
def hardware():
    """This machine, without measuring peaks (fast); tests that need peaks measure them."""
    from hone.hardware import probe

    return probe(measure_peaks=False)
