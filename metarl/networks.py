"""Policy, value and critic networks (flax.linen), shared by every learner."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Dense stack; ``last_init_scale`` sets the std of the final layer's weights."""

    features: Sequence[int]
    activation: str = "tanh"
    layer_norm: bool = False
    last_init_scale: float | None = None

    @nn.compact
    def __call__(self, x):
        act = {"tanh": nn.tanh, "relu": nn.relu}[self.activation]
        for i, f in enumerate(self.features):
            last = i == len(self.features) - 1
            init = (nn.initializers.normal(self.last_init_scale)
                    if last and self.last_init_scale is not None
                    else nn.initializers.lecun_normal())
            x = nn.Dense(f, kernel_init=init)(x)
            if not last:
                if self.layer_norm:
                    x = nn.LayerNorm()(x)
                x = act(x)
        return x


class GaussianPolicy(nn.Module):
    """pi(a|s) = N(mu(s), exp(log_std)): 64-64 tanh MLP mean, state-independent log-std (init
    ``init_log_std``, 0 as in the paper).

    Returns (mean (..., act_dim), log_std (..., act_dim)).
    """

    action_size: int
    hidden: Sequence[int] = (64, 64)
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs):
        mean = MLP((*self.hidden, self.action_size), "tanh", last_init_scale=0.01)(obs)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_size,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class ValueNet(nn.Module):
    """V(s): 64-64 tanh MLP -> scalar, shape (...,)."""

    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, obs):
        return MLP((*self.hidden, 1), "tanh")(obs)[..., 0]


class DeterministicPolicy(nn.Module):
    """a = tanh(MLP(s)), relu, layer norm on hidden layers as MetaGenRL's actor (``layer_norm=False``:
    standard TD3's), shape (..., act_dim)."""

    action_size: int
    hidden: Sequence[int] = (350, 350)
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs):
        return nn.tanh(MLP((*self.hidden, self.action_size), "relu", layer_norm=self.layer_norm)(obs))


class TwinCritic(nn.Module):
    """(Q1(s, a), Q2(s, a)), each a relu MLP with layer norm as MetaGenRL's (``layer_norm=False``:
    standard TD3's); shapes (...,) each."""

    hidden: Sequence[int] = (350, 350)
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        q1 = MLP((*self.hidden, 1), "relu", layer_norm=self.layer_norm)(x)[..., 0]
        q2 = MLP((*self.hidden, 1), "relu", layer_norm=self.layer_norm)(x)[..., 0]
        return q1, q2


def gaussian_log_prob(mean, log_std, action):
    """log N(action; mean, exp(log_std)), summed over the last axis."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q):
    """KL(p || q) of diagonal Gaussians, summed over the last axis."""
    var_ratio = jnp.exp(2 * (log_std_p - log_std_q))
    z = (mean_p - mean_q) * jnp.exp(-log_std_q)
    return jnp.sum(log_std_q - log_std_p + 0.5 * (var_ratio + z ** 2 - 1.0), axis=-1)


def gaussian_entropy(log_std):
    return jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e), axis=-1)


def sample_gaussian(key, mean, log_std):
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
