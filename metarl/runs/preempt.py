"""SIGTERM and SIGINT for a run (preemption notices, schedulers, Ctrl-C).

Between outer steps (phase ``loop``) a signal only sets a flag: the run finishes the outer step in
flight, checkpoints it and exits 128 + signal (143 for SIGTERM, 130 for SIGINT). Elsewhere
(compiling, restoring, the meta-test: nothing there is worth finishing) and on a second signal
(more than a second after the first), the process says so in one line, releases its run lock and
exits at once with the same code; what it leaves is resumable (checkpoints and JSON files are
written atomically). A watcher thread reads the signals from ``signal.set_wakeup_fd``, so this is
prompt even while the main thread sits in a long compiled call or compile. Multi-process runs
agree on the stop step (``agreed``: an all-gather of the flags after each step).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)
WHAT = {"setup": "compiling or restoring", "finish": "the meta-test"}


def exit_code(signum: int) -> int:
    return 128 + signum


class Stop:
    """Installed for one run by ``install``; ``uninstall`` restores the previous handlers.

    ``name``: the progress lines' tag; ``on_exit``: called before an immediate exit (releases the
    run lock)."""

    def __init__(self, name: str, on_exit=lambda: None):
        self.name, self.on_exit = name, on_exit
        self.signum: int | None = None  # the first signal seen in phase "loop"
        self._t = 0.0
        self._phase = "setup"
        self._acted = False  # agreed() has reported the signal: the loop is stopping on it
        self._lock = threading.Lock()
        self._saved = None

    def install(self) -> "Stop":
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._pipe = (r, w)
        self._saved = ({s: signal.getsignal(s) for s in SIGNALS},
                       signal.set_wakeup_fd(w, warn_on_full_buffer=False))
        for s in SIGNALS:
            signal.signal(s, _ignore)  # the watcher thread acts on it
        threading.Thread(target=self._watch, args=(r,), daemon=True, name="metarl-stop").start()
        return self

    def uninstall(self) -> None:
        if self._saved is None:
            return
        handlers, fd = self._saved
        self._saved = None
        signal.set_wakeup_fd(fd)
        for s, h in handlers.items():
            signal.signal(s, h)
        os.close(self._pipe[1])  # the watcher sees end of file and ends

    def phase(self, phase: str) -> None:
        """``setup``, ``loop`` or ``finish``. Leaving ``loop`` with a signal not yet acted on (it came
        after the last ``agreed``) exits now: the run's last checkpoint is already written."""
        with self._lock:
            pending = self._phase == "loop" and self.signum is not None and not self._acted
            self._phase = phase
        if pending:
            self._exit_now(self.signum)

    def agreed(self) -> int | None:
        """After each outer step: the signal to stop on, the same in every process (a multi-process
        run all-gathers the flags, so no process is left waiting in a collective), else None."""
        local = self.signum or 0
        import jax  # here, not at the top: the driver imports this module before jax.distributed.initialize

        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            local = int(np.max(multihost_utils.process_allgather(np.int32(local))))
        self._acted = bool(local)
        return local or None

    def _watch(self, r: int) -> None:
        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data:
                os.close(r)
                return
            for signum in data:
                self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        with self._lock:
            if self._phase == "done":
                return
            now = time.monotonic()
            if self._phase == "loop" and (self.signum is None or now - self._t < 1.0):
                if self.signum is None:  # a repeat within a second is one signal delivered twice
                    self.signum, self._t = signum, now
                    _say(f"[{self.name}] {signal.Signals(signum).name}: finishing the outer step in "
                         f"flight, then checkpointing and exiting (send it again to exit at once)")
                return
        self._exit_now(signum)

    def _exit_now(self, signum: int) -> None:
        where = WHAT.get(self._phase, "a second signal")
        _say(f"[{self.name}] {signal.Signals(signum).name} during {where}: exiting now without a "
             f"summary; the checkpoints are intact (continue with --resume)")
        try:
            self.on_exit()
        finally:
            sys.stdout.flush()
            os._exit(exit_code(signum))


def _ignore(signum, frame) -> None:
    """The Python-level handler: the watcher thread does the work (see ``Stop``)."""


def _say(line: str) -> None:
    os.write(2, (line + "\n").encode())
