"""MetaGenRL's objective L_alpha on EPG's on-policy learner: a new combination of the two methods.

``LSTMOnPolicyObjective`` (``--objective lstm``) trains EPG's agent (Gaussian policy, value net, Adam on
minibatches of the newest M rows, ``metarl.inner.on_policy_agent``) with MetaGenRL's backward-LSTM
objective (``metarl.objectives.backward_lstm.MetaGenRLObjective``, used unchanged) in place of EPG's
temporal-convolution loss, and ES (``metarl.algorithms.epg.algorithm``) evolves alpha on the lifetime return. The
inner loss is the pure form (1 - f) L_alpha + f L_PPO with EPG's f schedule. The objective's
action branch works per action dimension, so one alpha fits every body (EPG's conv loss does not:
its input rows have the body's obs and action sizes).

Inputs of L_alpha for one update (fixed during the update, built by ``lstm_inputs``): the newest M
rows of the lifetime, oldest first, as **one sequence** (B = 1, T = M):

- a_t: the taken action, normalised by the agent's running action statistics (as EPG's loss
  normalises a);
- pi(s_t): the policy's mean mu(s_t), normalised by the *same* statistics, so that the per-dimension
  branch compares a_t,i and pi(s_t)_i in the same units; the only input that depends on the
  policy parameters (the gradient path, as MetaGenRL's pi(s));
- r_t, d_t (every episode end, time limits included, as in MetaGenRL), mask_t = 1;
- with ``MetaGenRLObjective(progress_input=True)`` (``--progress-input``; not in MetaGenRL): the
  agent's lifetime progress (``OnPolicyBatch.progress``) on every step, one more input of the
  objective's non-action branch;
- V(s_t), V(s_{t+1}) (s_{t+1} before any auto-reset): the agent's value net at the update's start,
  stop-gradient. The value net is trained in this mode too, by the PPO term's regression on GAE
  targets at every update whatever f is (``metarl.inner.on_policy_agent``).

Per minibatch step (``make_lstm_policy_loss``), the policy runs on all T rows, the backward LSTM
runs over the whole sequence (step t sees the later steps of its own episode, up to the
sequence's end), and L_alpha is the masked mean of the per-step output over the minibatch's B
rows only.

How this differs from MetaGenRL's own (off-policy) use (``metarl.outer.metagrad``):
- data: the current policy's own fresh rollout, not sub-trajectories replayed from a buffer that
  older policies filled;
- V: a state-value net V(s) of the behaviour policy, regressed on GAE(lambda) targets, instead of
  the TD3 critic's Q1(s, pi(s));
- sequence: one M-step sequence that can hold several episode pieces (the LSTM is reset at each
  d_t = 1, the z-normalisation of r and V runs over the whole sequence, and the t/T input is the
  position within the update's rollout, not within a sub-trajectory of one episode);
- policy: Gaussian; L_alpha reaches its mean only, so the log-std gets gradients from the PPO term
  alone (with f = 0 the exploration noise stays where it is, like TD3's fixed exploration noise);
  actions are normalised (MetaGenRL feeds tanh-bounded actions as they are);
- the mean runs over the B scored rows of a minibatch, not over every step of the batch;
- outer loop: ES on lifetime returns (zeroth order, no critic, no lookahead), not MetaGenRL's
  second-order gradient through the critic.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from brax.training.acme import running_statistics
from flax import struct

from metarl.objectives.backward_lstm import MetaGenRLObjective, init_objective
from metarl.objectives.on_policy import PPOMixing


@struct.dataclass
class LSTMInputs:
    """The policy-independent arguments of L_alpha for one update: T rows, oldest first."""

    s: jax.Array  # (T, obs_dim) normalised observations (the policy's input)
    action: jax.Array  # (T, act_dim) taken actions, normalised by act_stats
    reward: jax.Array  # (T,)
    value: jax.Array  # (T,) V(s_t)
    next_value: jax.Array  # (T,) V(s_{t+1}) before any auto-reset
    done: jax.Array  # (T,) 1 at every episode end (time limits included)
    mask: jax.Array  # (T,) 1 for real rows
    act_stats: running_statistics.RunningStatisticsState  # the action normaliser (also for pi(s))
    progress: jax.Array | None = None  # () the lifetime progress, where the module reads it


def lstm_inputs(s, action, reward, value, next_value, done, act_stats, progress=None) -> LSTMInputs:
    """Builds one update's ``LSTMInputs``: s (T, obs_dim) normalised, action (T, act_dim) raw,
    reward, value, next_value, done (T,); value and next_value are stop-gradient'd here; progress
    () the lifetime progress or None."""
    sg = jax.lax.stop_gradient
    return LSTMInputs(s=s, action=running_statistics.normalize(action, act_stats), reward=reward,
                      value=sg(value), next_value=sg(next_value), done=done,
                      mask=jnp.ones_like(reward), act_stats=act_stats, progress=progress)


def make_lstm_policy_loss(pi, module: MetaGenRLObjective):
    """Returns ``loss(policy_params, alpha, inp, idx) -> (L_alpha, (mean, log_std))``.

    ``pi(policy_params, s) -> (mean, log_std)``. inp: ``LSTMInputs`` over T rows; idx: (B,) indices of the scored rows. The policy runs on all T
    rows, ``module.per_step`` over the sequence (batch of 1), and L_alpha () is the masked mean of
    the per-step output (T,) at idx. (mean, log_std) (T, act_dim) are the policy's outputs on all T
    rows (reused by the PPO term). The policy parameters enter through pi(s) = mean only.
    """

    def loss(policy_params, alpha, inp: LSTMInputs, idx):
        mean, log_std = pi(policy_params, inp.s)
        pi_a = running_statistics.normalize(mean, inp.act_stats)
        one = lambda x: x[None]  # (T, ...) -> (1, T, ...)
        progress = None if inp.progress is None else jnp.broadcast_to(inp.progress, (1,) + inp.reward.shape)
        per = module.apply(alpha, one(inp.action), one(pi_a), one(inp.reward), one(inp.value),
                           one(inp.next_value), one(inp.done), one(inp.mask), progress,
                           method=MetaGenRLObjective.per_step)[0]  # (T,)
        m = jax.lax.stop_gradient(inp.mask[idx])
        return (per[idx] * m).sum() / jnp.maximum(m.sum(), 1.0), (mean, log_std)

    return loss


@dataclasses.dataclass(frozen=True)
class LSTMOnPolicyObjective(PPOMixing):
    """MetaGenRL's L_alpha as an on-policy objective: (1 - f) L_alpha + f L_PPO, the value net
    regressed at every update (L_alpha reads V). One alpha fits every body."""

    module: MetaGenRLObjective = dataclasses.field(default_factory=MetaGenRLObjective)
    ppo_always: ClassVar[bool] = False
    value_always: ClassVar[bool] = True

    def init(self, key, obs_size: int, act_size: int):
        """alpha_0 (its shapes do not depend on the body's sizes)."""
        return init_objective(key, self.module, act_size)

    def prepare(self, alpha, policy_params, batch, actor) -> LSTMInputs:
        return lstm_inputs(batch.s, batch.action, batch.reward, batch.value, batch.next_value, batch.done,
                           batch.act_stats, batch.progress if self.module.progress_input else None)

    def minibatch_loss(self, alpha, policy_params, inp: LSTMInputs, idx, actor):
        """(L_alpha of the rows at idx (B,), the policy's (mean, log_std) on them)."""
        loss, (mean, log_std) = make_lstm_policy_loss(actor.pi, self.module)(policy_params, alpha, inp, idx)
        return loss, (mean[idx], log_std[idx])
