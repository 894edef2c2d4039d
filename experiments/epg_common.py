"""Shared parts of the EPG experiments (``python -m experiments.epg_<family>``): the locomotion
presets and ``main``, which hands the run to the driver (metarl/algorithms/epg_run.py,
metarl/runner.py). Meta-trains an EPG loss with ES on the family's train split, then meta-tests
the best loss on the test split against PPO, the initial loss and the do-nothing floors.
"""
from __future__ import annotations

from metarl.algorithms.epg_run import Preset, run
from metarl.epg import EPGConfig
from metarl.inner.epg_lifetime import LifetimeConfig
from metarl.outer.es import ESConfig

__all__ = ["Preset", "locomotion_presets", "main"]


def locomotion_presets() -> dict:
    """Presets shared by the Brax locomotion families (GoalAnt, DirHalfCheetah, RandomHopper).

    ``paper`` uses the EPG paper's sizes (Houthooft et al. 2018) (8192-step lifetimes of 1000-step episodes), a GPU/TPU job;
    ``cpu`` shortens episodes to 200 steps and lifetimes to 1024 steps to fit 15 minutes on 2 cores.
    """
    return {
        "smoke": Preset(EPGConfig(LifetimeConfig(lifetime_steps=128, eval_envs=1),
                                  ESConfig(population_size=2, generations=1), tasks_per_member=1),
                        test_agents=1, episode_length=50),
        "cpu": Preset(EPGConfig(LifetimeConfig(lifetime_steps=1024, eval_envs=2),
                                ESConfig(population_size=8, generations=60),
                                tasks_per_member=1, ppo_anneal_fraction=0.0),
                      test_agents=4, episode_length=200),
        "paper": Preset(EPGConfig(LifetimeConfig(lifetime_steps=8192, eval_envs=4),
                                  ESConfig(population_size=64, generations=2000), tasks_per_member=4),
                        test_agents=16),
    }


def main(name: str, env_name: str, presets: dict, argv=None) -> dict:
    """Runs experiment ``name`` (EPG on ``env_name`` with ``presets``); returns summary.json's dict."""
    return run(name, env_name, presets, argv)
