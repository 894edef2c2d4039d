"""MetaGenRL (Kirsch et al., 2020): TD3 learners (``metarl.inner.td3``), one per meta-training
environment, share the backward-LSTM objective L_alpha (``metarl.objectives.backward_lstm``), which the
generic second-order outer loop (``metarl.outer.metagrad``) meta-trains through their critics:
J(alpha) = -Q1(s, pi_phi'(s)), phi' = phi - eta grad_phi L_alpha.

``make_trainer(envs, MetaGenRLConfig(...))`` builds the ``MetaTrainer``; its ``objective`` is the
``BackwardLSTMObjective`` that the meta-test (``metarl.algorithms.metagenrl.meta_test``) trains fresh agents with.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from metarl.envs.core import TaskFamily
from metarl.inner.td3 import TD3Agent, TD3Config
from metarl.objectives.backward_lstm import BackwardLSTMObjective, MetaGenRLObjective
from metarl.outer.metagrad import MetaGradConfig, MetaTrainer


@dataclasses.dataclass(frozen=True)
class MetaGenRLConfig(MetaGradConfig):
    """The outer loop's settings (``MetaGradConfig``) plus the TD3 learners' and L_alpha's sizes."""

    td3: TD3Config = TD3Config()
    lstm_features: int = 32
    objective_hidden: int = 32

    @property
    def blocks_per_iteration(self) -> int:
        """Objective updates per meta-iteration: K / policy_delay."""
        return self.steps_per_iteration // self.td3.policy_delay

    def validate(self) -> "MetaGenRLConfig":
        self.td3.validate()
        super().validate()
        if self.steps_per_iteration % self.td3.policy_delay:
            raise ValueError(f"steps_per_iteration = {self.steps_per_iteration} must be a multiple of "
                             f"policy_delay = {self.td3.policy_delay}")
        return self

    def objective(self) -> BackwardLSTMObjective:
        return BackwardLSTMObjective(MetaGenRLObjective(self.lstm_features, self.objective_hidden))


def make_trainer(envs: Sequence[TaskFamily], config: MetaGenRLConfig, split: str = "train",
                 mesh=None) -> MetaTrainer:
    """One TD3 learner per env (``config.agents_per_env`` agents each, tasks of ``split``) and the
    backward-LSTM L_alpha, in the second-order outer loop."""
    config = config.validate()
    learners = [TD3Agent(e, config.td3) for e in envs]
    return MetaTrainer(learners, config.objective(), config, split=split, mesh=mesh)
