"""Raw batched environment throughput: env.step steps/s per task family, backend and batch size.

One ``jax.lax.scan`` over steps of a ``jax.vmap`` over environments, random uniform actions in
[-1, 1], auto-resets included (``TaskFamily.step``). Each (family, backend, batch) program is
compiled ahead of the timing (``jit(...).lower(...).compile()``): compile time is reported on its own
and excluded from steps/s. Throughput is the best of ``--repeats`` runs of the compiled program.

These figures choose the default backend per environment in ``metarl/envs/__init__.py``.

    python -m benchmarks.env_throughput --quick                 # CPU: 128 and 512 envs, 100 steps
    python -m benchmarks.env_throughput --full                  # GPU/TPU: up to 4096 envs, 1000 steps
    python -m benchmarks.env_throughput --quick --envs reacher,ant --backends spring,positional

The last line printed is the headline: the fastest (family, backend) at the largest batch size.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import jax
import jax.numpy as jnp

import metarl.envs as menvs

try:
    from benchmarks import common
except ImportError:  # run as a plain script from benchmarks/
    import common  # type: ignore

SECTION = "env_throughput"
# Raw rows of the last run(s), so that --merge can add configurations run separately.
RAW_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "env_throughput.json")


def make_rollout(env, num_steps: int):
    """rollout(state, key) -> (final state, summed reward): num_steps batched steps in one scan."""
    act_dim = env.action_size

    def rollout(state, key):
        def body(carry, k):
            state, total = carry
            n = state.reward.shape[0]
            action = jax.random.uniform(k, (n, act_dim), minval=-1.0, maxval=1.0)
            state = jax.vmap(env.step)(state, action)
            return (state, total + state.reward.sum()), None

        (state, total), _ = jax.lax.scan(body, (state, jnp.zeros(())),
                                         jax.random.split(key, num_steps))
        return state, total

    return rollout


def prepare(name: str, backend: str, seed: int = 0):
    """Builds the env and one reset state (compiled once per family and backend, not per batch)."""
    env = menvs.make(name, backend=backend)
    k_task, k_reset = jax.random.split(jax.random.PRNGKey(seed))
    task = env.sample_task(k_task, "train")
    state = common.block(jax.jit(env.reset)(k_reset, task))
    return env, state


def batched_state(env, state, num_envs: int, seed: int = 0):
    """num_envs copies of one reset state, each with its own task (the random actions diverge them)."""
    tasks = jax.vmap(lambda k: env.sample_task(k, "train"))(
        jax.random.split(jax.random.PRNGKey(seed + 1), num_envs))
    tiled = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_envs, *jnp.shape(x))), state)
    return common.block(jax.tree_util.tree_map(jnp.array, tiled.replace(task=tasks)))


def measure(env, state, num_envs: int, num_steps: int, repeats: int, seed: int = 0):
    """Returns dict(compile_s, run_s, steps_per_s) for one configuration."""
    state = batched_state(env, state, num_envs, seed)
    k_roll = jax.random.PRNGKey(seed + 2)
    compile_s, rollout = common.compile_jit(make_rollout(env, num_steps), state, k_roll)
    run_s, (_, total) = common.timed(lambda: rollout(state, k_roll), repeats=repeats)
    if not bool(jnp.isfinite(total)):
        print(f"  warning: non-finite reward sum for {env.name}/{env.backend}/{num_envs}")
    return dict(compile_s=compile_s, run_s=run_s, steps_per_s=num_envs * num_steps / run_s)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU sizes (default)")
    mode.add_argument("--full", action="store_true", help="GPU/TPU sizes")
    p.add_argument("--envs", help="comma-separated subset of " + ",".join(menvs.ENV_NAMES))
    p.add_argument("--backends", help="comma-separated subset of " + ",".join(menvs.BACKENDS))
    p.add_argument("--batch-sizes", help="comma-separated ints (overrides the mode's sizes)")
    p.add_argument("--steps", type=int, help="scan steps per rollout (overrides the mode's)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per config; best is kept")
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    p.add_argument("--merge", action="store_true",
                   help="merge with the rows of earlier runs in benchmarks/env_throughput.json "
                        "(same family/backend/envs replaced) instead of replacing them")
    args = p.parse_args(argv)

    full = args.full
    batch_sizes = [128, 512, 1024, 4096] if full else [128, 512]
    num_steps = 1000 if full else 100
    if args.batch_sizes:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.steps:
        num_steps = args.steps
    envs = common.parse_list(args.envs, menvs.ENV_NAMES, "environments") or list(menvs.ENV_NAMES)
    on_cpu = jax.default_backend() == "cpu"
    default_backends = [b for b in menvs.BACKENDS if not (on_cpu and b == "mjx")]
    backends = common.parse_list(args.backends, menvs.BACKENDS, "backends") or default_backends

    print(common.machine_description())
    print(f"mode={'full' if full else 'quick'} steps={num_steps} batch_sizes={batch_sizes} "
          f"repeats={args.repeats}")
    rows, results, failures = [], {}, []
    t_start = time.perf_counter()
    for name in envs:
        for backend in backends:
            try:
                env, state0 = prepare(name, backend)
            except Exception as e:  # e.g. mjx without mujoco: report, keep going
                msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                failures.append((name, backend, "-", msg))
                print(f"{name:16s} {backend:11s}  FAILED {msg}", flush=True)
                continue
            for n in batch_sizes:
                try:
                    r = measure(env, state0, n, num_steps, args.repeats)
                except Exception as e:  # e.g. mjx without mujoco: report, keep going
                    msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    failures.append((name, backend, n, msg))
                    print(f"{name:16s} {backend:11s} {n:5d}  FAILED {msg}", flush=True)
                    continue
                r.update(steps=num_steps, repeats=args.repeats,
                         date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
                results[(name, backend, n)] = r
                print(f"{name:16s} {backend:11s} {n:5d}  {r['steps_per_s']:10.0f} steps/s  "
                      f"run {r['run_s']:6.2f}s  compile {r['compile_s']:6.1f}s", flush=True)
            jax.clear_caches()
    total_s = time.perf_counter() - t_start
    if args.merge and os.path.exists(RAW_PATH):
        with open(RAW_PATH) as f:
            old = {(d["env"], d["backend"], d["envs"]): d for d in json.load(f)}
        old.update({k: dict(r, env=k[0], backend=k[1], envs=k[2]) for k, r in results.items()})
        results = {k: v for k, v in old.items()}
        envs = [e for e in menvs.ENV_NAMES if any(k[0] == e for k in results)]
    if not args.no_write and results:
        with open(RAW_PATH, "w") as f:
            json.dump([dict(r, env=k[0], backend=k[1], envs=k[2]) for k, r in results.items()], f,
                      indent=1)
    order = {b: i for i, b in enumerate(menvs.BACKENDS)}
    for (name, backend, n) in sorted(results, key=lambda k: (menvs.ENV_NAMES.index(k[0]),
                                                             order[k[1]], k[2])):
        r = results[(name, backend, n)]
        rows.append([name, backend, n, f"{r['steps_per_s']:,.0f}", f"{r['compile_s']:.1f}",
                     r.get("steps", "?"), r.get("repeats", "?")])

    # Fastest backend per family at each family's largest measured batch size.
    fastest = []
    for name in envs:
        measured = [(b, n) for (e, b, n) in results if e == name]
        if not measured:
            continue
        n_max = max(n for _, n in measured)
        cands = {b: results[(name, b, n_max)]["steps_per_s"] for b, n in measured if n == n_max}
        best = max(cands, key=cands.get)
        others = ", ".join(f"{b} {cands[best] / v:.1f}x" for b, v in sorted(cands.items()) if b != best)
        fastest.append([name, n_max, best, f"{cands[best]:,.0f}", others or "-",
                        menvs.default_backend(name)])

    table = common.markdown_table(
        ["family", "backend", "envs", "steps/s", "compile s", "scan steps", "best of"], rows)
    fast_table = common.markdown_table(
        ["family", "envs", "fastest backend", "steps/s", "speed-up over the others",
         "current default"], fastest)
    print("\n" + table + "\n\nFastest backend per family (largest batch):\n" + fast_table)
    for f in failures:
        print("failed:", *f)

    headline = "env_throughput: no configuration measured"
    if results:
        n_max = max(n for (_, _, n) in results)
        (e, b, n), r = max(((k, v) for k, v in results.items() if k[2] == n_max),
                           key=lambda kv: kv[1]["steps_per_s"])
        headline = f"env_throughput {e} {b} {n}: {r['steps_per_s']:.0f} steps/s"

    if not args.no_write and results:
        body = (common.section_preamble("Environment throughput (`env_throughput.py`)")
                + f"- settings: scan steps per rollout and runs (best kept) per row below, random "
                  f"actions, one reset state tiled over the batch with per-env tasks; compile time "
                  f"(lower + compile of one rollout) excluded from steps/s; this run's wall "
                  f"{total_s:.0f} s" + (" (merged with earlier runs' rows, see "
                  "benchmarks/env_throughput.json for each row's date)" if args.merge else "")
                + "\n\n"
                + table + "\n\nFastest backend per family at the largest batch size:\n\n"
                + fast_table + "\n")
        if failures:
            body += "\nFailed: " + "; ".join(f"{a}/{b}/{c}: {d}" for a, b, c, d in failures) + "\n"
        common.write_section(SECTION, body)
    print(headline)


if __name__ == "__main__":
    main()
