"""One local worker of a sweep: ``python -m volbias.training.worker FD PARENT_PID``.

The local launcher starts it with its GPU (``CUDA_VISIBLE_DEVICES``) in the environment and one end of a
socket pair as file descriptor ``FD``; over it the worker receives :class:`volbias.training.launchers.CellJob`
objects, runs each and sends back its outcome, until it receives None.

The worker lives only as long as the sweep that started it, so that a stopped sweep leaves no run behind
that trains on and competes with the sweep started next: on Linux the kernel kills it (SIGKILL) the moment
the sweep's process ends, however it ends (``prctl(PR_SET_PDEATHSIG)``); elsewhere a watcher thread ends it
within a second. It ignores SIGINT: Ctrl-C in a terminal reaches every process of the sweep, and the sweep
decides what its workers do (it stops them). Its run directory stays resumable whatever moment it dies at:
every file of a run is written atomically.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Sequence

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """End this process when the process ``parent`` ends."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the sweep ended before the request above took effect
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve cells over the socket until told to stop (None) or the socket closes."""
    fd, parent = (int(value) for value in (argv if argv is not None else sys.argv[1:]))
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(job())


if __name__ == "__main__":
    main()
