"""What the on-policy (EPG) agent hands a learned objective, and how the objective is mixed with PPO.

An on-policy objective is an object (``metarl.protocols.OnPolicyObjective``); the agent
(``metarl.inner.on_policy_agent``) knows none by name. Per update the agent builds one
``OnPolicyBatch`` (the buffer of the last N rows and the newest M rows), calls
``inputs = objective.prepare(obj_params, policy_params, batch, actor)`` once, and per minibatch
``objective.minibatch_loss(obj_params, policy_params, inputs, idx, actor) -> (L, outs)``; it then
mixes L with its own PPO term L_PPO as the objective's ``weights(f)`` say:

- ``ppo_always = False`` (EPG's pure form): (1 - f) L + f L_PPO, with f the PPO share the algorithm
  anneals; the PPO term is evaluated only while f > 0;
- ``ppo_always = True`` (a residual form): L_PPO + L at every update, whatever f is.

``value_always = True``: the value net is regressed on GAE targets at every update (the objective
reads V), not only with the PPO term. ``outs`` is the policy's (mean, log_std) on the minibatch's
rows where the objective computed them (the PPO term then reuses them), else None.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.training.acme import running_statistics
from flax import struct


@struct.dataclass
class LossInputs:
    """The policy-independent part of the buffer's rows, N rows oldest first; fixed during an update."""

    s: jax.Array  # (N, obs_dim) normalised observations (the policy's input)
    data: jax.Array  # (N, obs_dim + act_dim + 2) rows' data: normalised s and a, r, d
    valid: jax.Array  # (N,) 1 for real rows, 0 for front padding


def loss_inputs(obs, action, reward, done, valid, obs_stats, act_stats) -> LossInputs:
    """Normalises N raw buffer rows once (the statistics do not change within an update)."""
    s = running_statistics.normalize(obs, obs_stats)
    data = jnp.concatenate([s, running_statistics.normalize(action, act_stats),
                            reward[:, None], done[:, None]], axis=-1)
    return LossInputs(s=s, data=data, valid=valid)


@struct.dataclass
class OnPolicyBatch:
    """One update's data as an on-policy objective reads it: N buffer rows, the newest M scored."""

    buffer: LossInputs  # the whole buffer (N rows), normalised
    s: jax.Array  # (M, obs_dim) the newest M rows' normalised observations (= buffer.s[N - M:])
    action: jax.Array  # (M, act_dim) taken actions, raw
    reward: jax.Array  # (M,)
    done: jax.Array  # (M,) 1 at every episode end (time limits included)
    value: jax.Array  # (M,) V(s_t) by the value net at the update's start
    next_value: jax.Array  # (M,) V(s_{t+1}), s_{t+1} before any auto-reset
    act_stats: running_statistics.RunningStatisticsState  # the agent's action normaliser
    log_prob: jax.Array  # (M,) log pi_old(a_t | s_t) of the acting policy
    advantage: jax.Array  # (M,) GAE advantages normalised over the M rows (zeros while PPO is off)
    progress: jax.Array  # () the lifetime's progress: updates done / updates in the lifetime, in [0, 1)


def with_progress(x, progress):
    """x (..., F) with the lifetime progress (a scalar, or any shape that broadcasts to x's leading
    axes) appended as one more feature: (..., F + 1). The one way every objective with a
    ``progress_input`` reads ``OnPolicyBatch.progress``."""
    p = jnp.broadcast_to(jnp.asarray(progress, x.dtype), x.shape[:-1])
    return jnp.concatenate([x, p[..., None]], axis=-1)


def mean_outside_box(mean, bound: float):
    """mean_{rows, dims} relu(|mu| - bound)^2: how far the policy means lie outside the action box
    [-bound, bound] (0 inside it)."""
    return jnp.mean(jnp.square(jax.nn.relu(jnp.abs(mean) - bound)))


class PPOMixing:
    """How a learned loss L is mixed with the agent's PPO term (see the module docstring)."""

    ppo_always: bool = False
    value_always: bool = False

    def weights(self, ppo_factor):
        """(w_L, w_PPO) of the agent's total loss w_L L + w_PPO L_PPO at PPO share f."""
        return (1.0, 1.0) if self.ppo_always else (1.0 - ppo_factor, ppo_factor)
