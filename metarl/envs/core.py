"""Task-conditioned, auto-resetting environments on Brax.

A *task family* is a set of MDPs that differ by a task pytree (a target, a direction, physics
parameters). A task is drawn once per agent lifetime with ``sample_task(key, split)`` and passed to
``reset``; it then rides along in the state, so ``step(state, action)`` is a pure function that
vmaps over environments and tasks alike.

Why not brax's ``EpisodeWrapper``/``AutoResetWrapper``: their ``reset`` takes only a key, while our
tasks are explicit arguments fixed for a lifetime. ``TaskFamily`` does the same two jobs (time limit,
auto-reset) with the task in the state, and unlike brax's wrapper each new episode starts from a
fresh random initial state (a reset with a new key carried in the state), not from the first one.
``final_obs`` keeps the observation an episode ended in, so learners bootstrap V(s_T) at time
limits from the true last state rather than from the next episode's first.
"""
from __future__ import annotations

import contextlib
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

SPLITS = ("train", "test")


@struct.dataclass
class EnvState:
    """State of one environment. Scalars are shape () per environment.

    brax_state: the wrapped brax ``State`` (pipeline state, metrics).
    obs: (obs_dim,) observation, task features included where the family exposes them; after an
        episode end, the first observation of the next episode.
    final_obs: (obs_dim,) the observation the last step reached before any auto-reset: s_{t+1} of
        the transition (equals obs where done == 0).
    reward: reward r_t of the last step.
    done: 1.0 when the last step ended an episode (terminal or time limit); the state was reset.
    truncated: 1.0 when that end was the time limit only (bootstrap the value there, from final_obs).
    steps: steps taken in the current episode.
    episode_return: return accumulated in the current episode.
    completed_return: return of the episode that just ended (valid where done == 1).
    task: the task pytree, fixed for the lifetime.
    key: (2,) PRNG key of the next episode's random initial state.
    """

    brax_state: Any
    obs: jax.Array
    final_obs: jax.Array
    reward: jax.Array
    done: jax.Array
    truncated: jax.Array
    steps: jax.Array
    episode_return: jax.Array
    completed_return: jax.Array
    task: Any
    key: jax.Array


def repeat_task(task: Any, n: int) -> Any:
    """The same task for n environments: every leaf gets a leading axis of size n."""
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), task)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


class TaskFamily:
    """A family of MDPs on one Brax system. Subclasses implement the task-specific parts.

    Attributes: ``name``, ``backend``, ``observation_size``, ``action_size``, ``episode_length``,
    ``action_bound`` (the env acts on actions clipped to [-action_bound, action_bound] per dimension).
    """

    name: str = ""
    base_env_name: str = ""
    action_bound: float = 1.0  # brax's actuators: control range [-1, 1]

    def __init__(self, backend: str, episode_length: int = 1000):
        self.backend = backend
        self.episode_length = int(episode_length)
        self.base = self.make_base(backend)
        self.action_size = self.base.action_size
        dummy = self.sample_task(jax.random.PRNGKey(0), "train")
        self.observation_size = self.base.observation_size + self.task_obs_size(dummy)
        # Each call site of reset/step inside a bigger program (training rollout, evaluation) reuses
        # one trace of the physics instead of re-tracing brax's pipeline: a large share of compile
        # time. Not in multi-process runs: there the nested jit's captured system constants become
        # arrays spanning other processes' devices, which jax refuses to close over.
        nested_jit = jax.process_count() == 1
        self.reset = jax.jit(self._reset) if nested_jit else self._reset
        self.step = jax.jit(self._step) if nested_jit else self._step
        self.step_no_reset = jax.jit(self._step_no_reset) if nested_jit else self._step_no_reset

    # ---- task-specific hooks -------------------------------------------------------------
    def make_base(self, backend: str) -> Any:
        """The underlying environment: a brax ``Env`` (default: ``base_env_name`` on ``backend``),
        or anything with brax's ``reset(key) -> State``, ``step(State, action) -> State``,
        ``observation_size``, ``action_size`` and ``dt``."""
        from brax import envs as brax_envs

        return brax_envs.get_environment(self.base_env_name, backend=backend)

    def sample_task(self, key: jax.Array, split: str = "train") -> Any:
        """Returns a task pytree; the same key and split always give the same task."""
        check_split(split)
        return {}

    def task_obs_size(self, task: Any) -> int:
        return 0

    def task_obs(self, brax_state: Any, task: Any) -> jax.Array:
        return jnp.zeros((0,))

    def task_reward(self, prev_brax_state: Any, brax_state: Any, task: Any) -> jax.Array:
        """Reward r_t for the transition; default: the brax environment's own reward."""
        return brax_state.reward

    @contextlib.contextmanager
    def physics(self, task: Any):
        """Trace-time context in which the brax env simulates the task's physics (default: as is)."""
        yield

    def base_reset(self, key: jax.Array, task: Any) -> Any:
        return self.base.reset(key)

    # ---- the environment API -------------------------------------------------------------
    def observe(self, bs: Any, task: Any) -> jax.Array:
        """The observation (obs_dim,) of brax state ``bs``: the body's, then the task features."""
        return jnp.concatenate([bs.obs, self.task_obs(bs, task)])

    def _reset(self, key: jax.Array, task: Any) -> EnvState:
        """reset(key, task) -> EnvState: a fresh episode of the task."""
        k_now, k_next = jax.random.split(key)
        with self.physics(task):
            bs = self.base_reset(k_now, task)
        obs = self.observe(bs, task)
        zero = jnp.zeros(())
        return EnvState(
            brax_state=bs, obs=obs, final_obs=obs, reward=zero, done=zero, truncated=zero,
            steps=zero, episode_return=zero, completed_return=zero, task=task, key=k_next,
        )

    def _advance(self, state: EnvState, action: jax.Array):
        """The part of a step shared by ``step`` and ``step_no_reset``: (brax state after the action,
        reward, steps, done, truncated, observation, episode return so far)."""
        with self.physics(state.task):
            bs = self.base.step(state.brax_state, action)
        reward = self.task_reward(state.brax_state, bs, state.task)
        steps = state.steps + 1
        terminal = bs.done
        truncated = jnp.where((steps >= self.episode_length) & (terminal == 0), 1.0, 0.0)
        done = jnp.maximum(terminal, truncated)
        return bs, reward, steps, done, truncated, self.observe(bs, state.task), state.episode_return + reward

    def _step(self, state: EnvState, action: jax.Array) -> EnvState:
        """One step; at episode end (terminal or time limit) the state resets to a fresh random
        initial state drawn with a split of ``state.key`` (computed every step, selected on done)."""
        k_next, k_reset = jax.random.split(state.key)
        bs, reward, steps, done, truncated, final_obs, ep_ret = self._advance(state, action)
        with self.physics(state.task):
            fresh = self.base_reset(k_reset, state.task)

        def pick(new, cur):
            return jnp.where(done > 0, new, cur)

        bs = jax.tree_util.tree_map(pick, fresh, bs.replace(done=jnp.zeros(())))
        return state.replace(
            brax_state=bs,
            obs=pick(self.observe(fresh, state.task), final_obs),
            final_obs=final_obs,
            reward=reward,
            done=done,
            truncated=truncated,
            steps=jnp.where(done > 0, 0.0, steps),
            episode_return=jnp.where(done > 0, 0.0, ep_ret),
            completed_return=jnp.where(done > 0, ep_ret, 0.0),
            key=k_next,
        )

    def _step_no_reset(self, state: EnvState, action: jax.Array) -> EnvState:
        """step_no_reset(state, action) -> EnvState: one step that never resets, so the returned
        ``brax_state`` keeps the step's metrics even where it ends the episode (``step`` replaces
        them with the next episode's); for evaluating a first episode. ``done`` and ``truncated``
        are as in ``step``; stepping on past an end is undefined (callers mask it out)."""
        bs, reward, steps, done, truncated, obs, ep_ret = self._advance(state, action)
        return state.replace(brax_state=bs, obs=obs, final_obs=obs, reward=reward, done=done,
                             truncated=truncated, steps=steps, episode_return=ep_ret,
                             completed_return=jnp.where(done > 0, ep_ret, 0.0))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r}, episode_length={self.episode_length})"
