"""EPG inner-loop overhead: meta-training env-steps/s over raw batched env.step steps/s.

For each environment, in one process: (a) raw env.step throughput of B = population x tasks envs
(one lax.scan of a vmap, random actions), (b) whole EPG generations (ask, P x T lifetimes with their
learning updates and evaluation, tell) on the same B agents. Compile times are reported separately
(first generation of the preset's shapes). Headline: ``inner_loop_overhead <env>: <ratio>``.
Targets: >= 0.6 on RandomReacher and >= 0.8 on GoalAnt.

    python -m benchmarks.inner_loop_overhead --quick     # CPU sizes
    python -m benchmarks.inner_loop_overhead --full      # GPU/TPU sizes
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks.common import compile_jit, markdown_table, section_preamble, timed, write_section
from metarl import envs
from metarl.envs.core import repeat_task
from metarl.epg import EPG, EPGConfig
from metarl.inner.epg_lifetime import LifetimeConfig
from metarl.outer.es import ESConfig

QUICK = {"random_reacher": dict(P=16, T=2, lifetime=640, episode=50, eval_envs=2),
         "goal_ant": dict(P=8, T=1, lifetime=256, episode=100, eval_envs=1)}
FULL = {"random_reacher": dict(P=256, T=4, lifetime=8192, episode=50, eval_envs=4),
        "goal_ant": dict(P=64, T=4, lifetime=8192, episode=1000, eval_envs=4)}


def raw_steps_per_s(env, B, steps, repeats):
    task = env.sample_task(jax.random.PRNGKey(0), "train")
    tasks = repeat_task(task, B)
    state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(1), B), tasks)

    def run(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (B, env.action_size), minval=-1, maxval=1)
            return jax.vmap(env.step)(s, a), None

        return jax.lax.scan(body, state, jax.random.split(key, steps))[0].reward.sum()

    c_s, f = compile_jit(run, state, jax.random.PRNGKey(2))
    t, _ = timed(lambda: f(state, jax.random.PRNGKey(3)), repeats)
    return B * steps / t, c_s


def epg_steps_per_s(env, s, generations):
    cfg = EPGConfig(LifetimeConfig(lifetime_steps=s["lifetime"], eval_envs=s["eval_envs"]),
                    ESConfig(population_size=s["P"], generations=100), tasks_per_member=s["T"])
    epg = EPG(env, cfg)
    es, params, state, gen = epg.make_es(jax.random.PRNGKey(0))
    c_s, f = compile_jit(gen, state, jax.random.PRNGKey(1))
    out_state = jax.eval_shape(gen, state, jax.random.PRNGKey(1))[0]
    state = jax.tree_util.tree_map(lambda x, o: jnp.asarray(x, o.dtype), state, out_state)
    steps = s["P"] * s["T"] * (s["lifetime"] + s["eval_envs"] * env.episode_length)
    t0 = time.perf_counter()
    for g in range(generations):
        state, info = f(state, jax.random.PRNGKey(10 + g))
    jax.block_until_ready(info)
    dt = (time.perf_counter() - t0) / generations
    return steps / dt, dt, c_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--envs", default="random_reacher,goal_ant")
    ap.add_argument("--generations", type=int, default=3)
    args = ap.parse_args()
    sizes = FULL if args.full else QUICK
    rows, heads = [], []
    for name in args.envs.split(","):
        s = sizes[name]
        env = envs.make(name, episode_length=s["episode"])
        B = s["P"] * s["T"]
        raw, raw_c = raw_steps_per_s(env, B, steps=min(s["lifetime"], 500), repeats=3)
        epg_sps, gen_s, gen_c = epg_steps_per_s(env, s, args.generations)
        ratio = epg_sps / raw
        rows.append([name, env.backend, B, s["lifetime"], f"{raw:,.0f}", f"{epg_sps:,.0f}", f"{ratio:.2f}",
                     f"{gen_s:.2f}", f"{gen_c:.1f}", f"{raw_c:.1f}"])
        heads.append(f"inner_loop_overhead {name}: {ratio:.2f}")
        print(rows[-1], flush=True)
    table = markdown_table(["env", "backend", "agents (P x T)", "lifetime", "raw env steps/s",
                            "EPG env-steps/s", "EPG / raw", "generation (s)", "generation compile (s)",
                            "raw compile (s)"], rows)
    body = section_preamble("EPG inner-loop overhead (`inner_loop_overhead.py`)") + (
        f"- mode: {'full' if args.full else 'quick'}; EPG steps count lifetime and evaluation steps; "
        "raw = the same number of envs stepping with random actions in one lax.scan.\n"
        "- targets: EPG / raw >= 0.6 on random_reacher, >= 0.8 on goal_ant.\n\n" + table + "\n")
    write_section("inner_loop_overhead", body)
    for h in heads:
        print(h)


if __name__ == "__main__":
    main()
