"""PPO with evolved, lifetime-dependent coefficients (``--objective ppo_schedule``): a learned
objective of a few dozen parameters, for outer loops too short to search a network's thousands.

The inner loss is the agent's PPO term plus K extra terms, each weighted by a coefficient that is
a piecewise-linear function of the lifetime progress t/T (the update index over the number of
updates; temporally aware, as in temporally aware LPO, Jackson et al. 2024):

    L = L_PPO + sum_k c_k(t/T) T_k,    c_k(t) = sum_j theta[k, j] hat_j(t)

with hat functions at the knots 0, 1/(J-1), ..., 1 (so theta[k, j] is the coefficient at knot j)
and the terms, on the minibatch's B rows (r = pi(a|s) / pi_old(a|s), A the update's normalised GAE
advantages, (mu, log sigma) the policy's outputs):

    pg      -mean(r A)                   more (> 0) or less policy-gradient push than PPO's clip
    kl      mean KL(pi_old || pi)        a tighter (> 0) or looser trust region
    log_std mean log sigma               lower (> 0) or higher exploration noise
    mean_sq mean mu^2                    policy means pulled toward 0 (> 0): against running away
    pos_pg  -mean(r max(A, 0))           the push of better-than-average actions alone

The stabilising terms' coefficients (``nonnegative``: kl and mean_sq by default) are relu(c_k): they
can tighten the trust region and pull the means in, never reward leaving them. Unconstrained (rounds A-C
in RESULTS.md, ``nonnegative=()``), ES made mean_sq negative late in life on both tuning seeds: the
median agent got faster, and a few agents in 64 ran away.

theta_0 = 0: generation 0 is the agent's PPO term exactly (tests/unit/test_objective_registry.py),
so ES starts at PPO. Why so few parameters: the ES gradient from P members in d dimensions points
along the true gradient with cosine about sqrt(P / d) even for a noise-free fitness; with the cpu
preset's 32 members and 30 generations, a 1,345-parameter drift network (``drift_t``) cannot be
searched (RESULTS.md "epg_seeds", rounds A-C), 15 coefficients can. Not in EPG's paper (its loss is
a temporal-convolution network, ``pure``); a deviation chosen for the outer loop's budget.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from metarl.networks import gaussian_kl, gaussian_log_prob
from metarl.objectives.on_policy import PPOMixing

TERMS = ("pg", "kl", "log_std", "mean_sq", "pos_pg")


def hat_weights(progress, knots: int):
    """(knots,) piecewise-linear interpolation weights of progress in [0, 1] at evenly spaced knots."""
    centres = jnp.linspace(0.0, 1.0, knots)
    width = 1.0 / (knots - 1)
    return jnp.maximum(0.0, 1.0 - jnp.abs(jnp.clip(progress, 0.0, 1.0) - centres) / width)


def schedule_terms(mean, log_std, old_mean, old_log_std, action, old_log_prob, advantage):
    """(K,) the extra terms T_k on B rows: mean, log_std, old_mean, old_log_std, action (B, act);
    old_log_prob, advantage (B,)."""
    ratio = jnp.exp(gaussian_log_prob(mean, log_std, action) - old_log_prob)
    return jnp.stack([
        -jnp.mean(ratio * advantage),
        jnp.mean(gaussian_kl(old_mean, old_log_std, mean, log_std)),
        jnp.mean(log_std),
        jnp.mean(jnp.square(mean)),
        -jnp.mean(ratio * jax.nn.relu(advantage)),
    ])


@dataclasses.dataclass(frozen=True)
class PPOScheduleObjective(PPOMixing):
    """L_PPO + sum_k c_k(t/T) T_k (module docstring); params {"theta": (K, knots)}, zeros at init."""

    knots: int = 3
    nonnegative: tuple = ("kl", "mean_sq")  # terms whose coefficient is relu(c_k)
    ppo_always: ClassVar[bool] = True
    value_always: ClassVar[bool] = False

    def __post_init__(self):
        if self.knots < 2:
            raise ValueError(f"knots={self.knots}: expected >= 2 (a coefficient at the start and the end)")
        unknown = [t for t in self.nonnegative if t not in TERMS]
        if unknown:
            raise ValueError(f"nonnegative={self.nonnegative}: unknown term(s) {unknown}; expected some of {TERMS}")

    def init(self, key, obs_size: int, act_size: int):
        """theta_0 = 0 (PPO exactly); its shape does not depend on the body."""
        return {"theta": jnp.zeros((len(TERMS), self.knots), jnp.float32)}

    def coefficients(self, params, progress):
        """(K,) c_k at lifetime progress t/T (relu'd for the ``nonnegative`` terms)."""
        c = params["theta"] @ hat_weights(progress, self.knots)
        mask = jnp.array([t in self.nonnegative for t in TERMS])
        return jnp.where(mask, jax.nn.relu(c), c)

    def prepare(self, params, policy_params, batch, actor):
        """The batch and the update-start policy's (mean, log_std) on its newest M rows (for the KL)."""
        old_mean, old_log_std = actor.pi(policy_params, batch.s)
        return batch, jax.lax.stop_gradient(old_mean), jax.lax.stop_gradient(old_log_std)

    def minibatch_loss(self, params, policy_params, inputs, idx, actor):
        batch, old_mean, old_log_std = inputs
        mean, log_std = actor.pi(policy_params, batch.s[idx])
        terms = schedule_terms(mean, log_std, old_mean[idx], old_log_std[idx], batch.action[idx],
                               batch.log_prob[idx], batch.advantage[idx])
        return jnp.dot(self.coefficients(params, batch.progress), terms), (mean, log_std)
