"""MetaGenRL: the CLI's exit code on a bad env (e2e) and one meta-iteration moving the objective (slow).
The library tests are in tests/unit/test_metagenrl_objective.py."""
import subprocess
import sys

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from metarl.inner.td3 import TD3Config
from metarl.algorithms.metagenrl.algorithm import MetaGenRLConfig


@pytest.mark.e2e
def test_cli_rejects_unknown_env_with_exit_code_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "experiments.metagenrl", "--preset", "smoke",
                        "--train-envs", "nope", "--run-dir", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "nope" in r.stderr and len([l for l in r.stderr.splitlines() if l.startswith("error")]) == 1


@pytest.mark.slow
def test_meta_training_moves_the_objective():
    from metarl import envs
    from metarl.algorithms.metagenrl.algorithm import make_trainer

    cfg = MetaGenRLConfig(td3=TD3Config(hidden=(16,), random_steps=20, replay_size=500, batch_size=4),
                          agents_per_env=2, steps_per_iteration=40, meta_batch=4, warm_start_steps=40)
    mt = make_trainer([envs.make("random_reacher"), envs.make("hopper")], cfg)
    ms = mt.init(jax.random.PRNGKey(0))
    a0 = jax.flatten_util.ravel_pytree(ms.alpha)[0]
    ms, metrics = jax.jit(mt.iteration)(ms)
    a1 = jax.flatten_util.ravel_pytree(ms.alpha)[0]
    assert np.isfinite(np.asarray(metrics["meta_loss"])).all()
    assert float(jnp.abs(a1 - a0).max()) > 1e-4
    assert int(ms.groups[1].step[0]) == 40 and ms.groups[1].replay.action.shape[-1] == 3
