"""Inner-loop overhead: meta-training env-steps/s over raw batched env.step steps/s.

For each environment, in one process: (a) raw env.step throughput of B = population x tasks envs
(one lax.scan of a vmap, random actions), (b) whole EPG generations (ask, P x T lifetimes with their
learning updates and evaluation, tell) on the same B agents, in each requested mode of the learned
loss's context gradient (``exact``: the paper's gradient through the buffer context, ``stop``:
``LifetimeConfig(context_gradient=False)``, the context computed once per update and held constant).
Then the same for the MetaGenRL population step: one meta-iteration (agents x steps_per_iteration
env steps with the TD3 updates and the meta-gradient, ``MetaTrainer.iteration``) against raw
env.step of the same number of envs. Compile times are reported separately. The modes are timed in
alternating rounds (best round kept) so that load from other jobs hits them alike.

Headlines: ``inner_loop_overhead <env>: <ratio>`` (EPG, exact context gradient),
``inner_loop_overhead <env> context=stop: <ratio>`` and ``inner_loop_overhead metagenrl <env>: <ratio>``.
Targets (EPG): >= 0.6 on RandomReacher and >= 0.8 on GoalAnt.

    python -m benchmarks.inner_loop_overhead --quick     # CPU sizes
    python -m benchmarks.inner_loop_overhead --full      # GPU/TPU sizes
"""
from __future__ import annotations

import argparse
import dataclasses
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
# MetaGenRL: QUICK follows experiments/metagenrl.py's ``cpu`` preset, FULL its ``paper`` sizes
# (one env group).
METAGENRL_QUICK = dict(td3=dict(hidden=(64, 64), random_steps=1_000, replay_size=20_000, batch_size=16,
                                polyak=0.99),
                       meta=dict(agents_per_env=4, steps_per_iteration=500, meta_batch=16,
                                 warm_start_steps=2_000))
METAGENRL_FULL = dict(td3=dict(), meta=dict(agents_per_env=10, steps_per_iteration=1_000, meta_batch=200,
                                            warm_start_steps=10_000))
MODES = {"exact": True, "stop": False}


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


def compiled_generation(env, s, context_gradient: bool):
    """(compile s, compiled generation, initial ES state, env steps per generation)."""
    life = LifetimeConfig(lifetime_steps=s["lifetime"], eval_envs=s["eval_envs"],
                          context_gradient=context_gradient)
    cfg = EPGConfig(life, ESConfig(population_size=s["P"], generations=100), tasks_per_member=s["T"])
    epg = EPG(env, cfg)
    es, params, state, gen = epg.make_es(jax.random.PRNGKey(0))
    c_s, f = compile_jit(gen, state, jax.random.PRNGKey(1))
    out_state = jax.eval_shape(gen, state, jax.random.PRNGKey(1))[0]
    state = jax.tree_util.tree_map(lambda x, o: jnp.asarray(x, o.dtype), state, out_state)
    steps = s["P"] * s["T"] * (s["lifetime"] + s["eval_envs"] * env.episode_length)
    return c_s, f, state, steps


def time_generations(f, state, generations: int, seed: int):
    """Mean seconds per generation over ``generations`` consecutive generations."""
    t0 = time.perf_counter()
    for g in range(generations):
        state, info = f(state, jax.random.PRNGKey(seed + g))
    jax.block_until_ready(info)
    return (time.perf_counter() - t0) / generations, state


def metagenrl_rows(name: str, sizes: dict, iterations: int, rounds: int, agents: int | None = None):
    """MetaGenRL meta-iteration env-steps/s vs raw env.step of the same number of envs.

    ``agents``: agents_per_env instead of the sizes' own (the population the step is vmapped over)."""
    from metarl.inner.td3 import TD3Config
    from metarl.outer.metagrad import MetaGenRLConfig, MetaTrainer

    env = envs.make(name)
    meta = dict(sizes["meta"], **({"agents_per_env": agents} if agents else {}))
    cfg = MetaGenRLConfig(td3=TD3Config(**sizes["td3"]), meta_iterations=max(iterations, 1),
                          **meta).validate()
    A, K = cfg.agents_per_env, cfg.steps_per_iteration
    raw, raw_c = raw_steps_per_s(env, A, steps=K, repeats=3)
    trainer = MetaTrainer([env], cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    c_s, f = compile_jit(trainer.iteration, state, donate_argnums=0)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(iterations):
            state, m = f(state)
        jax.block_until_ready(m)
        best = min(best, (time.perf_counter() - t0) / iterations)
    raw = max(raw, raw_steps_per_s(env, A, steps=K, repeats=3)[0])
    sps = A * K / best
    return dict(env=name, backend=env.backend, agents=A, steps=K, raw=raw, sps=sps, ratio=sps / raw,
                it_s=best, compile_s=c_s, raw_c=raw_c, cfg=cfg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--envs", default="random_reacher,goal_ant", help="EPG envs ('' for none)")
    ap.add_argument("--context-gradient", choices=("exact", "stop", "both"), default="both",
                    help="EPG learned-loss context gradient mode(s) to time (both: side by side)")
    ap.add_argument("--generations", type=int, default=3, help="EPG generations per timing round")
    ap.add_argument("--rounds", type=int, default=2, help="timing rounds per mode (best kept)")
    ap.add_argument("--metagenrl-env", default="random_reacher",
                    help="env of the MetaGenRL population step ('' to skip it)")
    ap.add_argument("--metagenrl-iterations", type=int, default=1, help="meta-iterations per round")
    ap.add_argument("--metagenrl-agents", default="",
                    help="comma-separated agent counts to measure (default: the preset's own)")
    args = ap.parse_args()
    sizes = FULL if args.full else QUICK
    modes = ["exact", "stop"] if args.context_gradient == "both" else [args.context_gradient]
    rows, heads = [], []
    for name in [n for n in args.envs.split(",") if n]:
        s = sizes[name]
        env = envs.make(name, episode_length=s["episode"])
        B = s["P"] * s["T"]
        raw, raw_c = raw_steps_per_s(env, B, steps=min(s["lifetime"], 500), repeats=3)
        progs = {m: compiled_generation(env, s, MODES[m]) for m in modes}
        best = {m: float("inf") for m in modes}
        states = {m: progs[m][2] for m in modes}
        for r in range(args.rounds):  # alternate the modes so that load hits them alike
            for m in modes:
                dt, states[m] = time_generations(progs[m][1], states[m], args.generations, 10 + 100 * r)
                best[m] = min(best[m], dt)
        raw = max(raw, raw_steps_per_s(env, B, steps=min(s["lifetime"], 500), repeats=3)[0])
        for m in modes:
            c_s, _, _, steps = progs[m]
            sps = steps / best[m]
            ratio = sps / raw
            rows.append([name, env.backend, m, B, s["lifetime"], f"{raw:,.0f}", f"{sps:,.0f}",
                         f"{ratio:.2f}", f"{best[m]:.2f}", f"{c_s:.1f}", f"{raw_c:.1f}"])
            heads.append(f"inner_loop_overhead {name}{'' if m == 'exact' else ' context=' + m}: {ratio:.2f}")
            print(rows[-1], flush=True)
    table = markdown_table(["env", "backend", "context gradient", "agents (P x T)", "lifetime",
                            "raw env steps/s", "EPG env-steps/s", "EPG / raw", "generation (s)",
                            "generation compile (s)", "raw compile (s)"], rows)
    body = section_preamble("Inner-loop overhead: EPG and MetaGenRL (`inner_loop_overhead.py`)") + (
        f"- mode: {'full' if args.full else 'quick'}; EPG steps count lifetime and evaluation steps; "
        "raw = the same number of envs stepping with random actions in one lax.scan. Timing: best of "
        f"{args.rounds} rounds of {args.generations} generations per mode, modes alternated; raw: best of "
        "6 runs (3 before, 3 after).\n"
        "- context gradient: `exact` = the paper's loss (policy forward/backward on all N = 512 buffer "
        "rows every minibatch step); `stop` = `--no-context-gradient` (context once per update, "
        "held constant; policy forward/backward on the B = 32 minibatch rows).\n"
        "- targets: EPG / raw >= 0.6 on random_reacher, >= 0.8 on goal_ant.\n\n" + table + "\n")
    if args.metagenrl_env:
        sizes_m = METAGENRL_FULL if args.full else METAGENRL_QUICK
        counts = [int(a) for a in args.metagenrl_agents.split(",") if a] or [None]
        mrows = []
        for agents in counts:
            mg = metagenrl_rows(args.metagenrl_env, sizes_m, args.metagenrl_iterations, args.rounds, agents)
            mrows.append([mg["env"], mg["backend"], mg["agents"], mg["steps"], f"{mg['raw']:,.0f}",
                          f"{mg['sps']:,.0f}", f"{mg['ratio']:.3f}", f"{mg['it_s']:.2f}",
                          f"{mg['compile_s']:.1f}", f"{mg['raw_c']:.1f}"])
            print(mrows[-1], flush=True)
            heads.append(f"inner_loop_overhead metagenrl {mg['env']} agents={mg['agents']}: {mg['ratio']:.3f}")
        cfg = mg["cfg"]
        td3 = {k: v for k, v in dataclasses.asdict(cfg.td3).items() if k in
               ("hidden", "replay_size", "batch_size", "seq_len", "policy_delay")}
        body += (
            "\nMetaGenRL population step (`MetaTrainer.iteration`, one jitted meta-iteration: per agent "
            "K env steps with a critic update each, and every policy_delay steps a meta-gradient and a "
            "policy update; then the objective's Adam step). Settings: "
            f"td3 {td3}, agents {', '.join(str(r[2]) for r in mrows)}, K = {cfg.steps_per_iteration}, meta_batch "
            f"{cfg.meta_batch}; timing: best of {args.rounds} rounds of {args.metagenrl_iterations} "
            "meta-iteration(s); raw = the same number of envs, K steps in one lax.scan, best of 6.\n\n"
            + markdown_table(["env", "backend", "agents", "K (steps / iteration)", "raw env steps/s",
                              "MetaGenRL env-steps/s", "MetaGenRL / raw", "iteration (s)",
                              "iteration compile (s)", "raw compile (s)"], mrows) + "\n")
    write_section("inner_loop_overhead", body)
    for h in heads:
        print(h)


if __name__ == "__main__":
    main()
