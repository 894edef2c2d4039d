"""LPO's learned drift (Lu et al. 2022, "Discovered Policy Optimisation") as an on-policy objective.

PPO's clipped objective is the mirror-learning form E[r A] - E[D(r, A)] with the drift
D_PPO = relu((r - clip(r, 1 - eps, 1 + eps)) A), r = pi(a|s) / pi_old(a|s). LPO keeps r A and learns
the drift. Here the learned part is added to the agent's own PPO term: the inner loss is
L_PPO + mean_B d_theta(x), with d_theta a small tanh MLP over the features

    x = [r - 1, log r, clip(r) - 1, A, (r - 1) A, (log r) A]   each clipped to [-feature_clip, feature_clip]

(and, with ``progress_input``, the agent's lifetime progress t / T as one more input, as in
temporally aware LPO, Jackson et al. 2024), whose output layer starts at zero: at theta_0 the loss is
the agent's PPO term exactly, so ES starts from PPO and searches for a correction to it. Unlike LPO,
d_theta is not constrained to be >= 0 or 0 at r = 1 (a deviation: ES may find any correction), and
the agent's PPO term keeps its KL penalty and value loss.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from metarl.networks import gaussian_log_prob
from metarl.objectives.on_policy import PPOMixing, with_progress


class DriftNet(nn.Module):
    """d_theta(x): (..., features) -> (...,); the output layer starts at zero."""

    hidden: int = 32

    @nn.compact
    def __call__(self, x):
        h = nn.tanh(nn.Dense(self.hidden)(x))
        h = nn.tanh(nn.Dense(self.hidden)(h))
        return nn.Dense(1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(h)[..., 0]


def drift_features(ratio, advantage, clip_eps: float, feature_clip: float):
    """(B,) ratios and advantages -> (B, 6) clipped features."""
    log_r = jnp.log(ratio)
    x = jnp.stack([ratio - 1.0, log_r, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) - 1.0, advantage,
                   (ratio - 1.0) * advantage, log_r * advantage], axis=-1)
    return jnp.clip(x, -feature_clip, feature_clip)


@dataclasses.dataclass(frozen=True)
class DriftObjective(PPOMixing):
    """L_PPO + mean_B d_theta(x(r, A)[, t/T]) (``--objective drift``); theta_0 gives PPO exactly."""

    net: DriftNet = dataclasses.field(default_factory=DriftNet)
    clip_eps: float = 0.2
    feature_clip: float = 5.0
    progress_input: bool = False  # drift_t, or drift with --progress-input
    ppo_always: ClassVar[bool] = True
    value_always: ClassVar[bool] = False

    @property
    def num_features(self) -> int:
        return 6 + int(self.progress_input)

    def init(self, key, obs_size: int, act_size: int):
        """theta_0 (its shapes do not depend on the body)."""
        return self.net.init(key, jnp.zeros((1, self.num_features)))

    def prepare(self, theta, policy_params, batch, actor):
        return batch

    def minibatch_loss(self, theta, policy_params, batch, idx, actor):
        """(mean_B d_theta, the policy's (mean, log_std) on the rows at idx, reused by PPO)."""
        mean, log_std = actor.pi(policy_params, batch.s[idx])
        ratio = jnp.exp(gaussian_log_prob(mean, log_std, batch.action[idx]) - batch.log_prob[idx])
        x = drift_features(ratio, batch.advantage[idx], self.clip_eps, self.feature_clip)
        if self.progress_input:
            x = with_progress(x, batch.progress)
        return self.net.apply(theta, x).mean(), (mean, log_std)
