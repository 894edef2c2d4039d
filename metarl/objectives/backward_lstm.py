"""MetaGenRL's learned objective L_alpha (Kirsch et al., 2020): a backward-in-time LSTM over a
sub-trajectory of T steps.

Inputs per step t (B sub-trajectories, T steps, A action dims):
  action branch, per dimension i: [a_t,i from the buffer, pi(s_t)_i] -> 3 mixed units -> mean over
  i -> 32-d. Its parameters do not depend on A, so one objective serves environments with any
  action dimension.
  other branch: [z(r_t), t/T, z(V(s_{t+1}) (1 - d_t)), z(V(s_t))] -> 2 mixed units -> Dense(8),
  (with ``progress_input``, not in the original: the agent's lifetime progress as a fifth input),
  z = z-normalisation over the valid steps of the batch, V = Q1(s, pi(s)) given with stop-gradient,
  d_t = 1 at every episode end, time limits included (as in the original).
  LSTM(32) run from t = T-1 down to 0; its state is reset where an episode ends (d_t = 1) so step t
  never sees steps of a later episode. Head 2 mixed units -> Dense(1), bounded by
  tanh(x * 1e-3) / 1e-3. L_alpha = masked mean over (B, T).
  A mixed unit (the original's, in every branch) is Dense(32) -> half relu, half x^2 -> layer norm:
  the activation comes before the layer norm, which keeps the square units' scale bounded.
Only pi(s) carries gradients to the policy: a, r, V and d are stop-gradient'd here.

``BackwardLSTMObjective`` is the module as a ``metarl.protocols.Objective``: L_alpha of a policy on a
replay batch, its inputs computed through the learner's pi and Q1 (``objective_inputs``).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl.objectives.on_policy import with_progress

BOUND = 1e-3


def mixed_activation(x):
    """The first half of the last axis relu, the rest x^2."""
    h = x.shape[-1] // 2
    return jnp.concatenate([nn.relu(x[..., :h]), jnp.square(x[..., h:])], axis=-1)


class MixedUnit(nn.Module):
    """Dense(f) -> mixed_activation -> layer norm (activation first, as in the original)."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.LayerNorm()(mixed_activation(nn.Dense(self.features)(x)))


class _ResetLSTMStep(nn.Module):
    """One LSTM step whose incoming carry is zeroed where ``reset`` is 1."""

    features: int

    @nn.compact
    def __call__(self, carry, inputs):
        x, reset, mask = inputs
        keep = (1.0 - reset)[..., None]
        carry = jax.tree_util.tree_map(lambda c: c * keep, carry)
        carry, y = nn.OptimizedLSTMCell(self.features)(carry, x)
        carry = jax.tree_util.tree_map(lambda c: c * mask[..., None], carry)
        return carry, y * mask[..., None]


# The LSTM of L_alpha alone, run from t = T-1 down to 0 with resets at episode ends. Time-major:
# ``BackwardLSTM(features)(carry, (x (T, B, F), done (T, B), mask (T, B)))`` -> (carry, h (T, B, features)).
BackwardLSTM = nn.scan(_ResetLSTMStep, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=0, out_axes=0, reverse=True)


def _znorm(x, mask):
    n = jnp.maximum(mask.sum(), 1.0)
    mean = (x * mask).sum() / n
    var = (jnp.square(x - mean) * mask).sum() / n
    return (x - mean) / jnp.sqrt(var + 1e-6) * mask


class MetaGenRLObjective(nn.Module):
    """L_alpha. ``per_step(...)`` returns (B, T); ``__call__`` the masked mean ()."""

    lstm_features: int = 32
    hidden: int = 32
    progress_input: bool = False  # the agent's lifetime progress as one more input of the other branch

    @nn.compact
    def per_step(self, action, pi_action, reward, value, next_value, done, mask, progress=None):
        """action, pi_action: (B, T, A); reward, value (V(s_t)), next_value (V(s_{t+1})), done,
        mask: (B, T); progress: the lifetime progress, () or (B, T), read with ``progress_input``.
        Returns the bounded per-step objective (B, T)."""
        sg = jax.lax.stop_gradient
        action, reward, value, next_value, done, mask = map(
            sg, (action, reward, value, next_value, done, mask))
        B, T, _ = action.shape
        # action branch: per dimension, shared weights, mean over dimensions
        xa = jnp.stack([action, pi_action], axis=-1)  # (B, T, A, 2)
        for _ in range(3):
            xa = MixedUnit(self.hidden)(xa)
        xa = xa.mean(axis=-2)  # (B, T, 32)
        pos = jnp.broadcast_to(jnp.arange(T, dtype=jnp.float32) / T, (B, T))
        xo = jnp.stack([_znorm(reward, mask), pos, _znorm(next_value * (1.0 - done), mask),
                        _znorm(value, mask)], axis=-1)
        if self.progress_input:
            if progress is None:
                raise ValueError("this MetaGenRLObjective reads the lifetime progress: pass progress=")
            xo = with_progress(xo, sg(progress))
        for _ in range(2):
            xo = MixedUnit(self.hidden)(xo)
        xo = nn.Dense(8)(xo)
        x = jnp.concatenate([xa, xo], axis=-1)  # (B, T, 40)
        tm = lambda v: jnp.swapaxes(v, 0, 1)  # time-major
        carry = (jnp.zeros((B, self.lstm_features)), jnp.zeros((B, self.lstm_features)))
        _, h = BackwardLSTM(self.lstm_features)(carry, (tm(x), tm(done), tm(mask)))
        h = tm(h)  # (B, T, 32)
        for _ in range(2):
            h = MixedUnit(self.hidden)(h)
        out = nn.Dense(1)(h)[..., 0]
        return jnp.tanh(out * BOUND) / BOUND

    @nn.compact
    def __call__(self, action, pi_action, reward, value, next_value, done, mask, progress=None):
        per = self.per_step(action, pi_action, reward, value, next_value, done, mask, progress)
        mask = jax.lax.stop_gradient(mask)
        return (per * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def init_objective(key: jax.Array, module: MetaGenRLObjective | None = None, act_dim: int = 2):
    """Initial parameters alpha (independent of the action dimension)."""
    module = module or MetaGenRLObjective()
    B, T = 2, 3
    z = jnp.zeros((B, T))
    a = jnp.zeros((B, T, act_dim))
    progress = jnp.zeros(()) if module.progress_input else None
    return module.init(key, a, a, z, z, z, z, jnp.ones((B, T)), progress)


# ---- the objective as a policy loss (metarl.protocols.Objective) ----------------------------------

def successor_obs(batch: dict):
    """s_{t+1} of every step as (B, T + 1, obs_dim) observations [s_0, s_1, ..., s_T]: obs[t + 1]
    where step t + 1 is valid (same episode, written), else next_obs[t] (an episode end, time limits
    included, or the newest transition). Index t of the result is obs[t] wherever step t is valid."""
    obs, nxt, mask = batch["obs"], batch["next_obs"], batch["mask"]
    valid_next = mask[:, 1:, None] > 0
    succ = jnp.concatenate([jnp.where(valid_next, obs[:, 1:], nxt[:, :-1]), nxt[:, -1:]], axis=1)
    return jnp.concatenate([obs[:, :1], succ], axis=1)


def objective_inputs(learner, policy_params, critic_params, batch: dict):
    """Arguments of L_alpha for a batch (B, T, ...): (a, pi(s), r, V(s), V(s'), d, mask);
    V = Q1(s, pi(s)) without gradient, d = done (every episode end, time limits included: the
    objective masks V(s') there, as the original does). Only pi(s) depends on policy_params with a
    gradient. One pass of pi and Q1 over the T + 1 states [s_0 .. s_T] gives V(s_t) and V(s_{t+1})
    (the original's reuse), not two passes over T; values at masked steps are never read.
    ``learner``: a ``metarl.protocols.ActorCritic`` (pi, q1)."""
    ext = successor_obs(batch)                       # (B, T + 1, obs_dim)
    pi_ext = learner.pi(policy_params, ext)          # (B, T + 1, A)
    v_ext = jax.lax.stop_gradient(learner.q1(critic_params, ext, pi_ext))  # (B, T + 1)
    T = batch["mask"].shape[1]
    return (batch["action"], pi_ext[:, :T], batch["reward"], v_ext[:, :T], v_ext[:, 1:],
            batch["done"], batch["mask"])


@dataclasses.dataclass(frozen=True)
class BackwardLSTMObjective:
    """MetaGenRL's L_alpha as a ``metarl.protocols.Objective``: alpha = the params of ``module``."""

    module: MetaGenRLObjective = dataclasses.field(default_factory=MetaGenRLObjective)

    def init(self, key: jax.Array, obs_size: int | None = None, act_size: int | None = None):
        """alpha_0; its shapes depend on neither size (the action branch is shared over dimensions)."""
        return init_objective(key, self.module)

    def policy_loss(self, obj_params, policy_params, batch: dict, learner, critic_params=None):
        """L_alpha(phi; batch) (), the masked mean over (B, T); every episode end (done) resets the
        backward LSTM and masks V(s_{t+1}) in the value input."""
        a, pi_a, r, v, v_next, done, mask = objective_inputs(learner, policy_params, critic_params, batch)
        per = self.module.apply(obj_params, a, pi_a, r, v, v_next, done, mask,
                                method=MetaGenRLObjective.per_step)
        return (per * mask).sum() / jnp.maximum(mask.sum(), 1.0)
