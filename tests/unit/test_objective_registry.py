"""Objectives as objects: the registry, the PPO mixing each objective owns, and the README's example of
adding one (executed here)."""
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from metarl.algorithms.epg.algorithm import EPGConfig
from metarl.inner.on_policy_agent import LifetimeConfig
from metarl.objectives import registry
from metarl.objectives.epg_conv import PureConvObjective, ResidualConvObjective
from metarl.objectives.lstm_on_policy import LSTMOnPolicyObjective
from metarl.protocols import OnPolicyObjective

ROOT = Path(__file__).resolve().parents[2]


def test_registry_builds_each_objective_with_its_mixing():
    life = LifetimeConfig(buffer_size=128, minibatch_size=16)
    pure, residual, lstm = (registry.make(n, life) for n in ("pure", "residual", "lstm"))
    assert isinstance(pure, PureConvObjective) and isinstance(residual, ResidualConvObjective)
    assert isinstance(lstm, LSTMOnPolicyObjective)
    for obj in (pure, residual, lstm):
        assert isinstance(obj, OnPolicyObjective)
    assert (pure.buffer_size, pure.minibatch_size) == (128, 16)
    assert pure.weights(0.25) == (0.75, 0.25) and residual.weights(0.25) == (1.0, 1.0)
    assert not pure.ppo_always and residual.ppo_always and not lstm.ppo_always
    assert lstm.value_always and not pure.value_always
    assert registry.make("pure", life, context_gradient=False).context_gradient is False
    assert residual.module.zero_output and not pure.module.zero_output
    with pytest.raises(ValueError, match="unknown objective 'mixed'; expected one of pure, residual, lstm"):
        registry.make("mixed", life)
    with pytest.raises(ValueError, match="unknown objective 'mixed'"):
        EPGConfig(objective="mixed").validate()


def test_readme_new_objective_snippet_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- on-policy-objective:start -->\s*```python\n(.*?)```\s*<!-- on-policy-objective:end -->",
                      text, re.S).group(1)
    ns = {}
    try:
        exec(compile(block, "README.md:on-policy-objective", "exec"), ns)
        theta = ns["theta"]
        assert set(theta) == {"w", "c"} and all(np.isfinite(np.asarray(v)).all() for v in theta.values())
        assert float(theta["w"]) != 0.0 or float(theta["c"]) != 0.0  # ES moved it
        assert "reward_weighted" in registry.names()
        assert isinstance(ns["epg"].objective, OnPolicyObjective)
    finally:
        registry.unregister("reward_weighted")


def test_drift_objective_starts_as_ppo_exactly_and_its_parameters_move_the_agent():
    """LPO's learned drift (--objective drift): d_theta = 0 at theta_0, so the lifetime equals the
    residual objective's at phi_0 (the agent's PPO term alone) for the same seeds, with and without
    the lifetime progress as an input (drift_t; the residual conv loss with --progress-input); a
    nonzero output layer changes the lifetime (the drift reaches the policy through r)."""
    import chex
    import jax.numpy as jnp

    from metarl import envs
    from metarl.inner.on_policy_agent import make_lifetime
    from metarl.objectives.lpo_drift import DriftObjective

    env = envs.make("goal_point")
    life = LifetimeConfig(lifetime_steps=128, buffer_size=128, eval_envs=1, hidden=(16, 16))
    task, key = env.sample_task(jax.random.PRNGKey(1), "train"), jax.random.PRNGKey(2)
    for drift in (registry.make("drift", life), registry.make("drift_t", life)):
        assert isinstance(drift, DriftObjective) and isinstance(drift, OnPolicyObjective) and drift.ppo_always
        theta = drift.init(jax.random.PRNGKey(0), 2, 2)
        residual = registry.make("residual", life, progress_input=drift.progress_input)
        phi = residual.init(jax.random.PRNGKey(0), 2, 2)
        a = jax.jit(make_lifetime(env, life, drift))(theta, task, key)
        b = jax.jit(make_lifetime(env, life, residual))(phi, task, key)
        chex.assert_trees_all_close(a["eval_return"], b["eval_return"], atol=1e-5)
        chex.assert_trees_all_close(a["curve"], b["curve"], atol=1e-5)
        moved = jax.tree_util.tree_map(lambda x: x, theta)
        last = sorted(moved["params"])[-1]  # the output layer
        moved["params"][last] = {"kernel": jnp.full_like(theta["params"][last]["kernel"], 0.5),
                                 "bias": theta["params"][last]["bias"]}
        c = jax.jit(make_lifetime(env, life, drift))(moved, task, key)
        assert not np.allclose(a["curve"], c["curve"], equal_nan=True)
    with pytest.raises(ValueError, match="objective 'drift' has no buffer context"):
        registry.make("drift", life, context_gradient=False)


def test_ppo_schedule_starts_as_ppo_exactly_and_each_coefficient_moves_the_agent():
    """--objective ppo_schedule: theta_0 = 0 gives the agent's PPO term alone (the lifetime equals the
    residual objective's at phi_0 for the same seeds); a coefficient set at one knot changes the
    lifetime; c_k(t) interpolates theta linearly between knots."""
    import chex
    import jax.numpy as jnp

    from metarl import envs
    from metarl.inner.on_policy_agent import make_lifetime
    from metarl.objectives.ppo_schedule import TERMS, PPOScheduleObjective

    env = envs.make("goal_point")
    life = LifetimeConfig(lifetime_steps=256, buffer_size=128, eval_envs=1, hidden=(16, 16))
    task, key = env.sample_task(jax.random.PRNGKey(1), "train"), jax.random.PRNGKey(2)
    sched = registry.make("ppo_schedule", life)
    assert isinstance(sched, PPOScheduleObjective) and isinstance(sched, OnPolicyObjective) and sched.ppo_always
    assert registry.make("ppo_schedule", life, progress_input=True) == sched
    theta = sched.init(jax.random.PRNGKey(0), 2, 2)
    chex.assert_shape(theta["theta"], (len(TERMS), 3))
    residual = registry.make("residual", life)
    phi = residual.init(jax.random.PRNGKey(0), 2, 2)
    run = jax.jit(make_lifetime(env, life, sched))
    a = run(theta, task, key)
    b = jax.jit(make_lifetime(env, life, residual))(phi, task, key)
    chex.assert_trees_all_close(a["eval_return"], b["eval_return"], atol=1e-5)
    chex.assert_trees_all_close(a["curve"], b["curve"], atol=1e-5)
    # every term reaches the policy (a coefficient at the first knot only: a constant factor on the
    # pg term would be nearly invisible to Adam, which normalises the gradient's scale)
    final = lambda m: np.array([m["eval_return_mean_action"], m["final_log_std"]])
    for k in range(len(TERMS)):
        c = run({"theta": theta["theta"].at[k, 0].set(2.0)}, task, key)
        assert np.abs(final(a) - final(c)).max() > 1e-4, TERMS[k]
    t = {"theta": jnp.arange(15.0).reshape(5, 3)}
    np.testing.assert_allclose(sched.coefficients(t, 0.25), 0.5 * (t["theta"][:, 0] + t["theta"][:, 1]), rtol=1e-6)
    np.testing.assert_allclose(sched.coefficients(t, 1.0), t["theta"][:, 2], rtol=1e-6)
    # the stabilisers (kl, mean_sq) only tighten: a negative coefficient is 0; the others keep their sign
    c = sched.coefficients({"theta": -t["theta"]}, 1.0)
    assert [float(c[TERMS.index(k)]) for k in ("kl", "mean_sq")] == [0.0, 0.0]
    assert float(c[TERMS.index("pg")]) == -2.0
    free = PPOScheduleObjective(nonnegative=())
    np.testing.assert_allclose(free.coefficients({"theta": -t["theta"]}, 1.0), -t["theta"][:, 2])
    with pytest.raises(ValueError, match="unknown term"):
        PPOScheduleObjective(nonnegative=("entropy",))
    with pytest.raises(ValueError, match="knots=1"):
        PPOScheduleObjective(knots=1)
