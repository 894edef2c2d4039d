"""GoalPoint: MAML's "2D navigation" (Finn et al., 2017), the fast benchmark of meta-RL papers.

A point starts at the origin; the action is a velocity, clipped to [-0.1, 0.1] per axis; the
reward is minus the distance to a goal the agent does not observe (the observation is the 2-D
position only), over a 100-step horizon. Goals are uniform in [-0.5, 0.5]^2 with x > 0 for
meta-training and x < 0 for the meta-test: GoalAnt's left/right split at a scale a laptop runs in
seconds. Pure JAX behind the same ``TaskFamily`` interface as the Brax families (the dynamics are
one add and one clip, so a physics engine would only add overhead).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import State

from metarl.envs.core import TaskFamily, check_split

MAX_SPEED = 0.1  # per axis and step
GOAL_HALF_WIDTH = 0.5


class PointDynamics:
    """x_{t+1} = x_t + clip(a_t, -0.1, 0.1); brax's ``Env`` surface (reset, step, sizes, dt).

    ``pipeline_state`` is the (2,) position; the reward is the task's (``GoalPoint.task_reward``).
    """

    observation_size = 2
    action_size = 2
    dt = 1.0

    def reset(self, key: jax.Array) -> State:
        pos = jnp.zeros(2)
        zero = jnp.zeros(())
        return State(pipeline_state=pos, obs=pos, reward=zero, done=zero, metrics={})

    def step(self, state: State, action: jax.Array) -> State:
        pos = state.pipeline_state + jnp.clip(action, -MAX_SPEED, MAX_SPEED)
        return state.replace(pipeline_state=pos, obs=pos)


class GoalPoint(TaskFamily):
    """2-D point navigation to an unobserved goal (task: {'goal': (2,)}); r_t = -||x_t - goal||."""

    name = "goal_point"
    action_bound = MAX_SPEED

    def make_base(self, backend: str) -> PointDynamics:
        return PointDynamics()

    def sample_task(self, key, split="train"):
        check_split(split)
        kx, ky = jax.random.split(key)
        x = jax.random.uniform(kx, (), minval=0.0, maxval=GOAL_HALF_WIDTH)
        y = jax.random.uniform(ky, (), minval=-GOAL_HALF_WIDTH, maxval=GOAL_HALF_WIDTH)
        return {"goal": jnp.stack([-x if split == "test" else x, y])}

    def task_reward(self, prev, cur, task):
        return -jnp.linalg.norm(cur.pipeline_state - task["goal"])

    def oracle_policy(self, task):
        """act(obs (n, 2), key) -> (n, 2): straight for the goal at full speed, without overshoot."""

        def act(obs, key):
            delta = task["goal"] - obs
            scale = jnp.minimum(1.0, MAX_SPEED / jnp.maximum(jnp.abs(delta).max(-1, keepdims=True), 1e-8))
            return delta * scale

        return act
