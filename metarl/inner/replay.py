"""Replay buffer as a ring-buffer pytree on the device, sampling sub-trajectories of length T.

One buffer holds the transitions of one environment stream in order, so slots i, i+1, ... are
consecutive steps until the write pointer. A sub-trajectory starts at a uniformly drawn written slot
and runs T steps; ``mask`` is 1 up to and including the first episode end and 0 after it, and 0 on
slots that are unwritten or lie past the newest transition (the wrap to the oldest). Masked steps
carry zeros, so no data from across an episode end or an unwritten slot ever reaches a learner.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Replay:
    """Ring buffer of capacity N: obs/next_obs (N, obs_dim), action (N, act_dim), reward/done/
    terminal (N,) (done: episode ended at this step; terminal: ended without time limit, so no
    bootstrap), pos () next write slot, count () written slots (<= N)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    done: jax.Array
    terminal: jax.Array
    pos: jax.Array
    count: jax.Array

    @property
    def capacity(self) -> int:
        return self.reward.shape[0]


def init(capacity: int, obs_dim: int, act_dim: int) -> Replay:
    z = lambda *s: jnp.zeros(s, jnp.float32)
    return Replay(obs=z(capacity, obs_dim), action=z(capacity, act_dim), reward=z(capacity),
                  next_obs=z(capacity, obs_dim), done=z(capacity), terminal=z(capacity),
                  pos=jnp.zeros((), jnp.int32), count=jnp.zeros((), jnp.int32))


def add(buf: Replay, obs, action, reward, next_obs, done, terminal) -> Replay:
    """Writes one transition (s_t, a_t, r_t, s_{t+1}, d_t, terminal_t) at ``pos``; s_{t+1} is the
    state the step reached before any auto-reset (``EnvState.final_obs``)."""
    i = buf.pos
    n = buf.capacity
    return buf.replace(
        obs=buf.obs.at[i].set(obs), action=buf.action.at[i].set(action),
        reward=buf.reward.at[i].set(reward), next_obs=buf.next_obs.at[i].set(next_obs),
        done=buf.done.at[i].set(done), terminal=buf.terminal.at[i].set(terminal),
        pos=(i + 1) % n, count=jnp.minimum(buf.count + 1, n))


def window_mask(buf: Replay, start: jax.Array, length: int):
    """Slot indices (length,) and validity mask (length,) of the window starting at ``start``."""
    n = buf.capacity
    idx = (start + jnp.arange(length)) % n
    # transitions from start to the newest one (slot pos - 1), inclusive
    avail = (buf.pos - 1 - start) % n + 1
    written = (jnp.arange(length) < avail) & (buf.count > 0)
    ended_before = jnp.cumsum(buf.done[idx]) - buf.done[idx]  # episode ends strictly before t
    mask = written & (ended_before == 0)
    return idx, mask.astype(jnp.float32)


def sample(buf: Replay, key: jax.Array, batch: int, length: int) -> dict:
    """B sub-trajectories of T steps: obs/next_obs (B, T, obs_dim), action (B, T, act_dim),
    reward/done/terminal/mask (B, T). Zeros where mask == 0."""
    starts = jax.random.randint(key, (batch,), 0, jnp.maximum(buf.count, 1))
    idx, mask = jax.vmap(lambda s: window_mask(buf, s, length))(starts)

    def take(x):
        v = x[idx]
        return v * mask.reshape(mask.shape + (1,) * (v.ndim - 2))

    out = {k: take(getattr(buf, k)) for k in ("obs", "action", "reward", "next_obs", "done", "terminal")}
    out["mask"] = mask
    return out
