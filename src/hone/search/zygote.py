"""A warm start for workers: one process per sweep imports torch and the worker's modules once,
then forks a worker per job, instead of a fresh interpreter paying that import (about 2 s on a
small CPU) for every candidate.

What a forked worker shares with a fresh one is what matters for isolation: the zygote runs no
model, no op, no CUDA call and starts no thread pool before it forks, so a worker starts from
the state a fresh interpreter has right after `import torch`. Each worker still gets its own
session and process group (setsid: a timeout kills everything it started), its own log as
stdout and stderr, its job's environment, and it still dies with its parent (the zygote, which
dies with the sweep). Everything after the import (the bundle, the backend, user files) happens
in the worker, as before.

This is the stdlib forkserver's idea (multiprocessing.forkserver), written out because a
worker is not a multiprocessing Process: the sweep needs its pid, its own session and its exit
status with a timeout, and the server must live and die with one sweep, not with the program.

Protocol, one line each way over the zygote's stdin and stdout:
    parent -> zygote  {"job": path, "log": path, "env": {...}}
    zygote -> parent  "ready" once, then "started PID" per request and "exited PID CODE"
                      (CODE as Popen's returncode: negative for a signal) when it reaps one.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from hone._pids import alive

PRELOAD = ("torch", "hone.search.execute")  # what every worker imports first; nothing here runs an op
# numpy's and scipy's OpenBLAS start a thread pool at import; OpenBLAS re-creates it after a
# fork (pthread_atfork), so a forked worker gets a working pool.
START_TIMEOUT_S = 300.0  # `import torch` on a loaded machine; past it the sweep starts workers afresh
# A worker whose zygote died before reporting the worker's end: the kernel sent it SIGTERM at
# that death (die_with_parent), so that is the end it most likely had.
LOST = -signal.SIGTERM


class Zygote:
    """The parent's handle on one zygote: started at the first `spawn`, closed with its sweep.
    `spawn` returns None (and the caller starts a fresh interpreter) when the zygote cannot
    start or has died: a warm start is an optimisation, never a new way for a sweep to fail."""

    command = [sys.executable, "-m", "hone.search.zygote"]

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        self.preload = preload  # modules beyond PRELOAD (installed_modules_of the sweep's model)
        self._proc: subprocess.Popen | None = None
        self._broken = False
        self._lock = threading.Lock()  # one request at a time: "started PID" answers in order
        self._changed = threading.Condition()
        self._ready = False
        self._started: list[int] = []
        self._exits: dict[int, int] = {}

    def spawn(self, job_path: str, log_path: str, env: dict[str, str]) -> "ForkedWorker | None":
        with self._lock:
            if self._broken:
                return None
            if self._proc is None:
                self._start(env)
            if not self._wait_for(lambda: self._ready, START_TIMEOUT_S):
                self._give_up()
                return None
            try:
                line = json.dumps({"job": job_path, "log": log_path, "env": env}) + "\n"
                self._proc.stdin.write(line.encode())
                self._proc.stdin.flush()
            except (OSError, ValueError):
                self._give_up()
                return None
            if not self._wait_for(lambda: self._started, 30.0):
                self._give_up()
                return None
            with self._changed:
                pid = self._started.pop(0)
        return ForkedWorker(self, pid)

    def close(self) -> None:
        """End the zygote (its stdin's end tells it to): it forks nothing more; workers of its
        still running (none, after a sweep) get SIGTERM from their parent's death."""
        proc, self._proc, self._broken = self._proc, None, True
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _start(self, env: dict[str, str]) -> None:
        try:
            self._proc = subprocess.Popen(
                [*self.command, *self.preload], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=env, start_new_session=True)  # no terminal signal reaches it
        except OSError:
            self._broken = True
            return
        threading.Thread(target=self._read, args=(self._proc,), name="hone-zygote-reader", daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            word, *rest = raw.decode(errors="replace").split() or [""]
            with self._changed:
                if word == "ready":
                    self._ready = True
                elif word == "started":
                    self._started.append(int(rest[0]))
                elif word == "exited":
                    self._exits[int(rest[0])] = int(rest[1])
                self._changed.notify_all()
        with self._changed:  # EOF: the zygote is gone; nothing it had will report
            self._broken = True
            self._changed.notify_all()

    def _wait_for(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0 or self._broken:
                    return False
                self._changed.wait(left)
        return True

    def _give_up(self) -> None:
        proc = self._proc
        self._broken = True
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _exit_of(self, pid: int, timeout_s: float | None) -> int | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._changed:
            while pid not in self._exits:
                if self._broken and not alive(pid):
                    return LOST
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._changed.wait(0.1 if left is None else min(left, 0.1))
            return self._exits.pop(pid)


class ForkedWorker:
    """A forked worker as the sweep uses a Popen: its pid (and process group) and `wait`."""

    def __init__(self, zygote: Zygote, pid: int):
        self._zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self._zygote._exit_of(self.pid, timeout)
            if code is None:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            self.returncode = code
        return self.returncode


def warm_start_fits(device: str) -> bool:
    """CPU sweeps only. A library imported in the warm start may ask whether CUDA is there
    (torch.cuda.is_available initialises the CUDA driver), and a process forked after that
    cannot use CUDA: CUDA sweeps keep a fresh interpreter per job until this is proven on a GPU."""
    return device == "cpu"


def installed_modules_of(module: object) -> tuple[str, ...]:
    """The modules that the classes of `module`'s layers come from, where they are installed
    libraries (transformers' modelling files, say: with what they import, several seconds a
    worker). Every worker imports them anyway to unpickle the model; imported once in the warm
    start, no worker pays for them. Never the user's own files: importing those runs the user's
    code, which belongs in a worker."""
    import site
    import sysconfig

    import torch

    if not isinstance(module, torch.nn.Module):
        return ()
    paths = sysconfig.get_paths()
    roots = [Path(p).resolve() for p in {paths["purelib"], paths["platlib"], *site.getsitepackages()}]
    names = {type(layer).__module__ for layer in module.modules()}
    installed = set()
    for name in names - {"__main__", "__mp_main__"}:
        file = getattr(sys.modules.get(name), "__file__", None)
        if name.split(".")[0] != "torch" and file and any(Path(file).resolve().is_relative_to(r) for r in roots):
            installed.add(name)
    return tuple(sorted(installed))


# --- the zygote process -------------------------------------------------------------------


def _serve() -> None:
    from hone.search._child import PARENT_ENV, die_with_parent

    die_with_parent(int(os.environ[PARENT_ENV]) if os.environ.get(PARENT_ENV) else None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep decides; its own session already
    out = os.dup(1)  # the protocol's end: what an import prints must not reach the sweep
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    for name in sys.argv[1:]:  # the model's libraries: a worker that needs one reports its failure
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            pass
    # A child's end wakes the loop (a byte on `woken`); no polling tick beside timed candidates.
    woken, wake = os.pipe()
    os.set_blocking(wake, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake)
    _say(out, "ready")
    pending = b""
    while True:
        readable, _, _ = select.select([0, woken], [], [])
        if woken in readable:
            os.read(woken, 4096)
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:  # the sweep closed its end (or died): no more workers
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                zygote = os.getpid()
                pid = os.fork()
                if pid == 0:
                    _become_worker(json.loads(line), zygote, (out, woken, wake))
                _say(out, f"started {pid}")
        _reap(out)
    _reap(out)


def _reap(out: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _say(out, f"exited {pid} {os.waitstatus_to_exitcode(status)}")


def _say(out: int, line: str) -> None:
    os.write(out, (line + "\n").encode())


def _become_worker(request: dict, zygote: int, zygote_fds: tuple[int, ...]) -> None:
    """In the forked child: become what `python -m hone.search._child JOB` would be, then exit
    as it would, without ever returning into the zygote's loop."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd in zygote_fds:
            os.close(fd)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
        from hone.search._child import PARENT_ENV, die_with_parent, run

        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[PARENT_ENV] = str(zygote)  # its parent, which dies with the sweep
        die_with_parent(zygote)
        code = run(request["job"])
    except BaseException:  # noqa: BLE001 - a child of the zygote must never return into its loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            # What a fresh worker's exit runs: exit handlers (weakref finalizers among them:
            # temporary folders a library left to them), then its output, flushed.
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    _serve()
