"""EPG on GoalAnt: meta-train on targets in the right half (x > 0), meta-test on the left half (x < 0).

    python -m experiments.epg_ant [--preset smoke|cpu|paper] [--run-dir DIR] [--seed N]

`paper` uses DESIGN.md's sizes (8192-step lifetimes of 1000-step episodes) and is a GPU/TPU job;
`cpu` shortens episodes to 200 steps and lifetimes to 1024 steps so that it fits 15 minutes on
2 cores.
"""
from metarl.epg import EPGConfig
from metarl.inner.epg_lifetime import LifetimeConfig
from metarl.outer.es import ESConfig

from experiments.epg_common import Preset, main

ENV = "goal_ant"
PRESETS = {
    "smoke": Preset(EPGConfig(LifetimeConfig(lifetime_steps=128, eval_envs=1),
                              ESConfig(population_size=2, generations=1), tasks_per_member=1),
                    test_agents=1, episode_length=50),
    "cpu": Preset(EPGConfig(LifetimeConfig(lifetime_steps=1024, eval_envs=2),
                            ESConfig(population_size=8, generations=60, ppo_anneal_fraction=0.0),
                            tasks_per_member=1),
                  test_agents=4, episode_length=200),
    "paper": Preset(EPGConfig(LifetimeConfig(lifetime_steps=8192, eval_envs=4),
                              ESConfig(population_size=64, generations=2000), tasks_per_member=4),
                    test_agents=16),
}

if __name__ == "__main__":
    main("epg_ant", ENV, PRESETS)
