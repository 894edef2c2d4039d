"""TD3 agent (Fujimoto et al., 2018) as pure functions, with a pluggable policy loss (MetaGenRL).

One agent's state is a ``TD3State`` pytree (params, targets, optimiser states, replay ring buffer,
environment state, step count, key); every method is pure, so populations are ``jax.vmap`` of it.
Critics: twin Q with target networks (Polyak), target smoothing noise; policy: deterministic tanh,
updated every ``policy_delay`` env steps with ``policy_loss(policy_params, state, batch, step)``
(default: DDPG's -Q1(s, pi(s))), its gradient clipped to global norm ``max_grad_norm``; the critics'
gradient is not clipped. Exploration: Gaussian noise, uniform random actions for the first
``random_steps`` steps. Batches are B sub-trajectories of T steps with a validity mask (replay.py).
``TD3Agent`` is a ``metarl.protocols.Learner``: MetaGenRL's outer loop meta-trains through it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl.checks import require_positive
from metarl.envs.core import TaskFamily
from metarl.inner import replay as rb
from metarl.networks import DeterministicPolicy, TwinCritic


@dataclasses.dataclass(frozen=True)
class TD3Config:
    hidden: Sequence[int] = (350, 350)
    gamma: float = 0.99
    polyak: float = 0.995          # target <- polyak * target + (1 - polyak) * online
    policy_lr: float = 1e-3
    critic_lr: float = 1e-3
    max_grad_norm: float = 1.0     # global-norm clip of the policy's gradient (the critic's is not clipped)
    target_noise: float = 0.2
    noise_clip: float = 0.5
    expl_noise: float = 0.1
    policy_delay: int = 2          # env steps (and critic updates) per policy update
    random_steps: int = 10_000
    replay_size: int = 1_000_000
    batch_size: int = 100          # sub-trajectories per batch
    seq_len: int = 20              # T
    reward_scale: float = 1.0

    def validate(self) -> "TD3Config":
        require_positive(self, ("policy_delay", "replay_size", "batch_size", "seq_len"), prefix="TD3 ")
        if not 0.0 <= self.polyak <= 1.0:
            raise ValueError(f"TD3 polyak must lie in [0, 1], got {self.polyak}")
        return self


@struct.dataclass
class TD3State:
    policy: dict
    critic: dict
    target_policy: dict
    target_critic: dict
    policy_opt: optax.OptState
    critic_opt: optax.OptState
    replay: rb.Replay
    env_state: object
    step: jax.Array        # env steps taken
    key: jax.Array
    ret_sum: jax.Array     # sum of returns of episodes completed since the last reset_stats
    ret_count: jax.Array   # number of those episodes


class TD3Agent:
    """Pure TD3 functions for one environment family; no mutable state of its own."""

    def __init__(self, env: TaskFamily, config: TD3Config):
        self.env = env
        self.cfg = config.validate()
        self.act_dim = env.action_size
        self.obs_dim = env.observation_size
        self.policy_net = DeterministicPolicy(self.act_dim, tuple(self.cfg.hidden))
        self.critic_net = TwinCritic(tuple(self.cfg.hidden))
        # only the policy's gradient is clipped, as in standard TD3 and in MetaGenRL's original
        self.policy_tx = optax.chain(optax.clip_by_global_norm(self.cfg.max_grad_norm),
                                     optax.adam(self.cfg.policy_lr))
        self.critic_tx = optax.adam(self.cfg.critic_lr)

    # ---- construction ----------------------------------------------------------------------
    def init(self, key: jax.Array, task) -> TD3State:
        k_pi, k_q, k_env, k_run = jax.random.split(key, 4)
        obs = jnp.zeros((self.obs_dim,))
        pol = self.policy_net.init(k_pi, obs)
        cri = self.critic_net.init(k_q, obs, jnp.zeros((self.act_dim,)))
        capacity = self.cfg.replay_size
        copy = lambda t: jax.tree_util.tree_map(jnp.copy, t)  # own buffers (safe to donate)
        return TD3State(policy=pol, critic=cri, target_policy=copy(pol), target_critic=copy(cri),
                        policy_opt=self.policy_tx.init(pol), critic_opt=self.critic_tx.init(cri),
                        replay=rb.init(capacity, self.obs_dim, self.act_dim),
                        env_state=self.env.reset(k_env, task), step=jnp.zeros((), jnp.int32),
                        key=k_run, ret_sum=jnp.zeros(()), ret_count=jnp.zeros(()))

    # ---- acting ------------------------------------------------------------------------------
    def pi(self, policy_params, obs):
        """pi_phi(s): (..., obs_dim) -> (..., act_dim) in [-1, 1]."""
        return self.policy_net.apply(policy_params, obs)

    def q(self, critic_params, obs, action):
        """(Q1, Q2): (...,) each."""
        return self.critic_net.apply(critic_params, obs, action)

    def env_step(self, s: TD3State) -> TD3State:
        """One exploration step: random actions before ``random_steps``, else pi(s) + N(0, sigma)."""
        key, k_noise, k_rand = jax.random.split(s.key, 3)
        obs = s.env_state.obs
        a_pi = self.pi(s.policy, obs) + self.cfg.expl_noise * jax.random.normal(k_noise, (self.act_dim,))
        a_rand = jax.random.uniform(k_rand, (self.act_dim,), minval=-1.0, maxval=1.0)
        action = jnp.clip(jnp.where(s.step < self.cfg.random_steps, a_rand, a_pi), -1.0, 1.0)
        nxt = self.env.step(s.env_state, action)
        # keep dtypes (and non-weak types) fixed, so the state pytree is stable across jit calls
        nxt = jax.tree_util.tree_map(lambda x, ref: jnp.asarray(x, dtype=jnp.result_type(ref)), nxt, s.env_state)
        # s_{t+1} is nxt.final_obs: at an episode end nxt.obs is already the next episode's first
        # observation; a time-limit end bootstraps Q(s_{t+1}, .) from the true last state.
        terminal = nxt.done * (1.0 - nxt.truncated)
        buf = rb.add(s.replay, obs, action, nxt.reward * self.cfg.reward_scale, nxt.final_obs,
                     nxt.done, terminal)
        return s.replace(replay=buf, env_state=nxt, step=s.step + 1, key=key,
                         ret_sum=s.ret_sum + nxt.done * nxt.completed_return,
                         ret_count=s.ret_count + nxt.done)

    def sample(self, s: TD3State, key: jax.Array, batch_size: int | None = None) -> dict:
        return rb.sample(s.replay, key, batch_size or self.cfg.batch_size, self.cfg.seq_len)

    # ---- metarl.protocols.Learner (thin views of the above) ------------------------------------
    @property
    def obs_size(self) -> int:
        return self.obs_dim

    @property
    def act_size(self) -> int:
        return self.act_dim

    @property
    def steps_per_block(self) -> int:
        """Env steps (and critic updates) per policy update: ``policy_delay``."""
        return self.cfg.policy_delay

    def sample_task(self, key: jax.Array, split: str):
        return self.env.sample_task(key, split)

    def q1(self, critic_params, obs, action):
        """Q1(s, a): (...,)."""
        return self.q(critic_params, obs, action)[0]

    def draw_batch(self, s: TD3State, n: int) -> tuple[TD3State, dict]:
        """(state with its key advanced, n sub-trajectories (n, T, ...) from the replay)."""
        key, k = jax.random.split(s.key)
        return s.replace(key=key), self.sample(s, k, n)

    @staticmethod
    def policy_params(s: TD3State):
        return s.policy

    @staticmethod
    def critic_params(s: TD3State):
        return s.critic

    @staticmethod
    def env_steps(s: TD3State) -> jax.Array:
        return s.step

    def mean_completed_return(self, s: TD3State):
        return mean_completed_return(s)

    # ---- learning ----------------------------------------------------------------------------
    def critic_loss(self, critic_params, s: TD3State, batch: dict, key: jax.Array):
        """Masked TD error of both critics against the smoothed clipped double-Q target."""
        c = self.cfg
        noise = jnp.clip(c.target_noise * jax.random.normal(key, batch["action"].shape),
                         -c.noise_clip, c.noise_clip)
        a_next = jnp.clip(self.pi(s.target_policy, batch["next_obs"]) + noise, -1.0, 1.0)
        tq1, tq2 = self.q(s.target_critic, batch["next_obs"], a_next)
        target = batch["reward"] + c.gamma * (1.0 - batch["terminal"]) * jnp.minimum(tq1, tq2)
        target = jax.lax.stop_gradient(target)
        q1, q2 = self.q(critic_params, batch["obs"], batch["action"])
        m = batch["mask"]
        return (((q1 - target) ** 2 + (q2 - target) ** 2) * m).sum() / jnp.maximum(m.sum(), 1.0)

    def critic_update(self, s: TD3State) -> tuple[TD3State, jax.Array]:
        key, k_b, k_n = jax.random.split(s.key, 3)
        batch = self.sample(s, k_b)
        loss, g = jax.value_and_grad(self.critic_loss)(s.critic, s, batch, k_n)
        upd, opt = self.critic_tx.update(g, s.critic_opt, s.critic)
        return s.replace(critic=optax.apply_updates(s.critic, upd), critic_opt=opt, key=key), loss

    def ddpg_loss(self, policy_params, critic_params, batch: dict):
        """-Q1(s, pi(s)) averaged over the valid steps."""
        q1, _ = self.q(critic_params, batch["obs"], self.pi(policy_params, batch["obs"]))
        m = batch["mask"]
        return -(q1 * m).sum() / jnp.maximum(m.sum(), 1.0)

    # MetaGenRL's meta-loss J(phi) and its warm-start policy loss are DDPG's
    meta_loss = ddpg_loss

    def policy_update(self, s: TD3State, loss_fn: Callable | None = None, batch: dict | None = None):
        """One policy step on ``loss_fn(policy_params, critic_params, batch)`` (default DDPG), then
        Polyak averaging of both targets. Returns (state, loss)."""
        loss_fn = loss_fn or self.ddpg_loss
        key, k_b = jax.random.split(s.key)
        batch = self.sample(s, k_b) if batch is None else batch
        loss, g = jax.value_and_grad(loss_fn)(s.policy, s.critic, batch)
        return self.apply_policy_grad(s.replace(key=key), g), loss

    def apply_policy_grad(self, s: TD3State, g) -> TD3State:
        """The policy's optimiser step on gradient ``g`` (clipped), then Polyak averaging of both targets."""
        upd, opt = self.policy_tx.update(g, s.policy_opt, s.policy)
        pol = optax.apply_updates(s.policy, upd)
        tau = self.cfg.polyak
        avg = lambda t, o: tau * t + (1.0 - tau) * o
        return s.replace(policy=pol, policy_opt=opt,
                         target_policy=jax.tree_util.tree_map(avg, s.target_policy, pol),
                         target_critic=jax.tree_util.tree_map(avg, s.target_critic, s.critic))

    def interact_and_fit_critic(self, s: TD3State) -> TD3State:
        """``policy_delay`` times: one env step, one critic update."""
        def body(s, _):
            s, _ = self.critic_update(self.env_step(s))
            return s, None
        return jax.lax.scan(body, s, None, length=self.cfg.policy_delay)[0]

    def block(self, s: TD3State, loss_fn: Callable | None = None) -> TD3State:
        """policy_delay env steps + critic updates, then one (delayed) policy update."""
        return self.policy_update(self.interact_and_fit_critic(s), loss_fn)[0]

    @staticmethod
    def reset_stats(s: TD3State) -> TD3State:
        return s.replace(ret_sum=jnp.zeros(()), ret_count=jnp.zeros(()))


def mean_completed_return(s: TD3State):
    """Mean return of the episodes completed since the last reset_stats (NaN if none)."""
    return jnp.where(s.ret_count > 0, s.ret_sum / jnp.maximum(s.ret_count, 1.0), jnp.nan)
