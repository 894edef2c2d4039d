"""Whole-run checkpoints with orbax: save every K generations, resume from the newest readable one.

A checkpoint holds the run state pytree (outer-loop state, RNG key, generation, best objective and
its score, metric history). orbax writes each step to a temporary directory and renames it when
complete, so a kill mid-save leaves the previous checkpoints intact. A latest checkpoint that fails
to restore (corrupt or truncated) is skipped and the one before it is used; ``resume`` says so in
one line and moves the damaged ones to ``<checkpoints>.damaged/`` (so the run can write those steps
again; nothing is deleted).
"""
from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


class RunCheckpointer:
    """Checkpoints of host-side run state, written and read by process 0 only.

    Multi-host runs gather the state to every process first (``distributed.to_host``); process 0
    alone owns the directory (orbax's ``active_processes={0}``, so no barrier waits for the other
    processes), and a restored state is broadcast to the others, so ``--run-dir`` need only be
    visible to process 0.
    """

    def __init__(self, directory: str | Path, every: int = 10, max_to_keep: int = 3,
                 is_writer: bool = True):
        self.every = int(every)
        self.is_writer = is_writer
        self.multi = jax.process_count() > 1
        self.manager = None
        self.directory = Path(directory)
        self.damaged: list[tuple[int, str]] = []  # (step, why) skipped by the last restore
        if is_writer:
            mp = (ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
                  if self.multi else ocp.options.MultiprocessingOptions())
            Path(directory).mkdir(parents=True, exist_ok=True)  # orbax: no create= with active_processes
            with _quiet_absl():  # its step scan logs each damaged metadata file
                self.manager = ocp.CheckpointManager(
                    Path(directory).absolute(),
                    options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not self.multi,
                                                         enable_async_checkpointing=False,
                                                         multiprocessing_options=mp))

    def maybe_save(self, step: int, state, force: bool = False) -> bool:
        """Saves ``state`` as checkpoint ``step`` when step % every == 0 (or ``force``)."""
        if not self.is_writer or not (force or (self.every > 0 and step % self.every == 0)):
            return False
        self.manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)), force=True)
        self.manager.wait_until_finished()
        return True

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps(read=True)) if self.manager is not None else []

    def resume(self, run: dict, counter: str, name: str, template=None) -> dict:
        """``--resume``: the run state of the newest readable checkpoint, else ``run`` unchanged;
        says which in one line (naming damaged newer checkpoints, which are moved aside).
        ``counter``: the run state's outer-step key (``generation`` / ``iteration``); ``template``:
        the checkpoint's structure when it differs from ``run`` (default ``run``)."""
        _, restored = self.restore_latest(run if template is None else template)
        skipped = ""
        if self.damaged:
            moved = self._move_damaged()
            skipped = (f" (skipped damaged checkpoint{'s' if len(self.damaged) > 1 else ''} "
                       f"{', '.join(f'{s} ({why})' for s, why in self.damaged)}; moved to {moved})")
        if restored is None:
            print(f"[{name}] no readable checkpoint; starting from {counter} 0{skipped}", flush=True)
            return run
        print(f"[{name}] resumed from checkpoint at {counter} {int(restored[counter])}{skipped}", flush=True)
        return restored

    def _move_damaged(self) -> Path:
        aside = self.directory.with_name(self.directory.name + ".damaged")
        aside.mkdir(exist_ok=True)
        for step, _ in self.damaged:
            target = aside / str(step)
            if target.exists():
                shutil.rmtree(target)
            (self.directory / str(step)).rename(target)
        self.manager.reload()
        return aside

    def restore_latest(self, template):
        """Returns (step, state) from the newest checkpoint that restores; (None, None) if none do.

        ``template`` gives the structure, shapes and dtypes (e.g. the freshly initialised state).
        Every process of a multi-host run must call this (the result is broadcast from process 0).
        """
        step, state = self._restore_local(template) if self.is_writer else (None, None)
        if not self.multi:
            return step, state
        found = multihost_utils.broadcast_one_to_all(np.int32(-1 if step is None else step))
        if int(found) < 0:
            return None, None
        state = multihost_utils.broadcast_one_to_all(state if state is not None else template)
        return int(found), jax.device_get(state)

    def _restore_local(self, template):
        """The newest checkpoint that restores; the ones skipped go to ``self.damaged``."""
        abstract = _abstract(template)
        self.damaged = []
        with _quiet_absl():
            for step in reversed(self.steps()):
                try:
                    state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
                    _check_finite_structure(state, template)
                    return step, state
                except Exception as e:  # orbax raises various errors for damaged checkpoints
                    why = (str(e).strip().splitlines() or [""])[0][:100]
                    self.damaged.append((step, f"{type(e).__name__}: {why}" if why else type(e).__name__))
        return None, None

    def close(self):
        if self.manager is not None:
            self.manager.close()


@contextlib.contextmanager
def _quiet_absl():
    """orbax logs (absl ERROR lines) each damaged checkpoint file it reads; ``resume`` reports them
    in one line instead."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        absl.setLevel(level)


def _abstract(template):
    """The structure, shapes and dtypes of ``template`` (what orbax restores into)."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                                  template)


def _check_finite_structure(state, template):
    a = jax.tree_util.tree_structure(state)
    b = jax.tree_util.tree_structure(template)
    if a != b:
        raise ValueError(f"checkpoint structure {a} differs from the run's {b}")


def _single_process_checkpointer() -> ocp.Checkpointer:
    """A pytree checkpointer used by the calling process alone (no cross-process barriers)."""
    mp = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                            active_processes={jax.process_index()})
    return ocp.Checkpointer(ocp.PyTreeCheckpointHandler(multiprocessing_options=mp),
                            multiprocessing_options=mp)


def save_params(path: str | Path, params) -> None:
    """Saves one parameter pytree (a learned loss or objective) with orbax at ``path``.

    Host arrays only (``distributed.to_host`` first); call it from the writer process alone."""
    if jax.process_count() == 1:
        ocp.PyTreeCheckpointer().save(Path(path).absolute(), jax.device_get(params), force=True)
    else:
        _single_process_checkpointer().save(Path(path).absolute(), jax.device_get(params), force=True)


def load_params(path: str | Path, template=None):
    """Loads a pytree written by ``save_params``; ``template`` (optional) fixes its structure."""
    ckptr = ocp.PyTreeCheckpointer() if jax.process_count() == 1 else _single_process_checkpointer()
    if template is None:
        return ckptr.restore(Path(path).absolute())
    abstract = _abstract(template)
    return ckptr.restore(Path(path).absolute(), args=ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)))
