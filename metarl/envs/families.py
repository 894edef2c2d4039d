"""The task families of EPG (Houthooft et al., 2018) and plain Brax tasks, built on Brax systems.

Rewards measure the task only, as in the paper's code: GoalAnt scores progress toward its target
minus control costs, the directional and random hoppers and the cheetah score torso velocity along
their direction, with no alive bonus. None of these families ends an episode early (brax's
``terminate_when_unhealthy`` is off): every episode runs the full horizon, then auto-resets to a
fresh random initial state (core.py).

Splits: GoalAnt and RandomReacher have disjoint train/test task sets (GoalAnt: x > 0 vs x < 0;
RandomReacher: y > 0 vs y < 0). DirHalfCheetah, DirHopper and RandomHopper draw both splits from
the same distribution, as in the paper (the directions are only +1 and -1; the physics ranges are
continuous), with independent key streams.
"""
from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import mujoco
from brax import envs as brax_envs
from brax.envs.base import State

from metarl.envs.core import TaskFamily, check_split


def torso_x_velocity(prev, cur, dt: float) -> jax.Array:
    """(x_after - x_before) / dt of the torso (link 0) between two brax states: ()."""
    return (cur.pipeline_state.x.pos[0, 0] - prev.pipeline_state.x.pos[0, 0]) / dt


def brax_env(name: str, backend: str, **kwargs):
    return brax_envs.get_environment(name, backend=backend, **kwargs)


class Plain(TaskFamily):
    """An unmodified Brax task (brax's reward and termination); the task pytree is empty."""

    def __init__(self, base_env_name: str, backend: str, episode_length: int = 1000):
        self.base_env_name = base_env_name
        self.name = base_env_name
        super().__init__(backend, episode_length)


class GoalAnt(TaskFamily):
    """Ant rewarded for progress toward a 2-D target (task: {'target': (2,)}).

    r_t = (d_{t-1} - d_t) / dt - ctrl cost - contact cost, d = torso-to-target distance (brax's ant
    reports its contact cost as 0: contact forces are not implemented there). No survival bonus unless
    ``healthy_reward=True`` (then brax's +1 per step while the torso height is in [0.2, 1]); no early
    termination: every episode runs the full horizon. Train targets lie on the right half (x > 0),
    test targets on the left (x < 0), at radius in [min_radius, max_radius]. The observation appends
    the target and the torso-to-target vector.
    """

    name = "goal_ant"
    base_env_name = "ant"
    min_radius, max_radius = 2.0, 5.0
    half_angle = 0.45 * jnp.pi  # keeps |x| >= r * cos(0.45 pi) > 0: the halves never touch

    def __init__(self, backend: str, episode_length: int = 1000, healthy_reward: bool = False):
        self.healthy_reward = bool(healthy_reward)
        super().__init__(backend, episode_length)

    def make_base(self, backend):
        return brax_env("ant", backend, terminate_when_unhealthy=False)

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
        reward = progress + cur.metrics["reward_ctrl"] + cur.metrics["reward_contact"]
        if self.healthy_reward:
            reward = reward + cur.metrics["reward_survive"]
        return reward


class _Directional(TaskFamily):
    """r_t = direction * (x_after - x_before) / dt of the torso (task: {'direction': () in {+1, -1}}).

    No alive bonus, no control cost, no early termination (the original EPG hopper reward). The
    direction is drawn +1 or -1 at random per task, for both splits, and is not observed: the agent
    must find it from rewards, as in the paper.
    """

    base_kwargs: dict = {}

    def make_base(self, backend):
        return brax_env(self.base_env_name, backend, **self.base_kwargs)

    def sample_task(self, key, split="train"):
        check_split(split)
        key = jax.random.fold_in(key, 0 if split == "train" else 1)
        return {"direction": jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)}

    def task_reward(self, prev, cur, task):
        return task["direction"] * torso_x_velocity(prev, cur, self.base.dt)


class DirHalfCheetah(_Directional):
    name = "dir_halfcheetah"
    base_env_name = "halfcheetah"


class DirHopper(_Directional):
    """Hopper version of ``_Directional``; brax's hopper is built with terminate_when_unhealthy=False,
    so a fallen hopper keeps going until the time limit."""

    name = "dir_hopper"
    base_env_name = "hopper"
    base_kwargs = {"terminate_when_unhealthy": False}


class RandomHopper(TaskFamily):
    """Hopper with per-task physics, rewarded for forward torso velocity (the original EPG ranges).

    Task: 'mass' (num_links,) factors on each link's mass and inertia, 'friction' () factor on every
    geom's friction, 'thickness' () factor on every capsule's radius, each ~ U(0.5, 2); 'gravity' ()
    the gravity magnitude in m/s^2 ~ U(2, 20) (nominal 9.81). In brax's hopper.xml only the foot
    capsule collides (contype 1 against the floor's conaffinity 1; every other geom has contype =
    conaffinity = 0), so the thickness acts through the foot; masses are not recomputed from it.

    r_t = (x_after - x_before) / dt of the torso: no alive bonus, no control cost, and no early
    termination (terminate_when_unhealthy=False): every episode runs the full horizon.

    Masses on the spring and positional backends: these pipelines read mass ** (1 - spring_mass_scale)
    and diag(inertia) ** (1 - spring_inertia_scale), and hopper.xml sets both scales to 1, so the
    links simulate with unit mass and inertia whatever their mass is. The task system therefore
    stores those effective values times the factors with the scales set to 0: the nominal task
    (all factors 1) simulates exactly as brax's hopper, and the factors change the dynamics. Other
    backends read the masses directly; they are scaled as they are.

    The simulated system is swapped in at trace time, as brax's domain randomisation wrapper does, so
    one compiled program serves every task.
    """

    name = "random_hopper"
    base_env_name = "hopper"
    factor_range = (0.5, 2.0)
    gravity_range = (2.0, 20.0)

    def make_base(self, backend):
        return brax_env("hopper", backend, terminate_when_unhealthy=False)

    def sample_task(self, key, split="train"):
        check_split(split)
        key = jax.random.fold_in(key, 0 if split == "train" else 1)
        km, kf, kg, kt = jax.random.split(key, 4)
        n = self.base.sys.link.inertia.mass.shape[0]
        lo, hi = self.factor_range
        u = lambda k, s: jax.random.uniform(k, s, minval=lo, maxval=hi)
        g = jax.random.uniform(kg, (), minval=self.gravity_range[0], maxval=self.gravity_range[1])
        return {"mass": u(km, (n,)), "friction": u(kf, ()), "gravity": g, "thickness": u(kt, ())}

    def task_reward(self, prev, cur, task):
        return torso_x_velocity(prev, cur, self.base.dt)

    def task_system(self, task):
        sys = self.base.sys
        m = task["mass"]
        inertia = sys.link.inertia
        if self.backend in ("spring", "positional"):
            mass = inertia.mass ** (1 - sys.spring_mass_scale) * m
            i_diag = jnp.diagonal(inertia.i, axis1=-2, axis2=-1) ** (1 - sys.spring_inertia_scale)
            i = jax.vmap(jnp.diag)(i_diag * m[:, None])
            scales = {"spring_mass_scale": jnp.zeros(()), "spring_inertia_scale": jnp.zeros(())}
        else:
            mass, i, scales = inertia.mass * m, inertia.i * m[:, None, None], {}
        gravity = jnp.array([0.0, 0.0, -1.0]) * task["gravity"]
        capsule = jnp.asarray(sys.geom_type == mujoco.mjtGeom.mjGEOM_CAPSULE)
        return sys.tree_replace({
            "link.inertia.mass": mass,
            "link.inertia.i": i,
            "body_mass": sys.body_mass.at[1:].multiply(m),
            "body_inertia": sys.body_inertia.at[1:].multiply(m[:, None]),
            "geom_friction": sys.geom_friction * task["friction"],
            "geom_size": sys.geom_size.at[:, 0].multiply(jnp.where(capsule, task["thickness"], 1.0)),
            "gravity": gravity,
            "opt.gravity": gravity,
            **scales,
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

    Targets at radius in [0.05, 0.2]; y > 0 for the train split and y < 0 for the test split (angle
    uniform in [0.02 pi, 0.98 pi], plus pi for test), so the two never overlap. The brax observation
    already holds the target and the fingertip-to-target vector.
    """

    name = "random_reacher"
    base_env_name = "reacher"
    margin = 0.02 * jnp.pi  # keeps |y| >= r * sin(0.02 pi) > 0: the halves never touch

    def sample_task(self, key, split="train"):
        check_split(split)
        k1, k2 = jax.random.split(key)
        r = jax.random.uniform(k1, (), minval=0.05, maxval=0.2)
        ang = jax.random.uniform(k2, (), minval=self.margin, maxval=jnp.pi - self.margin)
        ang = ang + (jnp.pi if split == "test" else 0.0)
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
