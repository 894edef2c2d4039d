"""A second-order meta-gradient outer loop (MetaGenRL's, Kirsch et al., 2020), generic in the
learner and the objective (``metarl.protocols``); ``metarl.algorithms.metagenrl.algorithm`` wires MetaGenRL's
TD3 learners and backward-LSTM objective into it.

A population of learners (``metarl.protocols.Learner``, with a critic) is spread over env groups
(one learner instance per group; agents in a group are ``jax.vmap``-ed, groups with different
obs/action sizes are separate vmaps inside the same jitted step). All agents share one objective
L_alpha (``metarl.protocols.Objective``). One block of a meta-iteration, per agent:
  1. ``interact_and_fit_critic``: ``steps_per_block`` env steps, one critic update after each;
  2. meta-gradient: 2B samples (``draw_batch``), phi' = phi - eta * grad_phi L_alpha(phi; first
     half) with L_alpha the objective's ``policy_loss`` (MetaGenRL: the masked *mean* over the half's
     steps) and eta = ``lookahead_step``, meta-loss J(alpha) = the learner's ``meta_loss`` at phi'
     over all 2B (TD3: -mean Q1(s, pi_phi'(s))); grad_alpha J through the critic and the SGD step,
     clipped to global norm ``meta_clip``. The original differentiates the *sum* over its 100 x 20
     steps with lr 1e-3, i.e. eta = 2.0 on the mean; eta here does not change with B or T;
  3. policy update (``apply_policy_grad``) on (w * J + (1 - w) * L_alpha), w falling 1 -> 0 over
     ``warm_start_steps`` (TD3: J is DDPG's loss), on the meta-gradient's first half: its
     grad_phi L_alpha is the lookahead's own (computed once).
Then alpha takes one Adam step on the meta-gradients averaged over all agents. A meta-iteration is
``jax.lax.scan`` over K / steps_per_block blocks, compiled whole.

How grad_alpha J is computed (``MetaGradConfig.second_order``; both give the same quantity, up
to float rounding):
  ``"reverse"``: reverse-over-reverse, ``jax.value_and_grad`` of J through the ``jax.grad`` of the
     lookahead, as the original MetaGenRL code does with TF (it differentiates through its SGD step);
  ``"forward"``: reverse-over-forward. The lookahead is plain SGD, so with
     v = stop_gradient(grad_phi' J) at phi' the chain rule gives
     grad_alpha J = -eta grad_alpha <grad_phi L_alpha(phi), v> = -eta grad_alpha [jvp of L_alpha in phi
     along v], i.e. the reverse pass runs over a forward-mode (jvp) pass of L_alpha instead of over
     its reverse pass (no transpose of the backward LSTM's backward loop).
The default is "reverse": "forward" was measured to be slower, not faster (benchmarks/RESULTS.md,
``inner_loop_overhead_metagenrl``, 2026-12-06, 2-core CPU under load, cpu preset on halfcheetah):
the agent-step is 4.63x a standard TD3 agent-step with "forward" against 4.19x with "reverse"
(forward / reverse 1.04-1.39 over 4 alternated rounds), and the meta-gradient alone takes 8.86 vs
7.87 ms. Both compile to 4 loops over the LSTM's steps, and "forward" recomputes L_alpha's primal
pass inside the jvp.

Diagnostic (not in the original): ``alignment`` = cos(grad_phi L_alpha, grad_phi J(phi)) on the
first half, i.e. whether a step on the learned objective moves the policy where the learner's own
loss (TD3: DDPG's -Q1) would; 1 = the same direction, 0 = unrelated, -1 = against it. To first
order in eta the meta-loss falls by eta * <grad J, grad L_alpha>, so meta-training is what should
raise it.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl.checks import require_positive
from metarl.distributed import check_population, shard_population
from metarl.protocols import Learner, Objective


SECOND_ORDER = ("reverse", "forward")  # MetaGradConfig.second_order's choices


@dataclasses.dataclass(frozen=True)
class MetaGradConfig:
    agents_per_env: int = 10
    meta_iterations: int = 700
    steps_per_iteration: int = 1000  # K env steps per agent per meta-iteration
    meta_lr: float = 1e-3
    meta_clip: float = 1.0
    # eta of the lookahead step phi' = phi - eta grad_phi L_alpha (L_alpha: the mean over valid steps);
    # the original's lr 1e-3 on the sum over 100 x 20 steps is eta = 2.0, whatever B and T are here
    lookahead_step: float = 2.0
    meta_batch: int = 200            # samples for the meta-gradient (split in halves)
    warm_start_steps: int = 10_000
    # how grad_alpha J is differentiated through the lookahead (module docstring): "reverse"
    # (reverse-over-reverse, as the original; the default, measured faster on CPU) or "forward"
    # (reverse-over-forward, the same quantity)
    second_order: str = "reverse"

    def validate(self) -> "MetaGradConfig":
        require_positive(self, ("agents_per_env", "meta_iterations", "steps_per_iteration", "meta_batch"),
                         prefix="meta-training ")
        if not 0.0 < self.meta_lr < float("inf"):
            raise ValueError(f"meta_lr must be a finite number > 0, got {self.meta_lr}")
        if self.warm_start_steps < 0:
            raise ValueError(f"warm_start_steps must be an integer >= 0, got {self.warm_start_steps}")
        if not 0.0 <= self.lookahead_step < float("inf"):
            raise ValueError(f"lookahead_step must be a finite number >= 0, got {self.lookahead_step}")
        if self.meta_batch < 2 or self.meta_batch % 2:
            raise ValueError(f"meta_batch must be an even number >= 2, got {self.meta_batch}")
        if self.second_order not in SECOND_ORDER:
            raise ValueError(f"second_order must be one of {', '.join(SECOND_ORDER)}, got {self.second_order!r}")
        return self


# ---- the second-order meta-loss -------------------------------------------------------------------

def first_half(batch):
    """The first n // 2 samples of a batch (every leaf (n, ...))."""
    half = jax.tree_util.tree_leaves(batch)[0].shape[0] // 2
    return jax.tree_util.tree_map(lambda x: x[:half], batch)


def lookahead(objective: Objective, learner: Learner, step: float):
    """phi'(alpha, phi, critic, batch) -> (phi - eta g, g), g = grad_phi L_alpha(phi; batch), eta = ``step``."""

    def lossf(alpha, policy_params, critic_params, batch):
        return objective.policy_loss(alpha, policy_params, batch, learner, critic_params=critic_params)

    def phi_prime(alpha, policy_params, critic_params, batch):
        g = jax.grad(lossf, argnums=1)(alpha, policy_params, critic_params, batch)
        return jax.tree_util.tree_map(lambda p, gi: p - step * gi, policy_params, g), g

    return phi_prime


def meta_objective(objective: Objective, learner: Learner, lookahead_step: float,
                   with_policy_grad: bool = False):
    """J(alpha; phi, critic, batch of 2B) = learner.meta_loss(phi', critic, batch), phi' = lookahead
    on the first B. ``with_policy_grad``: J returns (J, grad_phi L_alpha(phi; first B)) for ``has_aux``."""
    step = lookahead(objective, learner, lookahead_step)

    def J(alpha, policy_params, critic_params, batch):
        phi2, g = step(alpha, policy_params, critic_params, first_half(batch))
        j = learner.meta_loss(phi2, critic_params, batch)
        return (j, jax.lax.stop_gradient(g)) if with_policy_grad else j

    return J


def meta_value_and_grad(objective: Objective, learner: Learner, lookahead_step: float,
                        second_order: str = "reverse"):
    """vg(alpha, phi, critic, batch of 2B) -> ((J, grad_phi L_alpha(phi; first B)), grad_alpha J):
    J of ``meta_objective`` with its policy gradient, and its meta-gradient computed in the
    ``second_order`` mode (module docstring): "reverse" = ``jax.value_and_grad`` of J,
    "forward" = -eta grad_alpha of the jvp of L_alpha in phi along v = grad_phi' J (stopped)."""
    if second_order not in SECOND_ORDER:
        raise ValueError(f"second_order must be one of {', '.join(SECOND_ORDER)}, got {second_order!r}")
    if second_order == "reverse":
        return jax.value_and_grad(meta_objective(objective, learner, lookahead_step, with_policy_grad=True),
                                  has_aux=True)
    eta = lookahead_step
    step = lookahead(objective, learner, eta)

    def vg(alpha, policy_params, critic_params, batch):
        half = first_half(batch)

        def lossf(a, p):
            return objective.policy_loss(a, p, half, learner, critic_params=critic_params)

        phi2, g = step(alpha, policy_params, critic_params, half)
        j, v = jax.value_and_grad(learner.meta_loss)(phi2, critic_params, batch)
        v = jax.lax.stop_gradient(v)

        def directional(a):  # <grad_phi L_a(phi), v>, forward mode in phi
            return jax.jvp(lambda p: lossf(a, p), (policy_params,), (v,))[1]

        ga = jax.grad(directional)(alpha)
        return (j, jax.lax.stop_gradient(g)), jax.tree_util.tree_map(lambda x: -eta * x, ga)

    return vg


def cosine(a, b) -> jax.Array:
    """cos of the angle between two pytrees of the same structure, each flattened to one vector
    (0 where either is zero)."""
    norms = optax.tree_utils.tree_norm(a) * optax.tree_utils.tree_norm(b)
    return jnp.where(norms > 0, optax.tree_utils.tree_vdot(a, b) / jnp.maximum(norms, 1e-30), 0.0)


# ---- meta-training --------------------------------------------------------------------------------

@struct.dataclass
class MetaState:
    groups: tuple          # one batched learner state per env group, leading axis = agents_per_env
    alpha: dict            # objective parameters
    meta_opt: optax.OptState
    key: jax.Array


class MetaTrainer:
    """``init(key) -> MetaState``; ``iteration(state) -> (state, metrics)`` (jit it).

    ``learners``: one ``Learner`` per env group (``agents_per_env`` agents each, on tasks of
    ``split``), all with the same ``steps_per_block``; ``objective``: the shared L_alpha.
    ``mesh``: an optional population mesh (metarl.distributed); each env group's agents are split
    over it (agents_per_env must divide the device count), alpha and its optimiser stay replicated,
    and the meta-gradient mean over agents becomes a cross-device reduction.
    """

    def __init__(self, learners: Sequence[Learner], objective: Objective, config: MetaGradConfig,
                 split: str = "train", mesh=None):
        self.cfg = config.validate()
        self.learners = list(learners)
        if not self.learners:
            raise ValueError("MetaTrainer needs at least one learner")
        block = {lr.steps_per_block for lr in self.learners}
        if len(block) != 1:
            raise ValueError(f"the learners' steps_per_block differ: {sorted(block)}")
        self.steps_per_block = block.pop()
        if self.cfg.steps_per_iteration % self.steps_per_block:
            raise ValueError(f"steps_per_iteration = {self.cfg.steps_per_iteration} must be a multiple "
                             f"of the learners' steps_per_block = {self.steps_per_block}")
        self.blocks_per_iteration = self.cfg.steps_per_iteration // self.steps_per_block
        self.objective = objective
        self.mesh = mesh
        if mesh is not None:
            check_population(self.cfg.agents_per_env, mesh, what="agents_per_env")
        self.split = split
        self.meta_tx = optax.adam(self.cfg.meta_lr)
        self.clip = optax.clip_by_global_norm(self.cfg.meta_clip)

    def init(self, key: jax.Array) -> MetaState:
        k_alpha, k_run, *k_groups = jax.random.split(key, 2 + len(self.learners))
        first = self.learners[0]
        alpha = self.objective.init(k_alpha, first.obs_size, first.act_size)
        groups = []
        for learner, kg in zip(self.learners, k_groups):
            keys = jax.random.split(kg, self.cfg.agents_per_env)
            tasks = jax.vmap(lambda k: learner.sample_task(jax.random.fold_in(k, 1), self.split))(keys)
            groups.append(jax.vmap(learner.init)(keys, tasks))
        ms = MetaState(tuple(groups), alpha, self.meta_tx.init(alpha), k_run)
        # every leaf gets its own buffer, so the state can be donated to ``iteration``
        return jax.tree_util.tree_map(jnp.copy, ms)

    def warm_weight(self, step):
        """w of the learner's own loss J in the policy loss w J + (1 - w) L_alpha: 1 -> 0 over
        warm_start_steps env steps."""
        if not self.cfg.warm_start_steps:
            return jnp.zeros(())
        return jnp.clip(1.0 - step / self.cfg.warm_start_steps, 0.0, 1.0)

    def agent_block(self, learner: Learner, s, alpha, w=None):
        """One block for one agent; returns (state, clipped meta-gradient, meta-loss, alignment).

        The policy step reuses the lookahead's gradient grad_phi L_alpha(phi; first half of the meta
        batch): the same quantity as on a fresh batch of B, computed once instead of twice. ``w``:
        the warm-start weight (default: from the state's env steps); given as one scalar for a
        group in lockstep, the warm-start term leaves the program (a real ``lax.cond``) once w
        reaches 0."""
        cfg = self.cfg
        s = learner.interact_and_fit_critic(s)
        s, mbatch = learner.draw_batch(s, cfg.meta_batch)
        policy, critic = learner.policy_params(s), learner.critic_params(s)
        vg = meta_value_and_grad(self.objective, learner, cfg.lookahead_step, cfg.second_order)
        (jval, g_obj), g = vg(alpha, policy, critic, mbatch)
        g, _ = self.clip.update(g, self.clip.init(g))
        w = self.warm_weight(learner.env_steps(s)) if w is None else w
        g_own = jax.grad(learner.meta_loss)(policy, critic, first_half(mbatch))

        def blend():
            return jax.tree_util.tree_map(lambda a, b: w * a + (1.0 - w) * b, g_own, g_obj)

        g_pol = jax.lax.cond(w > 0, blend, lambda: g_obj)
        return learner.apply_policy_grad(s, g_pol), g, jval, cosine(g_obj, g_own)

    def iteration(self, ms: MetaState):
        """K env steps per agent, critic/policy updates and K / steps_per_block objective updates.
        metrics: "return" (groups,), the mean completed-episode return per group (NaN if none);
        "meta_loss" (groups,), J averaged over the group's agents and the blocks; "alignment"
        (groups,), cos(grad_phi L_alpha, grad_phi J) averaged likewise (``agent_block``)."""

        def block(ms: MetaState, _):
            groups, grads, jvals, cos = [], [], [], []
            for learner, gs in zip(self.learners, ms.groups):
                gs = shard_population(gs, self.mesh)
                # the agents of a group step in lockstep: one warm-start weight for all
                w = self.warm_weight(jax.vmap(learner.env_steps)(gs)[0] + self.steps_per_block)
                gs, g, jv, c = jax.vmap(lambda s: self.agent_block(learner, s, ms.alpha, w))(gs)
                groups.append(gs)
                grads.append(g)
                jvals.append(jv)
                cos.append(c)
            n = sum(jax.tree_util.tree_leaves(g)[0].shape[0] for g in grads)
            gmean = jax.tree_util.tree_map(lambda *xs: sum(x.sum(0) for x in xs) / n, *grads)
            upd, opt = self.meta_tx.update(gmean, ms.meta_opt, ms.alpha)
            alpha = optax.apply_updates(ms.alpha, upd)
            groups = [shard_population(g, self.mesh) for g in groups]
            return ms.replace(groups=tuple(groups), alpha=alpha, meta_opt=opt), (
                jnp.stack([j.mean() for j in jvals]), jnp.stack([c.mean() for c in cos]))

        ms = ms.replace(groups=tuple(jax.vmap(lr.reset_stats)(g) for lr, g in zip(self.learners, ms.groups)))
        ms, (jv, cos) = jax.lax.scan(block, ms, None, length=self.blocks_per_iteration)
        metrics = {"return": jnp.stack([jnp.nanmean(jax.vmap(lr.mean_completed_return)(g))
                                        for lr, g in zip(self.learners, ms.groups)]),
                   "meta_loss": jv.mean(0), "alignment": cos.mean(0)}
        return ms, metrics
