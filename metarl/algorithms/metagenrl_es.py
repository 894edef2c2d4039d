"""ES evolving a learned objective over TD3 lifetimes (``python -m experiments.metagenrl --outer es``):
a new combination of the two methods. The population members are objective parameter vectors alpha
(by default MetaGenRL's backward-LSTM L_alpha; any ``metarl.protocols.Objective`` whose parameter
shapes do not depend on the body's sizes); the outer loop is the generic evosax wrapper that EPG
uses (``metarl.outer.es``).

A member's fitness: on each meta-training env, ``agents_per_member`` fresh TD3-style agents of the
frozen-objective harness (``metarl.inner.frozen_objective.make_train``: TD3's twin critics, the
policy updated by the member's L_alpha alone, no DDPG warm start: the harness has no schedule)
live ``lifetime_steps`` env steps on train-split tasks; the env's score is the mean final return of
their deployed (deterministic) policies. Each env's scores are standardised over the population
(z-scores of the finite members, so that no body's return scale dominates; non-finite members stay
NaN and are ranked last: the ES configuration's ``task_shaping="z_score"``, with envs as its
tasks), and the fitness is their mean over envs. Common random numbers: every
member sees the same tasks and agent seeds. One generation is one jitted program, vmapped over
members x agents per env. The raw per-env mean returns come back in ``info['fitness_aux']``.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from metarl.distributed import check_population, shard_population
from metarl.envs.core import TaskFamily
from metarl.inner import frozen_objective
from metarl.inner.td3 import TD3Config
from metarl.objectives.metagenrl import BackwardLSTMObjective
from metarl.outer.es import ESConfig, make_es
from metarl.protocols import Objective


@dataclasses.dataclass(frozen=True)
class MetaGenRLESConfig:
    td3: TD3Config = TD3Config()
    # each env's returns z-scored over the population before the mean over envs
    es: ESConfig = ESConfig(task_shaping="z_score")
    lifetime_steps: int = 10_000  # env steps of each fitness agent
    num_chunks: int = 1  # scan chunks of a lifetime (the training-return curve's resolution)
    agents_per_member: int = 1  # fresh agents per (member, env)
    eval_envs: int = 4  # episodes of the deployed policy that score an agent

    def validate(self) -> "MetaGenRLESConfig":
        self.td3.validate()
        self.es.validate()
        for f in ("lifetime_steps", "num_chunks", "agents_per_member", "eval_envs"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{f} must be a positive integer, got {getattr(self, f)}")
        if self.lifetime_steps < self.td3.policy_delay * self.num_chunks:
            raise ValueError(f"lifetime_steps = {self.lifetime_steps} is shorter than one policy "
                             f"update per chunk (policy_delay {self.td3.policy_delay} x num_chunks "
                             f"{self.num_chunks})")
        return self


class MetaGenRLES:
    """``MetaGenRLES(envs, config, objective=None)``: ``fitness_fn``, ``make_es`` as in ``metarl.epg.EPG``."""

    def __init__(self, envs: Sequence[TaskFamily], config: MetaGenRLESConfig,
                 objective: Objective | None = None, split: str = "train", mesh=None):
        self.envs, self.config, self.split = list(envs), config.validate(), split
        self.objective = objective if objective is not None else BackwardLSTMObjective()
        self.mesh = mesh
        if mesh is not None:
            check_population(config.es.population_size, mesh)
        obj = self.objective

        def factory(agent):
            return lambda alpha, pol, cri, batch: obj.policy_loss(alpha, pol, batch, agent, critic_params=cri)

        self.trains = [frozen_objective.make_train(e, config.td3, config.lifetime_steps, config.num_chunks,
                                                   factory, eval_envs=config.eval_envs) for e in self.envs]

    def init_objective(self, key):
        """alpha_0, shared by every env: its shapes must not depend on the body's sizes."""
        shapes = [jax.eval_shape(lambda k, e=e: self.objective.init(k, e.observation_size, e.action_size), key)
                  for e in self.envs]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("the objective's parameter shapes depend on the environment; ES evolves one "
                             "alpha for every meta-training env")
        e = self.envs[0]
        return self.objective.init(key, e.observation_size, e.action_size)

    def env_returns(self, population, key):
        """(P, E): each member's mean final eval return on each env (same tasks and seeds for all)."""
        population = shard_population(population, self.mesh)
        A = self.config.agents_per_member
        out = []
        for i, (env, train) in enumerate(zip(self.envs, self.trains)):
            k_task, k_agent = jax.random.split(jax.random.fold_in(key, i))
            tasks = jax.vmap(lambda k: env.sample_task(k, self.split))(jax.random.split(k_task, A))
            keys = jax.random.split(k_agent, A)
            per_member = jax.vmap(lambda p: jax.vmap(train, in_axes=(0, 0, None))(keys, tasks, p)[1]["eval_return"])
            out.append(per_member(population).mean(axis=1))
        return jnp.stack(out, axis=1)

    def fitness_fn(self, population, key, generation=None):
        """Raw per-env returns (P, E); the ES configuration shapes them per env and averages."""
        return self.env_returns(population, key)

    def make_es(self, key):
        """Returns (es, es_params, es_state, generation_fn) with the ES mean at alpha_0."""
        k_init, k_es = jax.random.split(key)
        return make_es(self.config.es, self.init_objective(k_init), self.fitness_fn, k_es)
