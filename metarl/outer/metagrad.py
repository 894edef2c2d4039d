"""MetaGenRL's second-order meta-gradient outer loop (Kirsch et al., 2020).

A population of TD3 agents (``metarl.inner.td3``) is spread over env groups (one group per
meta-training environment; agents in a group are ``jax.vmap``-ed, groups with different obs/action
sizes are separate vmaps inside the same jitted step). All agents share one objective L_alpha
(``metarl.objectives.metagenrl``). One block of a meta-iteration, per agent:
  1. ``policy_delay`` env steps, one critic update after each;
  2. meta-gradient: 2B sub-trajectories, phi' = phi - eta * grad_phi L_alpha(phi; first half) with
     L_alpha the masked *mean* over the half's steps and eta = ``lookahead_step``, meta-loss
     J(alpha) = -mean Q1(s, pi_phi'(s)) over all 2B; grad_alpha J through the critic and the SGD
     step, clipped to global norm ``meta_clip``. The original differentiates the *sum* over its
     100 x 20 steps with lr 1e-3, i.e. eta = 2.0 on the mean; eta here does not change with B or T;
  3. policy update on (w * DDPG + (1 - w) * L_alpha), w falling 1 -> 0 over ``warm_start_steps``,
     on the meta-gradient's first half: its grad_phi L_alpha is the lookahead's own (computed once).
Then alpha takes one Adam step on the meta-gradients averaged over all agents. A meta-iteration is
``jax.lax.scan`` over K / policy_delay blocks, compiled whole.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl.distributed import check_population, shard_population
from metarl.envs.core import TaskFamily
from metarl.inner.td3 import TD3Agent, TD3Config, TD3State, mean_completed_return
from metarl.objectives.metagenrl import MetaGenRLObjective, init_objective


@dataclasses.dataclass(frozen=True)
class MetaGenRLConfig:
    td3: TD3Config = TD3Config()
    agents_per_env: int = 10
    meta_iterations: int = 700
    steps_per_iteration: int = 1000  # K env steps per agent per meta-iteration
    meta_lr: float = 1e-3
    meta_clip: float = 1.0
    # eta of the lookahead step phi' = phi - eta grad_phi L_alpha (L_alpha: the mean over valid steps);
    # the original's lr 1e-3 on the sum over 100 x 20 steps is eta = 2.0, whatever B and T are here
    lookahead_step: float = 2.0
    meta_batch: int = 200            # sub-trajectories for the meta-gradient (split in halves)
    warm_start_steps: int = 10_000
    lstm_features: int = 32
    objective_hidden: int = 32

    @property
    def blocks_per_iteration(self) -> int:
        return self.steps_per_iteration // self.td3.policy_delay

    def validate(self) -> "MetaGenRLConfig":
        self.td3.validate()
        for f in ("agents_per_env", "meta_iterations", "steps_per_iteration", "meta_batch"):
            if getattr(self, f) <= 0:
                raise ValueError(f"MetaGenRL {f} must be a positive integer, got {getattr(self, f)}")
        if self.steps_per_iteration % self.td3.policy_delay:
            raise ValueError(f"steps_per_iteration = {self.steps_per_iteration} must be a multiple of "
                             f"policy_delay = {self.td3.policy_delay}")
        if not 0.0 <= self.lookahead_step < float("inf"):
            raise ValueError(f"lookahead_step must be a finite number >= 0, got {self.lookahead_step}")
        if self.meta_batch < 2 or self.meta_batch % 2:
            raise ValueError(f"meta_batch must be an even number >= 2, got {self.meta_batch}")
        return self

    def objective(self) -> MetaGenRLObjective:
        return MetaGenRLObjective(self.lstm_features, self.objective_hidden)


# ---- the objective as a policy loss ---------------------------------------------------------------

def successor_obs(batch: dict):
    """s_{t+1} of every step as (B, T + 1, obs_dim) observations [s_0, s_1, ..., s_T]: obs[t + 1]
    where step t + 1 is valid (same episode, written), else next_obs[t] (an episode end, time limits
    included, or the newest transition). Index t of the result is obs[t] wherever step t is valid."""
    obs, nxt, mask = batch["obs"], batch["next_obs"], batch["mask"]
    valid_next = mask[:, 1:, None] > 0
    succ = jnp.concatenate([jnp.where(valid_next, obs[:, 1:], nxt[:, :-1]), nxt[:, -1:]], axis=1)
    return jnp.concatenate([obs[:, :1], succ], axis=1)


def objective_inputs(agent: TD3Agent, policy_params, critic_params, batch: dict):
    """Arguments of L_alpha for a batch (B, T, ...): (a, pi(s), r, V(s), V(s'), d, mask);
    V = Q1(s, pi(s)) without gradient, d = done (every episode end, time limits included: the
    objective masks V(s') there, as the original does). Only pi(s) depends on policy_params with a
    gradient. One pass of pi and Q1 over the T + 1 states [s_0 .. s_T] gives V(s_t) and V(s_{t+1})
    (the original's reuse), not two passes over T; values at masked steps are never read."""
    ext = successor_obs(batch)                     # (B, T + 1, obs_dim)
    pi_ext = agent.pi(policy_params, ext)          # (B, T + 1, A)
    v_ext = jax.lax.stop_gradient(agent.q(critic_params, ext, pi_ext)[0])  # (B, T + 1)
    T = batch["mask"].shape[1]
    return (batch["action"], pi_ext[:, :T], batch["reward"], v_ext[:, :T], v_ext[:, 1:],
            batch["done"], batch["mask"])


def learned_loss(module: MetaGenRLObjective, agent: TD3Agent):
    """loss(alpha, policy_params, critic_params, batch) = L_alpha, the masked mean over (B, T);
    every episode end (done) resets the backward LSTM and masks V(s_{t+1}) in the value input."""

    def loss(alpha, policy_params, critic_params, batch):
        a, pi_a, r, v, v_next, done, mask = objective_inputs(agent, policy_params, critic_params, batch)
        per = module.apply(alpha, a, pi_a, r, v, v_next, done, mask, method=MetaGenRLObjective.per_step)
        return (per * mask).sum() / jnp.maximum(mask.sum(), 1.0)

    return loss


def lookahead(module: MetaGenRLObjective, agent: TD3Agent, step: float):
    """phi'(alpha, phi, critic, batch) -> (phi - eta g, g), g = grad_phi L_alpha(phi; batch), eta = ``step``."""
    lossf = learned_loss(module, agent)

    def phi_prime(alpha, policy_params, critic_params, batch):
        g = jax.grad(lossf, argnums=1)(alpha, policy_params, critic_params, batch)
        return jax.tree_util.tree_map(lambda p, gi: p - step * gi, policy_params, g), g

    return phi_prime


def meta_objective(module: MetaGenRLObjective, agent: TD3Agent, lookahead_step: float,
                   with_policy_grad: bool = False):
    """J(alpha; phi, critic, batch of 2B) = -mean Q1(s, pi_phi'(s)), phi' = lookahead on the first B.
    ``with_policy_grad``: J returns (J, grad_phi L_alpha(phi; first B)) for ``has_aux``."""
    step = lookahead(module, agent, lookahead_step)

    def J(alpha, policy_params, critic_params, batch):
        half = batch["mask"].shape[0] // 2
        first = jax.tree_util.tree_map(lambda x: x[:half], batch)
        phi2, g = step(alpha, policy_params, critic_params, first)
        j = agent.ddpg_loss(phi2, critic_params, batch)
        return (j, jax.lax.stop_gradient(g)) if with_policy_grad else j

    return J


# ---- meta-training --------------------------------------------------------------------------------

@struct.dataclass
class MetaState:
    groups: tuple          # one batched TD3State per env group, leading axis = agents_per_env
    alpha: dict            # objective parameters
    meta_opt: optax.OptState
    key: jax.Array


class MetaTrainer:
    """``init(key) -> MetaState``; ``iteration(state) -> (state, metrics)`` (jit it).

    ``mesh``: an optional population mesh (metarl.distributed); each env group's agents are split
    over it (agents_per_env must divide the device count), alpha and its optimiser stay replicated,
    and the meta-gradient mean over agents becomes a cross-device reduction.
    """

    def __init__(self, envs: Sequence[TaskFamily], config: MetaGenRLConfig, split: str = "train",
                 mesh=None):
        self.cfg = config.validate()
        self.mesh = mesh
        if mesh is not None:
            check_population(self.cfg.agents_per_env, mesh, what="agents_per_env")
        self.envs = list(envs)
        self.split = split
        self.agents = [TD3Agent(e, self.cfg.td3) for e in self.envs]
        self.module = self.cfg.objective()
        self.meta_tx = optax.adam(self.cfg.meta_lr)
        self.clip = optax.clip_by_global_norm(self.cfg.meta_clip)

    def init(self, key: jax.Array) -> MetaState:
        k_alpha, k_run, *k_groups = jax.random.split(key, 2 + len(self.envs))
        alpha = init_objective(k_alpha, self.module)
        groups = []
        for env, agent, kg in zip(self.envs, self.agents, k_groups):
            keys = jax.random.split(kg, self.cfg.agents_per_env)
            tasks = jax.vmap(lambda k: env.sample_task(jax.random.fold_in(k, 1), self.split))(keys)
            groups.append(jax.vmap(agent.init)(keys, tasks))
        ms = MetaState(tuple(groups), alpha, self.meta_tx.init(alpha), k_run)
        # every leaf gets its own buffer, so the state can be donated to ``iteration``
        return jax.tree_util.tree_map(jnp.copy, ms)

    def warm_weight(self, step):
        """w of the DDPG term in the policy loss w DDPG + (1 - w) L_alpha: 1 -> 0 over warm_start_steps."""
        if not self.cfg.warm_start_steps:
            return jnp.zeros(())
        return jnp.clip(1.0 - step / self.cfg.warm_start_steps, 0.0, 1.0)

    def agent_block(self, agent: TD3Agent, s: TD3State, alpha, w=None):
        """One block for one agent; returns (state, clipped meta-gradient, meta-loss).

        The policy step reuses the lookahead's gradient grad_phi L_alpha(phi; first half of the meta
        batch): the same quantity as on a fresh batch of B, computed once instead of twice. ``w``:
        the warm-start weight (default: from s.step); given as one scalar for a group in lockstep,
        the DDPG term leaves the program (a real ``lax.cond``) once w reaches 0."""
        cfg = self.cfg
        s = agent.interact_and_fit_critic(s)
        key, k_meta = jax.random.split(s.key)
        s = s.replace(key=key)
        mbatch = agent.sample(s, k_meta, cfg.meta_batch)
        J = meta_objective(self.module, agent, cfg.lookahead_step, with_policy_grad=True)
        (jval, g_obj), g = jax.value_and_grad(J, has_aux=True)(alpha, s.policy, s.critic, mbatch)
        g, _ = self.clip.update(g, self.clip.init(g))
        w = self.warm_weight(s.step) if w is None else w
        first = jax.tree_util.tree_map(lambda x: x[:cfg.meta_batch // 2], mbatch)

        def blend():
            g_ddpg = jax.grad(agent.ddpg_loss)(s.policy, s.critic, first)
            return jax.tree_util.tree_map(lambda a, b: w * a + (1.0 - w) * b, g_ddpg, g_obj)

        g_pol = jax.lax.cond(w > 0, blend, lambda: g_obj)
        return agent.apply_policy_grad(s, g_pol), g, jval

    def iteration(self, ms: MetaState):
        """K env steps per agent, critic/policy updates and K / policy_delay objective updates."""

        def block(ms: MetaState, _):
            groups, grads, jvals = [], [], []
            for agent, gs in zip(self.agents, ms.groups):
                gs = shard_population(gs, self.mesh)
                # the agents of a group step in lockstep: one warm-start weight for all
                w = self.warm_weight(gs.step[0] + self.cfg.td3.policy_delay)
                gs, g, jv = jax.vmap(lambda s: self.agent_block(agent, s, ms.alpha, w))(gs)
                groups.append(gs)
                grads.append(g)
                jvals.append(jv)
            n = sum(jax.tree_util.tree_leaves(g)[0].shape[0] for g in grads)
            gmean = jax.tree_util.tree_map(lambda *xs: sum(x.sum(0) for x in xs) / n, *grads)
            upd, opt = self.meta_tx.update(gmean, ms.meta_opt, ms.alpha)
            alpha = optax.apply_updates(ms.alpha, upd)
            groups = [shard_population(g, self.mesh) for g in groups]
            return ms.replace(groups=tuple(groups), alpha=alpha, meta_opt=opt), jnp.stack(
                [j.mean() for j in jvals])

        ms = ms.replace(groups=tuple(jax.vmap(TD3Agent.reset_stats)(g) for g in ms.groups))
        ms, jv = jax.lax.scan(block, ms, None, length=self.cfg.blocks_per_iteration)
        metrics = {"return": jnp.stack([jnp.nanmean(mean_completed_return(g)) for g in ms.groups]),
                   "meta_loss": jv.mean(0)}
        return ms, metrics
