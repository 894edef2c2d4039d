"""EPG on GoalPoint (MAML's 2-D navigation): meta-train on goals with x > 0, meta-test on x < 0.

    python -m experiments.epg_point [--preset smoke|cpu|paper] [--objective pure|residual|lstm|drift|drift_t|ppo_schedule] [--seed N]

GoalAnt's headline (a loss evolved on right-half targets teaches a fresh agent to reach left-half
ones) at a scale that runs in minutes on a laptop: the goal is not observed, so every agent must find
it from rewards within its lifetime. The meta-test also reports the scripted oracle.
"""
from metarl.algorithms.epg.algorithm import EPGConfig
from metarl.inner.on_policy_agent import LifetimeConfig
from metarl.outer.es import ESConfig

from experiments.epg_common import Preset, main

ENV = "goal_point"
PRESETS = {
    "smoke": Preset(EPGConfig(LifetimeConfig(lifetime_steps=256, eval_envs=2),
                              ESConfig(population_size=4, generations=2), tasks_per_member=1),
                    test_agents=2),
    # Tuned on seeds 0-2 (benchmarks/RESULTS.md): gamma 0.9, initial log-std -1 and gradient
    # clipping 0.5 make the agent's PPO term stable at this budget; PPO's own best settings
    # (swept over lr 3e-4..1e-2, gamma 0.9..0.99, log-std -2.3..0) for the baseline.
    # (benchmarks/epg_inner_sweep.py: lr 1e-3 and log-std -1 are the best of lr 1e-3..1e-2 x log-std
    # -1, -2 for the PPO start, so the initial objective is the tuned one.)
    # The README's main job evolves ppo_schedule (PPO plus 5 terms whose 15 coefficients are functions of
    # the lifetime progress; generation 0 is the agent's PPO term exactly) with the ES settings of
    # RESULTS.md "epg_seeds-epg_point-schedD": 32 members x 4 tasks (common random numbers), returns
    # z-scored per task, sigma 0.5, ES lr 0.2, fitness = mean return over the lifetime's last quarter.
    # Tuned on seeds 0-1 (seed 2, run after the choice: +3.39); fresh seeds 3-5: learned - initial
    # +0.86 on the mean (the residual conv objective at the former settings: -0.57), of at most +1.73
    # that any objective can reach under sampled actions (RESULTS.md "epg_point_ceiling"). The paper's
    # pure form is one flag away (--objective pure --population 16 --tasks-per-member 2 --sigma 0.01
    # --es-lr 0.01 --fitness final --task-shaping none).
    "cpu": Preset(EPGConfig(LifetimeConfig(lifetime_steps=8192, eval_envs=3, gamma=0.9,
                                           init_log_std=-1.0, max_grad_norm=0.5),
                            ESConfig(population_size=32, generations=30, sigma=0.5, learning_rate=0.2,
                                     task_shaping="z_score"),
                            tasks_per_member=4, objective="ppo_schedule", fitness="late_auc"),
                  test_agents=64, ppo=(("learning_rate", 3e-3),)),
    "paper": Preset(EPGConfig(LifetimeConfig(lifetime_steps=8192, eval_envs=3),
                              ESConfig(population_size=64, generations=2000), tasks_per_member=4),
                    test_agents=32),
}

if __name__ == "__main__":
    main("epg_point", ENV, PRESETS)
