"""The task families of EPG (Houthooft et al., 2018) and plain Brax tasks, built on Brax systems.

Splits: GoalAnt and RandomReacher have disjoint train/test task sets (GoalAnt: x > 0 vs x < 0;
RandomReacher: alternating 45-degree sectors of target angle). DirHalfCheetah, DirHopper and
RandomHopper draw both splits from the same distribution, as in the paper (the directions are only
+1 and -1; the physics ranges are continuous), with independent key streams.
"""
from __future__ import annotations

import contextlib
import math

import jax
import jax.numpy as jnp
from brax.envs.base import State

from metarl.envs.core import TaskFamily, check_split


class Plain(TaskFamily):
    """An unmodified Brax task; the task pytree is empty."""

    def __init__(self, base_env_name: str, backend: str, episode_length: int = 1000):
        self.base_env_name = base_env_name
        self.name = base_env_name
        super().__init__(backend, episode_length)


class GoalAnt(TaskFamily):
    """Ant rewarded for progress toward a 2-D target (task: {'target': (2,)}).

    r_t = (d_{t-1} - d_t) / dt + survive - ctrl - contact costs, d = torso-to-target distance.
    Train targets lie on the right half (x > 0), test targets on the left (x < 0), at radius
    in [min_radius, max_radius]. The observation appends the target and the torso-to-target vector.
    """

    name = "goal_ant"
    base_env_name = "ant"
    min_radius, max_radius = 2.0, 5.0
    half_angle = 0.45 * jnp.pi  # keeps |x| >= r * cos(0.45 pi) > 0: the halves never touch

    def sample_task(self, key, split="train"):
        check_split(split)
        k1, k2 = jax.random.split(key)
        r = jax.random.uniform(k1, (), minval=self.min_radius, maxval=self.max_radius)
        ang = jax.random.uniform(k2, (), minval=-self.half_angle, maxval=self.half_angle)
        ang = ang + (jnp.pi if split == "test" else 0.0)
        return {"target": jnp.stack([r * jnp.cos(ang), r * jnp.sin(ang)])}

    def task_obs_size(self, task):
        return 4

    @staticmethod
    def torso_xy(brax_state):
        return brax_state.pipeline_state.x.pos[0, :2]

    def task_obs(self, brax_state, task):
        return jnp.concatenate([task["target"], task["target"] - self.torso_xy(brax_state)])

    def task_reward(self, prev, cur, task):
        d0 = jnp.linalg.norm(task["target"] - self.torso_xy(prev))
        d1 = jnp.linalg.norm(task["target"] - self.torso_xy(cur))
        progress = (d0 - d1) / self.base.dt
        return cur.reward - cur.metrics["forward_reward"] + progress


class _Directional(TaskFamily):
    """r_t = direction * forward reward + the other terms (task: {'direction': () in {+1, -1}}).

    The direction is not observed: the agent must find it from rewards, as in the paper.
    """

    forward_metric = ""

    def sample_task(self, key, split="train"):
        check_split(split)
        key = jax.random.fold_in(key, 0 if split == "train" else 1)
        return {"direction": jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)}

    def task_reward(self, prev, cur, task):
        fwd = cur.metrics[self.forward_metric]
        return cur.reward - fwd + task["direction"] * fwd


class DirHalfCheetah(_Directional):
    name = "dir_halfcheetah"
    base_env_name = "halfcheetah"
    forward_metric = "reward_run"


class DirHopper(_Directional):
    name = "dir_hopper"
    base_env_name = "hopper"
    forward_metric = "reward_forward"


class RandomHopper(TaskFamily):
    """Hopper with per-task physics (task: log-scales of link masses, friction and gravity).

    Each factor is exp(u), u ~ U(-log 1.5, log 1.5): masses (and inertias) per link, friction of all
    geoms, gravity. The simulated system is swapped in at trace time, as brax's domain randomisation
    wrapper does, so one compiled program serves every task.
    """

    name = "random_hopper"
    base_env_name = "hopper"
    log_range = math.log(1.5)

    def sample_task(self, key, split="train"):
        check_split(split)
        key = jax.random.fold_in(key, 0 if split == "train" else 1)
        km, kf, kg = jax.random.split(key, 3)
        n = self.base.sys.link.inertia.mass.shape[0]
        u = lambda k, s: jax.random.uniform(k, s, minval=-self.log_range, maxval=self.log_range)
        return {"log_mass": u(km, (n,)), "log_friction": u(kf, ()), "log_gravity": u(kg, ())}

    def task_system(self, task):
        sys = self.base.sys
        m = jnp.exp(task["log_mass"])
        f, g = jnp.exp(task["log_friction"]), jnp.exp(task["log_gravity"])
        return sys.tree_replace({
            "link.inertia.mass": sys.link.inertia.mass * m,
            "link.inertia.i": sys.link.inertia.i * m[:, None, None],
            "body_mass": sys.body_mass.at[1:].multiply(m),
            "geom_friction": sys.geom_friction * f,
            "gravity": sys.gravity * g,
            "opt.gravity": sys.opt.gravity * g,
        })

    @contextlib.contextmanager
    def physics(self, task):
        env = self.base.unwrapped if hasattr(self.base, "unwrapped") else self.base
        nominal = env.sys
        env.sys = self.task_system(task)
        try:
            yield
        finally:
            env.sys = nominal


class RandomReacher(TaskFamily):
    """Reacher with a target fixed for the lifetime (task: {'target': (2,)}).

    Targets at radius in [0.05, 0.2]; the angle lies in even 45-degree sectors for the train split
    and odd ones for the test split, so the two never overlap. The brax observation already holds
    the target and the fingertip-to-target vector.
    """

    name = "random_reacher"
    base_env_name = "reacher"
    sectors = 8

    def sample_task(self, key, split="train"):
        check_split(split)
        k1, k2, k3 = jax.random.split(key, 3)
        r = jax.random.uniform(k1, (), minval=0.05, maxval=0.2)
        width = 2 * jnp.pi / self.sectors
        sector = 2 * jax.random.randint(k2, (), 0, self.sectors // 2) + (1 if split == "test" else 0)
        ang = (sector + jax.random.uniform(k3, (), minval=0.02, maxval=0.98)) * width
        return {"target": jnp.stack([r * jnp.cos(ang), r * jnp.sin(ang)])}

    def base_reset(self, key, task):
        env = self.base
        k1, k2 = jax.random.split(key)
        q = env.sys.init_q + jax.random.uniform(k1, (env.sys.q_size(),), minval=-0.1, maxval=0.1)
        qd = jax.random.uniform(k2, (env.sys.qd_size(),), minval=-0.005, maxval=0.005)
        q = q.at[2:].set(task["target"])
        qd = qd.at[2:].set(0.0)
        ps = env.pipeline_init(q, qd)
        zero = jnp.zeros(())
        return State(pipeline_state=ps, obs=env._get_obs(ps), reward=zero, done=zero,
                     metrics={"reward_dist": zero, "reward_ctrl": zero})
