"""One writer per run directory: ``<run-dir>/.lock`` holds the owner's pid, host and start time.

Taken atomically (the lock's contents are written to a private file first, then hard-linked to
``.lock``, which fails if it exists, also on NFS), released on exit. A lock whose owner is dead
is stale: it is taken over, with a message, only on the owner's host (where its pid can be
checked); any other lock makes ``acquire`` raise ConfigError naming the holder.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from metarl.runs.run_dir import ConfigError

LOCK_NAME = ".lock"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), else None: with the pid
    it names one process (a reused pid has another start time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    now = _start_time(pid)
    return started is None or now is None or now == started


def read_lock(run_dir: Path) -> dict | None:
    """The lock's owner ({pid, host, started, token, since}), None when unlocked, ``{}`` when the
    file is unreadable (a foreign or damaged lock: treated as held)."""
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return {}
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def describe(owner: dict) -> str:
    if not owner:
        return "an unreadable lock file"
    return f"pid {owner.get('pid')} on host {owner.get('host')!r}"


def is_stale(owner: dict) -> bool:
    """Whether a lock's owner is provably dead: on this host, with a pid that no longer runs."""
    return (bool(owner) and owner.get("host") == socket.gethostname()
            and isinstance(owner.get("pid"), int) and not _alive(owner["pid"], owner.get("started")))


def check_free(run_dir: Path) -> None:
    """Raises ConfigError naming the holder when a live (or unverifiable) run holds ``run_dir``."""
    owner = read_lock(run_dir)
    if owner is not None and not is_stale(owner):
        raise ConfigError(f"run dir {str(run_dir)!r} is in use by {describe(owner)} (lock file "
                          f"{str(Path(run_dir) / LOCK_NAME)!r}); wait for that run to end or stop it "
                          f"first")


class RunLock:
    """The held lock of one run directory; ``release`` removes it only while it is still ours."""

    def __init__(self, run_dir: Path, owner: dict):
        self.path, self.owner = Path(run_dir) / LOCK_NAME, owner

    def release(self) -> None:
        if self.owner is not None and read_lock(self.path.parent) == self.owner:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.owner = None


def acquire(run_dir: Path, say=print) -> RunLock:
    """Takes ``run_dir``'s lock (creating the directory); raises ConfigError naming the holder when
    it is held. A stale lock is taken over and ``say`` tells which."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid()),
             "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": uuid.uuid4().hex}
    lock = run_dir / LOCK_NAME
    for _ in range(3):
        if _link(run_dir, lock, owner):
            return RunLock(run_dir, owner)
        held = read_lock(run_dir)
        if held is None:  # released meanwhile: try again
            continue
        check_free(run_dir)  # raises unless the holder is provably dead
        if _take_over(run_dir, lock, held):
            say(f"run dir {str(run_dir)!r}: taking over the stale lock of {describe(held)} "
                f"(that process no longer runs)")
    check_free(run_dir)
    raise ConfigError(f"run dir {str(run_dir)!r}: could not take its lock file {str(lock)!r}")


def _link(run_dir: Path, lock: Path, owner: dict) -> bool:
    tmp = run_dir / f".lock.{owner['token']}"
    tmp.write_text(json.dumps(owner))
    try:
        os.link(tmp, lock)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


def _take_over(run_dir: Path, lock: Path, held: dict) -> bool:
    """Moves the stale lock ``held`` aside; puts back a lock that turned out to be another's (one
    taken between our read and our move). True when the stale one is gone."""
    aside = run_dir / f".lock.stale.{uuid.uuid4().hex}"
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return False
    try:
        moved = json.loads(aside.read_text())
    except (OSError, ValueError):
        moved = {}
    if moved != held:
        try:
            os.link(aside, lock)
        except FileExistsError:
            pass
        aside.unlink()
        return False
    aside.unlink()
    return True
