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
