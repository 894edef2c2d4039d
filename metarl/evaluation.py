"""Policy evaluation, for every learner: the mean return of the first episode of ``num_envs`` envs.

A policy is an ``act(obs (num_envs, obs_dim), key) -> actions (num_envs, act_dim)``; ``gaussian``,
``deterministic`` and ``zero_action`` build the usual ones. ``first_episode_returns`` runs it from
``num_envs`` fresh starts of one task (reset keys split from ``key``), each for ``episode_length``
steps without auto-reset, rewards after an env's first episode end masked out; on plain locomotion
bodies it also sums the forward-velocity part of brax's reward (``forward_metric``), so that an
objective that only teaches standing still (brax's hopper pays +1 per step for staying up) cannot
pass for locomotion. Everything is pure and vmaps over tasks and keys.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from metarl.envs.core import TaskFamily, repeat_task
from metarl.envs.families import Plain

# plain brax bodies that walk or run, and the metric holding their forward-velocity reward
LOCOMOTION = ("hopper", "halfcheetah", "ant", "walker2d", "humanoid", "swimmer")
_FORWARD_KEYS = ("reward_forward", "reward_run", "x_velocity")


def forward_metric(env: TaskFamily) -> str | None:
    """The brax ``metrics`` key of the forward-progress reward of a plain locomotion body, or None
    (non-locomotion bodies, task families whose reward is not brax's)."""
    if not isinstance(env, Plain) or env.base_env_name not in LOCOMOTION:
        return None
    keys = jax.eval_shape(env.base.reset, jax.random.PRNGKey(0)).metrics
    return next((k for k in _FORWARD_KEYS if k in keys), None)


# ---- policies: act(obs (n, obs_dim), key) -> actions (n, act_dim) ----------------------------------
def gaussian(policy_fn: Callable, sampled: bool = True) -> Callable:
    """A Gaussian policy's act: mean + exp(log_std) * N(0, 1) if ``sampled``, else its mean.
    policy_fn(obs (n, obs_dim)) -> (mean, log_std) (n, act_dim), observation normalisation included."""

    def act(obs, key):
        mean, log_std = policy_fn(obs)
        return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape) if sampled else mean

    return act


def deterministic(pi: Callable) -> Callable:
    """The act of a deterministic policy pi(obs (n, obs_dim)) -> actions (n, act_dim)."""
    return lambda obs, key: pi(obs)


def zero_action(env: TaskFamily) -> Callable:
    """The act that always outputs zero: the do-nothing floor."""
    return lambda obs, key: jnp.zeros((obs.shape[0], env.action_size))


# ---- returns ------------------------------------------------------------------------------------
def first_episode_returns(env: TaskFamily, act: Callable, task, key, num_envs: int,
                          forward: str | None = None) -> dict:
    """{'return': (), 'forward_return': () if ``forward``}: means over ``num_envs`` envs of the first
    episode's return on ``task`` and of its forward part, the brax metric ``forward`` summed over
    the episode. Steps with ``env.step_no_reset``, so the step that ends an episode keeps its metrics."""
    if num_envs <= 0:
        raise ValueError(f"evaluation needs at least one env, got num_envs={num_envs}")
    k_reset, k_act = jax.random.split(key)
    state = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs), repeat_task(task, num_envs))

    def body(carry, k):
        state, alive, ret, fwd = carry
        state = jax.vmap(env.step_no_reset)(state, act(state.obs, k))
        ret = ret + alive * state.reward
        if forward is not None:
            fwd = fwd + alive * state.brax_state.metrics[forward]
        alive = alive * (1.0 - state.done)
        return (state, alive, ret, fwd), None

    z = jnp.zeros(num_envs)
    init = (state, jnp.ones(num_envs), z, z)
    (_, _, ret, fwd), _ = jax.lax.scan(body, init, jax.random.split(k_act, env.episode_length))
    out = {"return": ret.mean()}
    if forward is not None:
        out["forward_return"] = fwd.mean()
    return out


def episode_return(env: TaskFamily, act: Callable, task, key, num_envs: int):
    """Mean first-episode return () of ``act`` over ``num_envs`` envs on ``task``."""
    return first_episode_returns(env, act, task, key, num_envs)["return"]


def gaussian_policy_returns(env: TaskFamily, policy_fn: Callable, task, key, num_envs: int):
    """(sampled-action return, mean-action return) () of a Gaussian policy, on the same starts.
    Sampled actions are EPG's evaluation protocol; the mean action is reported beside it."""
    return (episode_return(env, gaussian(policy_fn, True), task, key, num_envs),
            episode_return(env, gaussian(policy_fn, False), task, key, num_envs))


def zero_action_return(env: TaskFamily, task, key, num_envs: int):
    """Mean first-episode return () of the policy that always outputs zero."""
    return episode_return(env, zero_action(env), task, key, num_envs)
