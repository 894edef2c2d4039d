"""Scaling of one EPG generation: time vs population size, and vs device count.

Population sweep: population sizes P in {4, 8, 16, 32} (``tasks_per_member`` tasks each) on one
device, same lifetime; reports generation seconds and env-steps/s (compile excluded, reported
separately). Device sweep: the same generation on a population mesh over 1, 2 and 4 devices
(virtual CPU devices via --xla_force_host_platform_device_count on CPU: a correctness/overhead
check, not a speed-up, since they share the same cores; real devices on a GPU/TPU host). Headline:
``scaling <env>: ...``.

    python -m benchmarks.scaling --quick
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# pops: the population sweep; device_population: the population of the device sweep
QUICK = dict(env="random_reacher", lifetime=320, tasks_per_member=1, pops=(4, 8, 16, 32), devices=(1, 2, 4),
             device_population=16)
FULL = dict(env="goal_ant", lifetime=8192, tasks_per_member=4, pops=(16, 32, 64, 128), devices=(1, 2, 4, 8),
            device_population=64)


def generation_time(env_name, population, tasks_per_member, lifetime, n_devices, generations=3):
    import jax
    import jax.numpy as jnp

    from metarl import distributed, envs
    from metarl.algorithms.epg.algorithm import EPG, EPGConfig
    from metarl.inner.on_policy_agent import LifetimeConfig
    from metarl.outer.es import ESConfig

    env = envs.make(env_name)
    mesh = distributed.population_mesh(jax.devices()[:n_devices]) if n_devices > 1 else None
    cfg = EPGConfig(LifetimeConfig(lifetime_steps=lifetime, eval_envs=1),
                    ESConfig(population_size=population, generations=100),
                    tasks_per_member=tasks_per_member)
    epg = EPG(env, cfg, mesh=mesh)
    es, params, state, gen = epg.make_es(jax.random.PRNGKey(0))
    kw = {"out_shardings": distributed.replicated(mesh)} if mesh is not None else {}
    t = time.perf_counter()
    f = jax.jit(gen, **kw).lower(state, jax.random.PRNGKey(1)).compile()
    compile_s = time.perf_counter() - t
    out = jax.eval_shape(gen, state, jax.random.PRNGKey(1))[0]
    state = jax.tree_util.tree_map(lambda x, o: jnp.asarray(x, o.dtype), state, out)
    t = time.perf_counter()
    for g in range(generations):
        state, info = f(state, jax.random.PRNGKey(g))
    jax.block_until_ready(info)
    gen_s = (time.perf_counter() - t) / generations
    steps = population * tasks_per_member * (lifetime + env.episode_length)
    return {"population": population, "devices": n_devices, "gen_s": gen_s, "steps_per_s": steps / gen_s,
            "compile_s": compile_s}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    s = FULL if args.full else QUICK
    if args.child:  # device sweep runs in a child that sees several devices
        n = int(args.child)
        print(json.dumps(generation_time(s["env"], s["device_population"], s["tasks_per_member"],
                                         s["lifetime"], n)))
        return
    from benchmarks.common import markdown_table, section_preamble, write_section

    pop_rows = [generation_time(s["env"], population, s["tasks_per_member"], s["lifetime"], 1)
                for population in s["pops"]]
    for r in pop_rows:
        print(r, flush=True)
    dev_rows = []
    nmax = max(s["devices"])
    env = dict(os.environ)
    if not args.full:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={nmax}"
    for n in s["devices"]:
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--child", str(n)] + (["--full"] if args.full else [])
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(r.stderr[-2000:])
        dev_rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(dev_rows[-1], flush=True)
    base = pop_rows[0]
    t1 = markdown_table(["population", "generation (s)", "env-steps/s", "time / time(P=%d)" % base["population"],
                         "compile (s)"],
                        [[r["population"], f"{r['gen_s']:.2f}", f"{r['steps_per_s']:,.0f}",
                          f"{r['gen_s'] / base['gen_s']:.2f}", f"{r['compile_s']:.1f}"] for r in pop_rows])
    d0 = dev_rows[0]
    t2 = markdown_table(["devices", "generation (s)", "env-steps/s", "time / time(1 device)", "compile (s)"],
                        [[r["devices"], f"{r['gen_s']:.2f}", f"{r['steps_per_s']:,.0f}", f"{r['gen_s'] / d0['gen_s']:.2f}",
                          f"{r['compile_s']:.1f}"] for r in dev_rows])
    body = section_preamble("Scaling of an EPG generation (`scaling.py`)") + (
        f"- env {s['env']}, lifetime {s['lifetime']}, {s['tasks_per_member']} task(s) per member; devices: "
        f"{'real' if args.full else 'virtual CPU devices sharing the same 2 cores (overhead check)'}; "
        f"device sweep at population {s['device_population']}.\n\n" + t1 + "\n\n" + t2 + "\n")
    write_section("scaling", body)
    last = pop_rows[-1]
    print(f"scaling {s['env']}: P={last['population']} takes {last['gen_s'] / base['gen_s']:.2f}x the "
          f"time of P={base['population']}; {nmax} devices take "
          f"{dev_rows[-1]['gen_s'] / d0['gen_s']:.2f}x one device")


if __name__ == "__main__":
    main()
