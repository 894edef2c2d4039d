"""Off-policy REINFORCE with GAE, as the MetaGenRL paper's baseline, in the frozen-objective
(TD3) harness ``metarl.inner.frozen_objective``.

Simplification (documented): the policy is the deterministic tanh actor with its Gaussian exploration
noise taken as the behaviour distribution, pi(a|s) = N(pi_phi(s), sigma^2), and there is no
importance weighting. Advantages come from GAE over the replayed sub-trajectory (B, T) with
V(s) = Q1(s, pi(s)) of the TD3 critic; GAE stops at episode ends (mask) and at terminals.
loss = -mean_t [ A_t * log N(a_t; pi_phi(s_t), sigma^2) ].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl.inner.td3 import TD3Agent


def gae_subtrajectory(reward, value, next_value, terminal, mask, gamma: float, lam: float):
    """GAE advantages (B, T) over sub-trajectories; nothing flows from masked steps or terminals."""
    delta = reward + gamma * (1.0 - terminal) * next_value - value

    def back(adv_next, x):
        d, term, m, m_next = x
        adv = d + gamma * lam * (1.0 - term) * m_next * adv_next
        return adv * m, adv * m

    tm = lambda v: jnp.swapaxes(v, 0, 1)
    m_next = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
    _, adv = jax.lax.scan(back, jnp.zeros(reward.shape[0]),
                          (tm(delta), tm(terminal), tm(mask), tm(m_next)), reverse=True)
    return tm(adv)


def reinforce_loss(sigma: float = 0.1, gamma: float = 0.99, lam: float = 0.95):
    """policy_loss factory for ``metarl.inner.frozen_objective.make_train``."""

    def factory(agent: TD3Agent):
        def loss(_params, policy_params, critic_params, batch):
            sg = jax.lax.stop_gradient
            pi_a = agent.pi(policy_params, batch["obs"])
            v = sg(agent.q(critic_params, batch["obs"], pi_a)[0])
            v_next = sg(agent.q(critic_params, batch["next_obs"],
                                agent.pi(policy_params, batch["next_obs"]))[0])
            m = batch["mask"]
            adv = gae_subtrajectory(batch["reward"], v, v_next, batch["terminal"], m, gamma, lam)
            n = jnp.maximum(m.sum(), 1.0)
            mu = (adv * m).sum() / n
            std = jnp.sqrt((jnp.square(adv - mu) * m).sum() / n + 1e-8)
            adv = sg((adv - mu) / std)
            logp = -0.5 * jnp.sum(jnp.square((batch["action"] - pi_a) / sigma), axis=-1)
            return -(adv * logp * m).sum() / n

        return loss

    return factory
