"""metarl: meta-learning the objective functions of RL agents (EPG, MetaGenRL) in JAX on Brax.

``metarl.load_objective(run_dir)``: a finished run's learned objective with its parameters and
settings (``metarl.apply``); ``python -m metarl.apply RUN_DIR --env NAME`` trains fresh agents with it.
"""

__version__ = "0.1.0"


def load_objective(run_dir):
    """The learned objective of the run in ``run_dir`` (a ``metarl.apply.SavedObjective``)."""
    # imported here, not at the top: importing jax must wait until a multi-host run has called
    # jax.distributed.initialize, and `import metarl` must not import jax
    from metarl.apply import load_objective as load

    return load(run_dir)
