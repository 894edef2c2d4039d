"""The EPG agent's inner settings for its PPO start: which (learning rate, initial log-std) the
initial objective trains best with, on tuning seeds.

    python -m benchmarks.epg_inner_sweep --lr 1e-3,3e-3,1e-2 --init-log-std=-1,-2 --seeds 0-2

A learned objective counts when it beats its own start, and a start held back by its inner settings
is a weak start (issue 20: "the inner settings are those that maximise that initial objective on
seeds 0-2"). For each setting, on the experiment's ``cpu`` preset otherwise, it trains ``--agents``
fresh agents per seed with the PPO-initialised objective at generation 0 (``ppo_schedule`` at
theta_0, which is the agent's PPO term exactly) on the test split, as the meta-test does, and prints
the sampled-action final return (mean, median, worst 5%), the mean-action return, the lifetime's mean
return and the final log-std; then rewrites RESULTS.md's ``epg_inner_sweep`` section. Each setting is
one compiled program vmapped over the agents (its compile time printed beside it).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import time

import jax
import numpy as np

from benchmarks.common import markdown_table, median_and_worst, section_preamble, write_section
from benchmarks.epg_seeds import parse_seeds
from metarl import envs
from metarl.inner.on_policy_agent import make_lifetime
from metarl.objectives import registry


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def sweep(experiment: str, lrs, log_stds, seeds, agents: int, split: str):
    mod = importlib.import_module(f"experiments.{experiment}")
    base = mod.PRESETS["cpu"].epg.lifetime
    env = envs.make(mod.ENV)
    rows = []
    for lr in lrs:
        for ls in log_stds:
            life = dataclasses.replace(base, learning_rate=lr, init_log_std=ls)
            obj = registry.make("ppo_schedule", life)
            theta = obj.init(jax.random.PRNGKey(0), env.observation_size, env.action_size)
            run = jax.jit(jax.vmap(make_lifetime(env, life, obj, with_ppo=True), in_axes=(None, 0, 0)))
            finals, means, aucs, stds, t0 = [], [], [], [], time.perf_counter()
            compile_s = None
            for seed in seeds:
                k_tasks, k_agents = jax.random.split(jax.random.PRNGKey(1000 + seed))
                tasks = jax.vmap(lambda k: env.sample_task(k, split))(jax.random.split(k_tasks, agents))
                out = jax.device_get(run(theta, tasks, jax.random.split(k_agents, agents)))
                if compile_s is None:
                    compile_s = time.perf_counter() - t0
                finals.append(out["eval_return_sampled"])
                means.append(out["eval_return_mean_action"])
                aucs.append(np.nanmean(out["curve"], axis=-1))
                stds.append(out["final_log_std"])
            f = np.concatenate(finals)
            med, worst = median_and_worst(f)
            rows.append([f"{lr:g}", f"{ls:g}", f"{f.mean():.2f}", f"{med:.2f}", f"{worst:.2f}",
                         f"{np.concatenate(means).mean():.2f}", f"{np.concatenate(aucs).mean():.2f}",
                         f"{np.concatenate(stds).mean():.2f}", f"{compile_s:.0f}"])
            print(" | ".join(map(str, rows[-1])), flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="epg_point")
    ap.add_argument("--lr", default="1e-3,3e-3,1e-2", help="the agent's Adam learning rates")
    ap.add_argument("--init-log-std", default="-1,-2", help="the policy's initial log-stds")
    ap.add_argument("--seeds", default="0-2", help="tuning seeds (tasks and agents drawn from each)")
    ap.add_argument("--agents", type=int, default=64, help="agents per seed")
    ap.add_argument("--split", default="test")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    rows = sweep(args.experiment, floats(args.lr), floats(args.init_log_std), seeds, args.agents, args.split)
    header = ["lr", "init log-std", "final return (mean)", "median", "worst 5%", "mean action",
              "lifetime mean return", "final log-std", "compile + first seed (s)"]
    body = (section_preamble(f"EPG agent's inner settings for its PPO start ({args.experiment}, `epg_inner_sweep.py`)")
            + f"- {args.agents} agents x seeds {args.seeds} per setting on the {args.split} split; the objective is "
            "ppo_schedule at theta_0 (the agent's PPO term exactly); sampled-action final returns unless "
            "marked; the cpu preset's other settings\n\n" + markdown_table(header, rows))
    print(body)
    if not args.no_write:
        write_section(f"epg_inner_sweep-{args.experiment}", body)


if __name__ == "__main__":
    main()
