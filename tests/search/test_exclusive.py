"""The timing slot (search.exclusive): one holder per machine at a time, across processes and
threads; re-entrant in one thread; a waiter says who holds it. Order of events only, no durations."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from hone.search.exclusive import holder, timing_slot

HOLD = """
import sys, time
from hone.search.exclusive import timing_slot
name, lock, log, hold_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
with timing_slot(name, lock):
    open(log, "a").write(f"enter {name}\\n")
    time.sleep(hold_s)
    open(log, "a").write(f"exit {name}\\n")
"""


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_second_process_waits_for_the_first_and_is_told_who_holds_the_slot(tmp_path):
    lock, log = tmp_path / "slot.lock", tmp_path / "events"
    first = subprocess.Popen([sys.executable, "-c", HOLD, "first", str(lock), str(log), "1.0"])
    deadline = time.monotonic() + 60
    while "enter first" not in _lines(log) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.run([sys.executable, "-c", HOLD, "second", str(lock), str(log), "0"], capture_output=True,
                            text=True, timeout=120)
    assert first.wait(timeout=60) == 0 and second.returncode == 0, second.stderr
    assert _lines(log) == ["enter first", "exit first", "enter second", "exit second"]
    assert f"held by pid {first.pid}: first" in second.stderr  # said once, while it waited
    assert second.stderr.count("waiting for this machine's timing slot") == 1


def test_threads_of_one_process_take_turns_and_one_thread_may_nest(tmp_path):
    lock = tmp_path / "slot.lock"
    events: list[str] = []
    entered = threading.Event()

    def hold() -> None:
        with timing_slot("thread", lock):
            events.append("enter thread")
            entered.set()
            time.sleep(0.3)
            events.append("exit thread")

    other = threading.Thread(target=hold)
    other.start()
    entered.wait(timeout=30)
    with timing_slot("main", lock):
        events.append("enter main")
        with timing_slot("main, nested", lock):  # re-entrant: no deadlock on itself
            events.append("nested")
        assert holder(lock) == f"pid {__import__('os').getpid()}: main"
    other.join()
    assert events == ["enter thread", "exit thread", "enter main", "nested"]


def test_the_lock_file_follows_the_environment(tmp_path, monkeypatch):
    from hone.search.exclusive import LOCK_ENV, lock_path

    monkeypatch.setenv(LOCK_ENV, str(tmp_path / "mine.lock"))
    assert lock_path() == tmp_path / "mine.lock"
    monkeypatch.delenv(LOCK_ENV)
    assert lock_path().name.startswith("hone-timing-")
