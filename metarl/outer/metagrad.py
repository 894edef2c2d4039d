"""MetaGenRL's second-order meta-gradient outer loop (Kirsch et al., 2020).

A population of TD3 agents (``metarl.inner.td3``) is spread over env groups (one group per
meta-training environment; agents in a group are ``jax.vmap``-ed, groups with different obs/action
sizes are separate vmaps inside the same jitted step). All agents share one objective L_alpha
(``metarl.objectives.metagenrl``). One block of a meta-iteration, per agent:
  1. ``policy_delay`` env steps, one critic update after each;
  2. meta-gradient: 2B sub-trajectories, phi' = phi - lr_in * grad_phi L_alpha(phi; first half),
     meta-loss J(alpha) = -mean Q1(s, pi_phi'(s)) over all 2B; grad_alpha J through the critic and
     the SGD step, clipped to global norm ``meta_clip``;
  3. policy update on (w * DDPG + (1 - w) * L_alpha), w falling 1 -> 0 over ``warm_start_steps``.
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
    inner_lr: float = 1e-3           # lr of the SGD step phi' = phi - lr grad L_alpha
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
        if self.meta_batch < 2 or self.meta_batch % 2:
            raise ValueError(f"meta_batch must be an even number >= 2, got {self.meta_batch}")
        return self

    def objective(self) -> MetaGenRLObjective:
        return MetaGenRLObjective(self.lstm_features, self.objective_hidden)


# ---- the objective as a policy loss ---------------------------------------------------------------

def objective_inputs(agent: TD3Agent, policy_params, critic_params, batch: dict):
    """Arguments of L_alpha for a batch (B, T, ...): (a, pi(s), r, V(s), V(s'), d, mask);
    V = Q1(s, pi(s)) without gradient. Only pi(s) depends on policy_params with a gradient."""
    pi_a = agent.pi(policy_params, batch["obs"])
    sg = jax.lax.stop_gradient
    v = sg(agent.q(critic_params, batch["obs"], pi_a)[0])
    v_next = sg(agent.q(critic_params, batch["next_obs"], agent.pi(policy_params, batch["next_obs"]))[0])
    # bootstrap through time-limit ends: only true terminals zero V(s_{t+1})
    return (batch["action"], pi_a, batch["reward"], v, v_next, batch["terminal"], batch["mask"])


def learned_loss(module: MetaGenRLObjective, agent: TD3Agent):
    """loss(alpha, policy_params, critic_params, batch) = L_alpha; episode ends reset the LSTM."""

    def loss(alpha, policy_params, critic_params, batch):
        a, pi_a, r, v, v_next, terminal, mask = objective_inputs(agent, policy_params, critic_params, batch)
        # the LSTM resets on every episode end (done), the value input masks only terminals
        per = module.apply(alpha, a, pi_a, r, v, v_next * (1.0 - terminal), batch["done"], mask,
                           method=MetaGenRLObjective.per_step)
        return (per * mask).sum() / jnp.maximum(mask.sum(), 1.0)

    return loss


def meta_objective(module: MetaGenRLObjective, agent: TD3Agent, inner_lr: float):
    """J(alpha; phi, critic, batch of 2B) = -mean Q1(s, pi_phi'(s)), phi' = phi - lr grad L_alpha(A)."""
    lossf = learned_loss(module, agent)

    def J(alpha, policy_params, critic_params, batch):
        half = batch["mask"].shape[0] // 2
        first = jax.tree_util.tree_map(lambda x: x[:half], batch)
        g = jax.grad(lossf, argnums=1)(alpha, policy_params, critic_params, first)
        phi2 = jax.tree_util.tree_map(lambda p, gi: p - inner_lr * gi, policy_params, g)
        return agent.ddpg_loss(phi2, critic_params, batch)

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

    def agent_block(self, agent: TD3Agent, s: TD3State, alpha):
        """One block for one agent; returns (state, clipped meta-gradient, meta-loss)."""
        cfg = self.cfg
        s = agent.interact_and_fit_critic(s)
        key, k_meta = jax.random.split(s.key)
        s = s.replace(key=key)
        mbatch = agent.sample(s, k_meta, cfg.meta_batch)
        J = meta_objective(self.module, agent, cfg.inner_lr)
        jval, g = jax.value_and_grad(J)(alpha, s.policy, s.critic, mbatch)
        g, _ = self.clip.update(g, self.clip.init(g))
        lossf = learned_loss(self.module, agent)
        w = jnp.clip(1.0 - s.step / max(cfg.warm_start_steps, 1), 0.0, 1.0) if cfg.warm_start_steps else 0.0

        def policy_loss(pol, cri, batch):
            return w * agent.ddpg_loss(pol, cri, batch) + (1.0 - w) * lossf(alpha, pol, cri, batch)

        s, _ = agent.policy_update(s, policy_loss)
        return s, g, jval

    def iteration(self, ms: MetaState):
        """K env steps per agent, critic/policy updates and K / policy_delay objective updates."""

        def block(ms: MetaState, _):
            groups, grads, jvals = [], [], []
            for agent, gs in zip(self.agents, ms.groups):
                gs = shard_population(gs, self.mesh)
                gs, g, jv = jax.vmap(lambda s: self.agent_block(agent, s, ms.alpha))(gs)
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
