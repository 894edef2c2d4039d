"""MetaGenRL's meta-test: the TD3 harness as one program over all its methods (the former
meta-test: every agent computes L_alpha, DDPG and REINFORCE, weighted) against the split programs
(SPLIT: learned + initial_loss with L_alpha only, td3 + reinforce without it; the meta-test's
HARNESS_GROUPS has since put learned and initial_loss in two groups of one compiled program, with
bit-identical results, see metarl.algorithms.metagenrl.meta_test.MetaTest). Compile and run timed separately, the programs alternated in one
process; the run part is extrapolated linearly to the preset's steps (every env step of the harness
costs the same: a critic update each step and a policy update every policy_delay steps, random
steps included).

    python -m benchmarks.meta_test_split [--steps 1200] [--chunks 2] [--rounds 1] [--write]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import numpy as np

from benchmarks.common import block, markdown_table, section_preamble, write_section
from experiments.metagenrl import PRESETS
from metarl import envs
from metarl.algorithms.metagenrl.meta_test import TD3_HARNESS, MetaTestConfig, harness_program
from metarl.evaluation import forward_metric
from metarl.inner.td3 import TD3Agent

SPLIT = (("learned", "initial_loss"), ("td3", "reinforce"))  # the split this benchmark measured


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--env", default="hopper")
    ap.add_argument("--steps", type=int, default=1_200)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="alternated runs of each program set")
    ap.add_argument("--write", action="store_true", help="write RESULTS.md's section")
    a = ap.parse_args(argv)
    p = PRESETS[a.preset]
    sizes = dataclasses.replace(p.test, total_steps=a.steps, num_chunks=a.chunks)
    cfg = MetaTestConfig(td3=p.metagrad.td3, sizes=sizes, ppo=p.ppo).validate()
    env = envs.make(a.env, backend=(p.backends or {}).get(a.env))
    fwd = forward_metric(env)
    objective = p.metagrad.objective()
    agent = TD3Agent(env, cfg.td3)
    learned = objective.init(jax.random.PRNGKey(1), agent.obs_size, agent.act_size)
    initial = objective.init(jax.random.PRNGKey(2), agent.obs_size, agent.act_size)
    keys = jax.random.split(jax.random.PRNGKey(1000), sizes.num_seeds)
    tasks = jax.vmap(lambda k: env.sample_task(jax.random.fold_in(k, 7), "test"))(keys)
    sets = {"combined (old)": [TD3_HARNESS], "split (new)": [list(g) for g in SPLIT]}

    compiled, compile_s, run_s, part_s, loads, evals = {}, {}, {}, {}, {}, {}
    for name, groups in sets.items():
        compile_s[name] = []
        for g in groups:
            fn, args = harness_program(env, cfg, objective, g, learned, initial, keys, tasks, fwd)
            t = time.perf_counter()
            c = jax.jit(fn).lower(*args).compile()
            compile_s[name].append(time.perf_counter() - t)
            compiled.setdefault(name, []).append((g, c, args))
            print(f"compile {name} {tuple(g)}: {compile_s[name][-1]:.1f}s load {_load()}", flush=True)
    for r in range(a.rounds):
        for name in sets:
            outs, parts = [], []
            for g, c, args in compiled[name]:
                t = time.perf_counter()
                outs.append((g, block(c(*args))[1]))
                parts.append(time.perf_counter() - t)
            run_s.setdefault(name, []).append(sum(parts))
            part_s.setdefault(name, []).append(parts)
            loads.setdefault(name, []).append(_load())
            n = sizes.num_seeds
            evals[name] = {m: np.asarray(mt["eval_return"])[i * n:(i + 1) * n]
                           for g, mt in outs for i, m in enumerate(g)}
            print(f"run {name} round {r}: {run_s[name][-1]:.1f}s ({' + '.join(f'{x:.1f}' for x in parts)}) "
                  f"load {_load()}", flush=True)

    scale = p.test.total_steps / a.steps
    old, new = sets
    diff = max(float(np.max(np.abs(evals[old][m] - evals[new][m]))) for m in TD3_HARNESS)
    means = "; ".join(f"{m} {evals[old][m].mean():.1f} / {evals[new][m].mean():.1f}" for m in TD3_HARNESS)
    rows = []
    for name in sets:
        best = min(run_s[name])
        rows.append([name, " + ".join(f"{x:.1f}" for x in compile_s[name]), f"{sum(compile_s[name]):.1f}",
                     " / ".join(" + ".join(f"{x:.1f}" for x in parts) for parts in part_s[name]), f"{best * scale:.0f}",
                     f"{sum(compile_s[name]) + best * scale:.0f}", "; ".join(loads[name])])
    body = (section_preamble(f"MetaGenRL meta-test: one TD3-harness program vs split programs ({a.env})")
            + f"- sizes: preset `{a.preset}`'s meta-test ({', '.join(TD3_HARNESS)}; {sizes.num_seeds} seeds, "
              f"{sizes.eval_envs} eval envs, td3 hidden {cfg.td3.hidden}, batch {cfg.td3.batch_size} x "
              f"{cfg.td3.seq_len}) at {a.steps:,} steps in {a.chunks} chunks, not {p.test.total_steps:,}; "
              f"run extrapolated x{scale:g} (cost per env step is uniform)\n"
            + f"- programs compiled first, then run alternated ({a.rounds} round(s)); load = 1/5/15-min load "
              f"averages after each run\n"
            + f"- mean eval return per method, old / new (same keys and tasks; see the note below on "
              f"float32 drift): {means}; max |difference| over agents {diff:.3g}\n\n"
            + markdown_table(["programs", "compile (s) per program", "compile (s)", "run (s) per round (per program)",
                              f"run at {p.test.total_steps:,} steps (s, best x{scale:g})",
                              "compile + run (s)", "load"], rows) + "\n")
    print(body)
    if a.write:
        write_section("metagenrl_meta_test_split", body)


if __name__ == "__main__":
    main()
