"""GoalPoint (MAML's 2-D navigation): dynamics, reward, splits and the scripted oracle."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl import envs
from metarl.evaluation import episode_return, zero_action_return


@pytest.fixture(scope="module")
def env():
    return envs.make("goal_point")


def test_observation_is_position_only_and_velocity_is_clipped(env):
    assert (env.observation_size, env.action_size, env.episode_length) == (2, 2, 100)
    task = {"goal": jnp.array([0.3, -0.2])}
    s = env.reset(jax.random.PRNGKey(0), task)
    np.testing.assert_array_equal(s.obs, [0.0, 0.0])  # starts at the origin, goal not observed
    s = env.step(s, jnp.array([5.0, -0.05]))
    np.testing.assert_allclose(s.obs, [0.1, -0.05], atol=1e-7)
    assert float(s.reward) == pytest.approx(-float(jnp.linalg.norm(jnp.array([0.1, -0.05]) - task["goal"])))


def test_goal_splits_are_disjoint_halves_of_the_square(env):
    keys = jax.random.split(jax.random.PRNGKey(0), 512)
    for split, sign in (("train", 1.0), ("test", -1.0)):
        g = jax.vmap(lambda k: env.sample_task(k, split))(keys)["goal"]
        chex.assert_shape(g, (512, 2))
        assert bool(jnp.all(sign * g[:, 0] > 0)) and bool(jnp.all(jnp.abs(g) <= 0.5))
        assert float(g[:, 1].min()) < -0.4 and float(g[:, 1].max()) > 0.4


def test_episodes_run_the_horizon_and_oracle_beats_zero_action(env):
    tasks = jax.vmap(lambda k: env.sample_task(k, "test"))(jax.random.split(jax.random.PRNGKey(1), 64))
    keys = jax.random.split(jax.random.PRNGKey(2), 64)
    zero = jax.vmap(lambda t, k: zero_action_return(env, t, k, 1))(tasks, keys)
    oracle = jax.vmap(lambda t, k: episode_return(env, env.oracle_policy(t), t, k, 1))(tasks, keys)
    # zero action pays the goal distance for all 100 steps; the oracle reaches it within 5 steps
    np.testing.assert_allclose(zero, -100 * jnp.linalg.norm(tasks["goal"], axis=-1), rtol=1e-5)
    assert float(oracle.mean()) > -1.5 and float(zero.mean()) < -30


def test_pure_jax_family_refuses_a_physics_backend():
    with pytest.raises(ValueError, match="unknown backend 'spring' for goal_point"):
        envs.make("goal_point", backend="spring")


def test_noisy_oracle_bounds_a_gaussian_agent_far_below_the_noise_free_oracle(env):
    """benchmarks.epg_point_ceiling: with the agent's exploration noise (std 0.37 against the 0.1
    clip) even the goal-knowing mean scores far below the scripted oracle; without noise the gain-1
    mean (one step to the goal, clipped) nearly matches it, and with noise a steep mean beats it."""
    from benchmarks.epg_point_ceiling import mlp_init, noisy_oracle_returns

    zero = jax.tree_util.tree_map(jnp.zeros_like, mlp_init(jax.random.PRNGKey(0)))
    keys = jax.random.split(jax.random.PRNGKey(1), 64)
    tasks = jax.vmap(lambda k: env.sample_task(k, "test"))(keys)
    oracle = jax.vmap(lambda t, k: episode_return(env, env.oracle_policy(t), t, k, 2))(tasks, keys).mean()
    score = lambda g, ls: float(noisy_oracle_returns(env, zero, g, ls, tasks, keys, 2).mean())
    assert score(1.0, -12.0) == pytest.approx(float(oracle), abs=0.3)
    assert score(30.0, -1.0) < float(oracle) - 5.0
    assert score(30.0, -1.0) > score(1.0, -1.0) + 5.0
