"""A saved objective's parameters: ``load_params(path)`` and ``save_params(path, params)`` (orbax;
``metarl.runs.checkpoint`` also holds the run checkpoints). ``metarl.load_objective(run_dir)`` gives
the objective object with them."""
from metarl.runs.checkpoint import load_params, save_params

__all__ = ["load_params", "save_params"]
