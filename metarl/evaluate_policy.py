"""Policy evaluation: the mean return of one full episode per environment (pure, vmappable)."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from metarl.envs.core import TaskFamily, repeat_task


def episode_return(env: TaskFamily, act: Callable, task, key, num_envs: int):
    """Mean undiscounted return of the first episode of ``num_envs`` envs on ``task``.

    act(obs (num_envs, obs_dim), key) -> actions (num_envs, act_dim). Each env runs
    ``env.episode_length`` steps; rewards after its first episode end are masked out. Returns ().
    """
    k_reset, k_act = jax.random.split(key)
    tasks = repeat_task(task, num_envs)
    state = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs), tasks)

    def body(carry, k):
        state, alive, total = carry
        state = jax.vmap(env.step)(state, act(state.obs, k))
        total = total + alive * state.reward
        alive = alive * (1.0 - state.done)
        return (state, alive, total), None

    init = (state, jnp.ones(num_envs), jnp.zeros(num_envs))
    (_, _, total), _ = jax.lax.scan(body, init, jax.random.split(k_act, env.episode_length))
    return total.mean()


def gaussian_policy_returns(env: TaskFamily, policy_fn: Callable, task, key, num_envs: int):
    """(sampled-action return, mean-action return) of a Gaussian policy, on the same starts.

    policy_fn(obs (num_envs, obs_dim)) -> (mean, log_std), observation normalisation included.
    Sampled actions are the paper's evaluation protocol; the mean action is reported beside it.
    """

    def act(sampled):
        def fn(obs, k):
            mean, log_std = policy_fn(obs)
            return mean + jnp.exp(log_std) * jax.random.normal(k, mean.shape) if sampled else mean
        return fn

    return (episode_return(env, act(True), task, key, num_envs),
            episode_return(env, act(False), task, key, num_envs))


def zero_action_return(env: TaskFamily, task, key, num_envs: int):
    """Return of the policy that always outputs zero: the do-nothing floor."""
    return episode_return(env, lambda obs, k: jnp.zeros((obs.shape[0], env.action_size)), task, key,
                          num_envs)
