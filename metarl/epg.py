"""Evolved Policy Gradients: the EPG loss, its inner loop and the ES outer loop, wired together.

``EPG(env, lifetime_cfg, es_cfg, tasks_per_member, common_random_numbers)`` builds
- ``fitness_fn(population, key, ppo_factor) -> (population_size,)``: each member's loss trains
  ``tasks_per_member`` fresh agents on train-split tasks (vmapped over members x tasks: one compiled
  call per generation); fitness = mean evaluation return after the lifetime;
- ``generation(es_state, key)``: one evosax ask/evaluate/tell step, jitted whole.
The evolved loss is EPG's L_phi, or, with ``LifetimeConfig(objective="lstm")``, MetaGenRL's
backward-LSTM objective L_alpha on the same on-policy learner (metarl.objectives.lstm_on_policy).
"""
from __future__ import annotations

import dataclasses

import jax

from metarl.distributed import check_population, shard_population
from metarl.envs.core import TaskFamily
from metarl.inner.epg_lifetime import LifetimeConfig, make_lifetime
from metarl.objectives.epg_loss import ConvObjective, EPGLoss
from metarl.objectives.metagenrl import MetaGenRLObjective, init_objective
from metarl.outer.es import ESConfig, make_generation, make_strategy


@dataclasses.dataclass(frozen=True)
class EPGConfig:
    lifetime: LifetimeConfig = LifetimeConfig()
    es: ESConfig = ESConfig()
    tasks_per_member: int = 2
    common_random_numbers: bool = True  # all members see the same tasks and agent seeds

    def validate(self) -> "EPGConfig":
        self.lifetime.validate()
        self.es.validate()
        if self.tasks_per_member <= 0:
            raise ValueError(f"tasks_per_member must be a positive integer, got {self.tasks_per_member}")
        return self


class EPG:
    def __init__(self, env: TaskFamily, config: EPGConfig,
                 loss_module: EPGLoss | MetaGenRLObjective | None = None, mesh=None):
        """``mesh``: an optional population mesh (metarl.distributed); members are split over it.
        ``loss_module``: the evolved loss's network; default ``EPGLoss`` (output layer at zero when
        the objective is residual), ``MetaGenRLObjective()`` when it is "lstm"."""
        self.env, self.config = env, config.validate()
        self.mesh = mesh
        if mesh is not None:
            check_population(config.es.population_size, mesh)
        residual = config.lifetime.objective == "residual"
        self.lstm = config.lifetime.objective == "lstm"
        self.loss_module = loss_module or (MetaGenRLObjective() if self.lstm
                                           else EPGLoss(zero_output=residual))
        # The PPO term is compiled in only when the schedule ever uses it (f > 0 at some generation)
        # or the objective is residual (L_PPO + L_phi).
        with_ppo = config.es.ppo_anneal_fraction > 0
        self.lifetime = make_lifetime(env, config.lifetime, self.loss_module, with_ppo=with_ppo)
        # meta-test agents: f = 0 (the learned loss alone, or PPO + L_phi when residual), and the
        # no-update baseline evaluated from the same initial agents
        self.test_lifetime = make_lifetime(env, config.lifetime, self.loss_module, with_ppo=False,
                                           with_no_update_eval=True)
        self.tasks_per_member = config.tasks_per_member
        # one jitted train_agents shared by held-out evaluations and the meta-test (one compile):
        # jit_train_agents(loss_params, tasks, keys, meta_test=True)
        self.jit_train_agents = jax.jit(self.train_agents, static_argnames="meta_test")

    def init_loss(self, key):
        """phi_0: the initial (random) loss parameters; the ES mean starts here. For "lstm",
        MetaGenRL's initial alpha (its parameters do not depend on the body's sizes)."""
        if self.lstm:
            return init_objective(key, self.loss_module, self.env.action_size)
        lc = self.config.lifetime
        objective = ConvObjective(self.loss_module, lc.buffer_size, lc.minibatch_size)
        return objective.init(key, self.env.observation_size, self.env.action_size)

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

    def fitness_fn(self, population, key, ppo_factor):
        """Mean evaluation return after a lifetime on train tasks, (population_size,)."""
        population = shard_population(population, self.mesh)
        pop_size = jax.tree_util.tree_leaves(population)[0].shape[0]
        n = self.tasks_per_member
        k_task, k_agent = jax.random.split(key)
        if self.config.common_random_numbers:
            tasks, keys = self.sample_tasks(k_task, n), jax.random.split(k_agent, n)
        else:
            tasks = jax.vmap(lambda k: self.sample_tasks(k, n))(jax.random.split(k_task, pop_size))
            keys = jax.vmap(lambda k: jax.random.split(k, n))(jax.random.split(k_agent, pop_size))
        return self.train_agents(population, tasks, keys, ppo_factor)["eval_return"].mean(axis=1)

    def make_es(self, key):
        """Returns (es, es_params, es_state, generation_fn) with the ES mean at phi_0."""
        k_init, k_es = jax.random.split(key)
        phi0 = self.init_loss(k_init)
        es, params = make_strategy(self.config.es, phi0)
        state = es.init(k_es, phi0, params)
        gen = make_generation(es, params, self.fitness_fn, self.config.es)
        return es, params, state, gen
