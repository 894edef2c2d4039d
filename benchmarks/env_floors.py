"""Zero-action floors and env speed per body and brax backend: what standing still pays.

For each body MetaGenRL's presets use (experiments/metagenrl.py) and each brax backend, one compiled
program rolls ``--episodes`` envs (a ``jax.vmap``) for the registry's whole horizon with the zero
action (``metarl.envs.make(name, backend)``: brax's own reward, early termination as the registry
sets it, auto-resets included) and reports the first episode of every env: its return and its steps
alive (the step it terminated on, or the horizon). The same compiled program, timed after its
compile (best of ``--repeats``), gives the env steps/s of a jit'd batched rollout; every figure of a
run is measured side by side in one process.

Why: brax's hopper pays +1 per step for staying healthy. On the default (spring) physics a passive
hopper stays healthy for the whole horizon and collects ~1000, more than most learners reach;
on ``generalized`` it falls early, as MuJoCo's Hopper does, and doing nothing stops paying.

    python -m benchmarks.env_floors --quick                     # CPU: 16 episodes, best of 1
    python -m benchmarks.env_floors                             # 64 episodes, best of 2
    python -m benchmarks.env_floors --quick --envs hopper --backends spring,generalized
    python -m benchmarks.env_floors --quick --envs walker2d --merge   # add rows to the last run's

mjx is skipped on a CPU-only machine (MuJoCo XLA compiles for minutes there and is not a backend
any preset would use on a CPU); ``--backends mjx`` forces it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import metarl.envs as menvs

try:
    from benchmarks import common
except ImportError:  # run as a plain script from benchmarks/
    import common  # type: ignore

SECTION = "env_floors"
RAW_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "env_floors.json")


def metagenrl_bodies() -> list[str]:
    """The envs of MetaGenRL's cpu and paper presets (meta-training first, then meta-test); the
    smoke preset's random_reacher (a pipeline check on reacher's physics) is left out."""
    from experiments.metagenrl import PRESETS

    out = []
    for p in ("cpu", "paper"):
        for text in (PRESETS[p].train_envs, PRESETS[p].test_envs):
            out += [n for n in text.split(",") if n not in out]
    return out


def make_floor_rollout(env, num_steps: int):
    """rollout(state) -> (first-episode return (n,), steps alive (n,), terminated (n,)): the zero
    action for ``num_steps`` batched, auto-resetting steps; only each env's first episode counts."""
    zero = jnp.zeros((env.action_size,))

    def rollout(state):
        n = state.reward.shape[0]

        def body(carry, _):
            state, ret, alive, ended, term = carry
            state = jax.vmap(env.step)(state, jnp.broadcast_to(zero, (n, env.action_size)))
            live = 1.0 - ended
            ret = ret + live * state.reward
            alive = alive + live
            term = jnp.maximum(term, live * state.done * (1.0 - state.truncated))
            ended = jnp.maximum(ended, state.done)
            return (state, ret, alive, ended, term), None

        z = jnp.zeros((n,))
        (_, ret, alive, _, term), _ = jax.lax.scan(body, (state, z, z, z, z), None, length=num_steps)
        return ret, alive, term

    return rollout


def measure(name: str, backend: str, episodes: int, repeats: int, seed: int = 0) -> dict:
    env = menvs.make(name, backend=backend)
    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    tasks = jax.vmap(lambda k: env.sample_task(jax.random.fold_in(k, 1), "test"))(keys)
    state = common.block(jax.jit(jax.vmap(env.reset))(keys, tasks))
    T = env.episode_length
    compile_s, rollout = common.compile_jit(make_floor_rollout(env, T), state)
    run_s, (ret, alive, term) = common.timed(lambda: rollout(state), repeats=repeats)
    ret, alive, term = (np.asarray(x, np.float64) for x in (ret, alive, term))
    return dict(episode_length=T, episodes=episodes, repeats=repeats, return_mean=float(ret.mean()),
                return_min=float(ret.min()), return_max=float(ret.max()), alive_mean=float(alive.mean()),
                alive_min=float(alive.min()), alive_max=float(alive.max()),
                terminated=float(term.mean()), compile_s=compile_s, run_s=run_s,
                steps_per_s=episodes * T / run_s,
                default=menvs.default_backend(name) == backend,
                date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="16 episodes, best of 1 (CPU)")
    p.add_argument("--envs", help="comma-separated subset of " + ",".join(menvs.ENV_NAMES)
                   + " (default: MetaGenRL's presets' bodies)")
    p.add_argument("--backends", help="comma-separated subset of " + ",".join(menvs.BACKENDS))
    p.add_argument("--episodes", type=int, help="envs per (body, backend): episodes of the floor and "
                                                "the batch of the timing (overrides the mode's)")
    p.add_argument("--repeats", type=int, help="timed runs per config; best is kept")
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: rewrite the RESULTS.md section from benchmarks/env_floors.json")
    p.add_argument("--note", default=None, help="a line added to the RESULTS.md section (how it was run)")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of earlier runs in benchmarks/env_floors.json (same body and "
                        "backend replaced) instead of replacing them")
    args = p.parse_args(argv)
    episodes = args.episodes or (16 if args.quick else 64)
    repeats = args.repeats or (1 if args.quick else 2)
    bodies = common.parse_list(args.envs, menvs.ENV_NAMES, "environments") or metagenrl_bodies()
    on_cpu = jax.default_backend() == "cpu"
    backends = common.parse_list(args.backends, menvs.BACKENDS, "backends") or [
        b for b in menvs.BACKENDS if not (on_cpu and b == "mjx")]

    print(common.machine_description())
    print(f"episodes={episodes} repeats={repeats} bodies={bodies} backends={backends}", flush=True)
    results, failures = {}, []
    old = {}
    if args.merge and os.path.exists(RAW_PATH):
        with open(RAW_PATH) as f:
            old = {(d["env"], d["backend"]): d for d in json.load(f)}

    def save():  # after every row: a run stopped part way keeps what it measured (for --merge)
        if not args.no_write:
            rows = {**old, **{k: dict(r, env=k[0], backend=k[1]) for k, r in results.items()}}
            with open(RAW_PATH, "w") as f:
                json.dump(list(rows.values()), f, indent=1)

    t_start = time.perf_counter()
    if args.report_only:
        bodies, args.merge = [], True
    for name in bodies:
        for backend in backends:
            try:
                r = measure(name, backend, episodes, repeats)
            except Exception as e:  # e.g. mjx without mujoco: report, keep going
                msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                failures.append((name, backend, msg))
                print(f"{name:26s} {backend:11s} FAILED {msg}", flush=True)
                continue
            results[(name, backend)] = r
            save()
            print(f"{name:26s} {backend:11s} return {r['return_mean']:9.2f} alive {r['alive_mean']:7.1f}"
                  f"/{r['episode_length']} terminated {r['terminated']:.2f} {r['steps_per_s']:9,.0f} "
                  f"steps/s compile {r['compile_s']:5.1f}s", flush=True)
            jax.clear_caches()
    total_s = time.perf_counter() - t_start
    if args.merge:
        results = {**old, **results}

    skipped = ["mjx"] if on_cpu and not any(k[1] == "mjx" for k in results) else []
    order = {b: i for i, b in enumerate(menvs.BACKENDS)}
    names = [n for n in menvs.ENV_NAMES if any(k[0] == n for k in results)]
    rows = []
    for key in sorted(results, key=lambda k: (names.index(k[0]), order[k[1]])):
        r = results[key]
        fastest = max(v["steps_per_s"] for k, v in results.items() if k[0] == key[0])
        rows.append([key[0], key[1] + (" (default)" if r["default"] else ""),
                     f"{r['return_mean']:.1f} [{r['return_min']:.1f}, {r['return_max']:.1f}]",
                     f"{r['alive_mean']:.0f} [{r['alive_min']:.0f}, {r['alive_max']:.0f}] / {r['episode_length']}",
                     f"{r['terminated']:.2f}", f"{r['steps_per_s']:,.0f}",
                     f"{fastest / r['steps_per_s']:.1f}x", f"{r['compile_s']:.0f}",
                     f"{r['episodes']} / {r['repeats']}"])
    table = common.markdown_table(
        ["body", "backend", "zero-action return, mean [min, max]", "steps alive, mean [min, max] / horizon",
         "terminated", "env steps/s", "slower than the fastest", "compile s", "episodes / best of"], rows)
    print("\n" + table)
    for f in failures:
        print("failed:", *f)
    if not args.no_write and results:
        body = (common.section_preamble("Zero-action floors per body and backend (`env_floors.py`)")
                + "- settings: the zero action for the registry's whole horizon, one env per episode "
                  "(test-split tasks, random initial states), first episode of each env; brax's own "
                  "reward, early termination as `metarl.envs.make` sets it; env steps/s: the same "
                  "compiled, vmapped, auto-resetting rollout timed after its compile (best of the "
                  f"runs shown); compile s: lower + compile of that rollout (a program found in a persistent XLA cache, "
                  f"`JAX_COMPILATION_CACHE_DIR`, shows its load time); this run's wall {total_s:.0f} s"
                + (" (merged with earlier runs' rows: benchmarks/env_floors.json has each row's date)"
                   if args.merge else "") + "\n"
                + (f"- note: {args.note}\n" if args.note else "")
                + (f"- skipped: {', '.join(skipped)} (no accelerator: MuJoCo XLA on a CPU is not a backend "
                   "any preset uses there; `--backends mjx` forces it)\n" if skipped else "")
                + "\n" + table + "\n")
        if failures:
            body += "\nFailed: " + "; ".join(f"{a}/{b}: {c}" for a, b, c in failures) + "\n"
        common.write_section(SECTION, body)
    hop = [(k[1], v["return_mean"]) for k, v in results.items() if k[0] == "hopper"]
    print("env_floors hopper zero-action return: " + (", ".join(f"{b} {v:.1f}" for b, v in hop) or "n/a"))


if __name__ == "__main__":
    main()
