"""EPG on RandomReacher: meta-train on targets with y > 0, meta-test on held-out targets with y < 0.

    python -m experiments.epg_reacher [--preset smoke|cpu|paper] [--run-dir DIR] [--seed N]
"""
from metarl.epg import EPGConfig
from metarl.inner.epg_lifetime import LifetimeConfig
from metarl.outer.es import ESConfig

from experiments.epg_common import Preset, main

ENV = "random_reacher"
PRESETS = {
    "smoke": Preset(EPGConfig(LifetimeConfig(lifetime_steps=256, eval_envs=2),
                              ESConfig(population_size=4, generations=2), tasks_per_member=1),
                    test_agents=2),
    # initial log-std -2.5: with sampled-action evaluation a unit-std policy pays about 2 per step in
    # control cost (-100 per episode against -12 for zero action); at 1600 steps neither PPO nor the
    # EPG agent's PPO term learns reacher (both at the zero-action level, benchmarks/RESULTS.md)
    "cpu": Preset(EPGConfig(LifetimeConfig(lifetime_steps=1600, eval_envs=4, gamma=0.9,
                                           init_log_std=-2.5, max_grad_norm=0.5),
                            ESConfig(population_size=16, generations=120),
                            tasks_per_member=2, ppo_anneal_fraction=0.0),
                  test_agents=16),
    "paper": Preset(EPGConfig(LifetimeConfig(lifetime_steps=8192, eval_envs=4),
                              ESConfig(population_size=64, generations=2000), tasks_per_member=4),
                    test_agents=16),
}

if __name__ == "__main__":
    main("epg_reacher", ENV, PRESETS)
