"""Whole-run checkpoints with orbax: save every K generations, resume from the newest readable one.

A checkpoint holds the run state pytree (outer-loop state, RNG key, generation, best objective and
its score, metric history). orbax writes each step to a temporary directory and renames it when
complete, so a kill mid-save leaves the previous checkpoints intact. A latest checkpoint that fails
to restore (corrupt or truncated) is skipped with a warning and the one before it is used.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp


class RunCheckpointer:
    def __init__(self, directory: str | Path, every: int = 10, max_to_keep: int = 3,
                 is_writer: bool = True):
        self.every = int(every)
        self.is_writer = is_writer
        self.manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 enable_async_checkpointing=False))

    def maybe_save(self, step: int, state, force: bool = False) -> bool:
        """Saves ``state`` as checkpoint ``step`` when step % every == 0 (or ``force``)."""
        if not self.is_writer or not (force or (self.every > 0 and step % self.every == 0)):
            return False
        self.manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)), force=True)
        self.manager.wait_until_finished()
        return True

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps(read=True))

    def restore_latest(self, template):
        """Returns (step, state) from the newest checkpoint that restores; (None, None) if none do.

        ``template`` gives the structure, shapes and dtypes (e.g. the freshly initialised state).
        """
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), template)
        for step in reversed(self.steps()):
            try:
                state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
                _check_finite_structure(state, template)
                return step, state
            except Exception as e:  # orbax raises various errors for damaged checkpoints
                warnings.warn(f"checkpoint {step} could not be restored ({type(e).__name__}: "
                              f"{str(e)[:120]}); falling back to an earlier one", stacklevel=2)
        return None, None

    def close(self):
        self.manager.close()


def _check_finite_structure(state, template):
    a = jax.tree_util.tree_structure(state)
    b = jax.tree_util.tree_structure(template)
    if a != b:
        raise ValueError(f"checkpoint structure {a} differs from the run's {b}")


def save_params(path: str | Path, params) -> None:
    """Saves one parameter pytree (a learned loss or objective) with orbax at ``path``."""
    ocp.PyTreeCheckpointer().save(Path(path).absolute(), jax.device_get(params), force=True)


def load_params(path: str | Path, template=None):
    """Loads a pytree written by ``save_params``; ``template`` (optional) fixes its structure."""
    ckptr = ocp.PyTreeCheckpointer()
    if template is None:
        return ckptr.restore(Path(path).absolute())
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), template)
    return ckptr.restore(Path(path).absolute(), args=ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)))
