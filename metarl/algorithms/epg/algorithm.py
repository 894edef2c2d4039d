"""Evolved Policy Gradients: a learned objective, the on-policy agent's lifetime and the ES outer loop.

``EPG(env, config)`` builds
- ``fitness_fn(population, key, generation) -> ((population_size, tasks_per_member), aux)``: each
  member's objective trains ``tasks_per_member`` fresh agents on train-split tasks (vmapped over
  members x tasks: one compiled call per generation); a member's fitness on a task is its agent's
  evaluation return after the lifetime (the ES configuration shapes and averages it over tasks);
- ``make_es(key)``: the evosax strategy, its state at phi_0 and ``generation(es_state, key)``, one
  ask/evaluate/tell step, jitted whole.
The objective is ``config.objective``'s entry in ``metarl.objectives.registry`` (EPG's conv loss
L_phi in the paper's pure form or the residual form, or MetaGenRL's L_alpha), or any
``OnPolicyObjective`` given. The PPO share f of the pure form is EPG's schedule (``ppo_factor``),
not the ES loop's.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from metarl.distributed import shard_population
from metarl.envs.core import TaskFamily
from metarl.inner.on_policy_agent import LifetimeConfig, make_lifetime
from metarl.objectives import registry
from metarl.outer.es import ESConfig, make_es


FITNESS = ("final", "auc", "late_auc")


@dataclasses.dataclass(frozen=True)
class EPGConfig:
    lifetime: LifetimeConfig = LifetimeConfig()
    es: ESConfig = ESConfig()
    tasks_per_member: int = 2
    common_random_numbers: bool = True  # all members see the same tasks and agent seeds
    # the learned objective (metarl.objectives.registry): "pure" (the paper's (1 - f) L_phi + f L_PPO),
    # "residual" (L_PPO + L_phi, phi_0 = PPO) or "lstm" (MetaGenRL's L_alpha), or a registered one
    objective: str = "pure"
    # True: gradients flow through L_phi's buffer context (exact, the paper); False: the context is
    # computed once per update and held constant (cheaper: policy forward/backward on B rows, not N)
    context_gradient: bool = True
    ppo_anneal_fraction: float = 0.125  # f: 1 -> 0 linearly over this fraction of the generations
    # a member's fitness on a task: "final" (the paper: the return after the lifetime) or "auc" (the
    # mean return of the episodes completed over the lifetime, final return where none: trains faster)
    # or "late_auc" (the same over the last quarter of the lifetime: the final performance, measured on
    # the many episodes of a quarter-lifetime rather than the few of the final evaluation)
    fitness: str = "final"
    # the agent's lifetime progress t/T as an input of the objective's network (--progress-input; for
    # the conv loss: of its per-row head, and with progress_context of its context rows too)
    progress_input: bool = False
    progress_context: bool = False
    # the conv loss's penalty coef * mean(relu(|mu| - the env's action bound)^2) on the policy means
    # (--mean-penalty; 0: off, the paper)
    mean_penalty: float = 0.0

    def objective_options(self, action_bound: float = 1.0) -> dict:
        """The registry options (metarl.objectives.registry.OPTIONS) of this config's objective."""
        return {"progress_input": self.progress_input, "progress_context": self.progress_context,
                "mean_penalty": self.mean_penalty, "action_bound": action_bound}

    def make_objective(self, action_bound: float = 1.0):
        """``objective`` from the registry with this config's options, for an env whose actions are
        clipped to [-action_bound, action_bound]."""
        return registry.make(self.objective, self.lifetime, context_gradient=self.context_gradient,
                             **self.objective_options(action_bound))

    def validate(self) -> "EPGConfig":
        self.lifetime.validate()
        self.es.validate()
        if self.tasks_per_member <= 0:
            raise ValueError(f"tasks_per_member must be a positive integer, got {self.tasks_per_member}")
        self.make_objective()
        if self.fitness not in FITNESS:
            raise ValueError(f"unknown fitness {self.fitness!r}; expected one of {', '.join(FITNESS)}")
        return self


def lifetime_fitness(metrics: dict, how: str):
    """A lifetime's fitness from its metrics (leading axes kept): "final", the evaluation return after
    the lifetime; "auc", the mean of the learning curve (the return of the episodes completed in each
    update's rollout), the final return where no episode completed; "late_auc", "auc" over the last
    quarter of the updates."""
    if how == "final":
        return metrics["eval_return"]
    curve = metrics["curve"]
    if how == "late_auc":
        curve = curve[..., -max(1, curve.shape[-1] // 4):]
    seen = jnp.isfinite(curve).any(axis=-1)
    return jnp.where(seen, jnp.nanmean(jnp.where(seen[..., None], curve, 0.0), axis=-1), metrics["eval_return"])


def ppo_factor(generation, anneal_fraction: float, span: int):
    """f(g) = max(0, 1 - g / (anneal_fraction * G)): the PPO share of the pure form's inner loss."""
    span = anneal_fraction * span
    if span <= 0:
        return jnp.float32(0.0)
    return jnp.clip(1.0 - generation / span, 0.0, 1.0).astype(jnp.float32)


class EPG:
    def __init__(self, env: TaskFamily, config: EPGConfig, objective=None, mesh=None):
        """``objective``: an ``OnPolicyObjective`` (default: ``config.objective`` from the registry);
        ``mesh``: an optional population mesh (metarl.distributed); members are split over it."""
        self.env, self.config = env, config.validate()
        self.mesh = mesh
        self.objective = objective or config.make_objective(getattr(env, "action_bound", 1.0))
        # The PPO term is compiled in only when the schedule ever uses it (f > 0 at some generation)
        # or the objective always mixes it in.
        with_ppo = config.ppo_anneal_fraction > 0
        self.lifetime = make_lifetime(env, config.lifetime, self.objective, with_ppo=with_ppo)
        # meta-test agents: f = 0 (the learned objective alone, or with PPO where it always mixes
        # it in), and the no-update baseline evaluated from the same initial agents
        self.test_lifetime = make_lifetime(env, config.lifetime, self.objective, with_ppo=False,
                                           with_no_update_eval=True)
        self.tasks_per_member = config.tasks_per_member
        # one jitted train_agents shared by held-out evaluations and the meta-test (one compile):
        # jit_train_agents(loss_params, tasks, keys, meta_test=True)
        self.jit_train_agents = jax.jit(self.train_agents, static_argnames="meta_test")

    def init_loss(self, key):
        """phi_0: the initial objective parameters; the ES mean starts here."""
        return self.objective.init(key, self.env.observation_size, self.env.action_size)

    def ppo_factor(self, generation):
        """f at ``generation`` (the schedule spans ``es.schedule_span`` generations)."""
        return ppo_factor(generation, self.config.ppo_anneal_fraction, self.config.es.schedule_span)
    def sample_tasks(self, key, n: int, split: str = "train"):
        """n tasks of the split, (n, ...) pytree."""
        return jax.vmap(lambda k: self.env.sample_task(k, split))(jax.random.split(key, n))

    def train_agents(self, loss_params, tasks, keys, ppo_factor=None, *, meta_test: bool = False):
        """Each loss in ``loss_params`` (leading axis: members) trains one fresh agent per task.

        tasks/keys: shared by all members, (tasks, ...) and (tasks, 2), or per member,
        (members, tasks, ...) and (members, tasks, 2).

        Which program trains them:
        - ``meta_test=False`` (ES fitness): the meta-training lifetime, whose inner loss mixes in PPO
          by ``ppo_factor`` f (required): (1 - f) L_phi + f L_PPO (L_PPO + L_phi when residual);
        - ``meta_test=True`` (held-out evaluations and the meta-test): the learned loss alone, f = 0
          (L_PPO + L_phi when residual), in a program without the PPO term that also evaluates each
          agent before its first update (the no-update baseline); takes no ``ppo_factor``.
        Returns lifetime metrics with leading axes (members, tasks).
        """
        if meta_test:
            if ppo_factor is not None:
                raise ValueError("train_agents(meta_test=True) trains with f = 0: no ppo_factor")
            lifetime, ppo_factor = self.test_lifetime, 0.0
        else:
            if ppo_factor is None:
                raise ValueError("train_agents needs a ppo_factor (or meta_test=True: f = 0)")
            lifetime = self.lifetime
        per_member = jax.vmap(lifetime, in_axes=(None, 0, 0, None))  # over tasks
        shared = keys.ndim == 2
        axes = (0, None, None, None) if shared else (0, 0, 0, None)
        return jax.vmap(per_member, in_axes=axes)(loss_params, tasks, keys, ppo_factor)

    def fitness_fn(self, population, key, generation):
        """(each member's fitness on each of its train tasks (population_size, tasks_per_member):
        ``lifetime_fitness`` of the lifetime that its objective trained, {'ppo_factor': f})."""
        population = shard_population(population, self.mesh)
        pop_size = jax.tree_util.tree_leaves(population)[0].shape[0]
        n = self.tasks_per_member
        k_task, k_agent = jax.random.split(key)
        if self.config.common_random_numbers:
            tasks, keys = self.sample_tasks(k_task, n), jax.random.split(k_agent, n)
        else:
            tasks = jax.vmap(lambda k: self.sample_tasks(k, n))(jax.random.split(k_task, pop_size))
            keys = jax.vmap(lambda k: jax.random.split(k, n))(jax.random.split(k_agent, pop_size))
        f = self.ppo_factor(generation)
        out = self.train_agents(population, tasks, keys, f)
        return lifetime_fitness(out, self.config.fitness), {"ppo_factor": f}

    def make_es(self, key):
        """Returns (es, es_params, es_state, generation_fn) with the ES mean at phi_0."""
        k_init, k_es = jax.random.split(key)
        return make_es(self.config.es, self.init_loss(k_init), self.fitness_fn, k_es, self.mesh)
