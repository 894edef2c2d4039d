"""PPO's clipped surrogate objective and GAE (Schulman et al., 2017; 2016)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl.networks import gaussian_entropy, gaussian_log_prob


def gae(rewards, values, next_values, dones, truncated, gamma=0.99, lam=0.95):
    """Generalised advantage estimation over time-major arrays (T, ...).

    values[t] = V(s_t), next_values[t] = V(s_{t+1}) before any reset; dones[t] ends the episode
    after step t; where truncated[t] the episode was cut by the time limit, so we bootstrap.
    Returns (advantages, value targets), both (T, ...).
    """
    not_terminal = 1.0 - (dones - truncated)
    deltas = rewards + gamma * next_values * not_terminal - values
    cont = 1.0 - dones

    def back(carry, x):
        delta, c = x
        adv = delta + gamma * lam * c * carry
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(deltas[0]), (deltas, cont), reverse=True)
    return adv, adv + values


def ppo_policy_loss(mean, log_std, actions, old_log_probs, advantages, clip_eps=0.2,
                    entropy_coef=0.0, normalize_advantages=True):
    """Clipped surrogate L^CLIP (to minimise); inputs are batches (B, act_dim) / (B,)."""
    if normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    logp = gaussian_log_prob(mean, log_std, actions)
    ratio = jnp.exp(logp - old_log_probs)
    surr = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
    return -surr.mean() - entropy_coef * gaussian_entropy(log_std).mean()
