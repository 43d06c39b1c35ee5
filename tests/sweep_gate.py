"""A gate that holds training runs at a chosen epoch, so that tests stop sweeps at a known point, or prove that
runs train at the same time, without waiting on the clock.

:func:`gate` makes two named pipes and a ``sitecustomize`` module; every Python process started with
:attr:`Gate.env` (a sweep's workers, a SLURM array element) loads it, and a run in such a process, once it has
finished epoch ``n`` and written that epoch's checkpoint, writes its process id into the first pipe and then
waits until :meth:`Gate.open` lets it (and every later run) go on, or a signal ends it. The hook is
``volbias.training.run._kill_if_asked``, the point a run already calls after every epoch for the resume tests.

:meth:`Gate.arrivals` blocks until the expected number of runs arrived, or fails as soon as the sender (a
process, or a future running a sweep in a thread) has ended; :meth:`Gate.no_arrival_until_exit` waits for a
process to end and fails as soon as a run arrives instead.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

SITECUSTOMIZE = '''\
import os

if os.environ.get("VOLBIAS_TEST_GATE_ARRIVALS"):
    import importlib

    _run = importlib.import_module("volbias.training.run")  # the module (volbias.training.run is also a function)
    _arrivals, _opening = os.environ["VOLBIAS_TEST_GATE_ARRIVALS"], os.environ["VOLBIAS_TEST_GATE_OPENING"]
    _point, _original = os.environ["VOLBIAS_TEST_GATE_AT"], _run._kill_if_asked

    def _gated(point):
        if point != _point:
            return _original(point)
        with open(_arrivals, "w") as pipe:
            pipe.write(f"{os.getpid()}\\n")
        with open(_opening, "rb", buffering=0) as pipe:
            pipe.read(1)  # until the test opens the gate; a signal may end this process meanwhile

    _run._kill_if_asked = _gated
'''
OPEN_FOR = 4096  # runs let through by Gate.open (a pipe holds this many bytes without blocking)


class _Ended:
    """A file descriptor (``fd``) that reads as ready once ``sender`` (a process or a future) has ended."""

    def __init__(self, sender: subprocess.Popen | Future) -> None:
        self._lock = threading.Lock()
        self._write_fd: int | None = None
        if isinstance(sender, Future):
            self.fd, self._write_fd = os.pipe()
            sender.add_done_callback(self._notify)
        else:
            self.fd = os.pidfd_open(sender.pid)

    def _notify(self, _: Future) -> None:
        with self._lock:
            if self._write_fd is not None:
                os.write(self._write_fd, b"x")

    def close(self) -> None:
        with self._lock:
            os.close(self.fd)
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None


def _select(fds: list[int]) -> list[int]:
    return select.select(fds, [], [])[0]


@dataclass
class Gate:
    """The two pipes (the test keeps both ends of each, so that neither ever reads as closed) and the
    environment that puts the gate into child processes."""

    env: dict[str, str]
    arrivals_fd: int
    arrivals_write_fd: int
    opening_fd: int  # read-write: the test's end of the pipe the waiting runs read

    def arrivals(self, count: int, sender: subprocess.Popen | Future) -> list[int]:
        """Block until ``count`` runs wait at the gate; their process ids. Fails when ``sender`` ends first."""
        ended = _Ended(sender)
        text = b""
        try:
            while text.count(b"\n") < count:
                ready = _select([self.arrivals_fd, ended.fd])
                if self.arrivals_fd in ready:
                    text += os.read(self.arrivals_fd, 4096)
                else:
                    arrived = text.count(b"\n")
                    raise AssertionError(f"{sender} ended before {count} runs reached the gate ({arrived} did)")
        finally:
            ended.close()
        return [int(line) for line in text.decode().split()]

    def no_arrival_until_exit(self, sender: subprocess.Popen) -> int:
        """Block until ``sender`` ends; its exit status. Fails as soon as another run reaches the gate first."""
        ended = _Ended(sender)
        try:
            ready = _select([self.arrivals_fd, ended.fd])
        finally:
            ended.close()
        if self.arrivals_fd in ready:
            late = os.read(self.arrivals_fd, 4096).decode().split()
            raise AssertionError(f"process {late[0]} started a run after the signal")
        return sender.wait()

    def open(self) -> None:
        """Let the runs waiting at the gate, and the next ones to arrive, go on."""
        os.write(self.opening_fd, b"o" * OPEN_FOR)

    def close(self) -> None:
        """Close the test's ends of the pipes (once no run can arrive any more)."""
        for fd in (self.arrivals_fd, self.arrivals_write_fd, self.opening_fd):
            os.close(fd)


def gate(folder: Path, epoch: int) -> Gate:
    """A gate in ``folder`` that holds every run after epoch ``epoch``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    arrivals, opening = folder / "arrivals", folder / "opening"
    os.mkfifo(arrivals)
    os.mkfifo(opening)
    arrivals_fd = os.open(arrivals, os.O_RDONLY | os.O_NONBLOCK)
    arrivals_write_fd = os.open(arrivals, os.O_WRONLY)
    opening_fd = os.open(opening, os.O_RDWR)  # on Linux a FIFO opened read-write never blocks
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "VOLBIAS_TEST_GATE_ARRIVALS": str(arrivals),
           "VOLBIAS_TEST_GATE_OPENING": str(opening), "VOLBIAS_TEST_GATE_AT": f"epoch:{epoch}"}
    return Gate(env, arrivals_fd, arrivals_write_fd, opening_fd)


def has_ended(pid: int, within: float) -> bool:
    """True when process ``pid`` has ended, or ends within ``within`` seconds (0: whether it has ended already;
    a bound only for a test that would otherwise hang)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], within)[0])
    finally:
        os.close(pidfd)
