"""The Python steps of ``benchmarks/device_run.sh``: one accelerator session's measurements.

Each step writes ``OUT/<step>.json`` after every measurement (``"complete": false`` until it ends),
so a step killed by the script's time limit still leaves what it measured. ``--budget S``: start no
further optional measurement (a repeat generation or iteration, a throughput configuration) once S
seconds of the step have passed. ``--check``: tiny sizes, to check the pipeline on a CPU in seconds.

    python -m benchmarks.device_steps --step setup --out DIR                # versions and devices
    python -m benchmarks.device_steps --step throughput --out DIR           # env.step steps/s
    python -m benchmarks.device_steps --step epg_generation --out DIR       # GoalAnt `paper` generation
    python -m benchmarks.device_steps --step metagenrl_iteration --out DIR  # MetaGenRL `paper` iteration
    python -m benchmarks.device_steps --step summary --out DIR              # headlines + RESULTS.md text

Sizes (``--check`` in brackets): throughput of goal_ant and random_hopper (default backends) at
2048 and 8192 envs, 1000 scan steps [16 envs, 10 steps]; one EPG generation of
experiments/epg_common.py's ``paper`` preset on GoalAnt, population 64 x 4 tasks, 8192-step lifetimes
[``smoke``], and raw env.step throughput of as many envs; one MetaGenRL meta-iteration of
experiments/metagenrl.py's ``paper`` preset, 10 agents on each of its meta-training bodies (reacher
and halfcheetah) [``smoke`` sizes on the first body alone, 50 steps].
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time

STEPS = ("setup", "throughput", "epg_generation", "metagenrl_iteration", "summary")
IMPORTS = ("jax", "brax", "evosax", "mujoco", "mujoco.mjx", "flax", "optax", "orbax.checkpoint",
           "chex", "tensorboardX", "metarl")
THROUGHPUT = {"full": dict(envs=("goal_ant", "random_hopper"), batch_sizes=(2048, 8192), steps=1000,
                           repeats=2),
              "check": dict(envs=("goal_ant", "random_hopper"), batch_sizes=(16,), steps=10, repeats=1)}
EPG_ENV, EPG_GOAL_S = "goal_ant", 60.0  # target: a paper generation within a minute
MAX_REPEATS = {"full": 3, "check": 2}  # generations / meta-iterations timed at most


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        print(f"device_steps: error: {message}", file=sys.stderr)
        raise SystemExit(2)


class Record:
    """The step's JSON file, rewritten atomically on each ``update``."""

    def __init__(self, out: str, step: str, check: bool):
        self.path = os.path.join(out, f"{step}.json")
        self.t0 = time.perf_counter()
        self.data = {"step": step, "check": check, "complete": False,
                     "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                     "command": "python -m benchmarks.device_steps " + " ".join(sys.argv[1:])}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def update(self, **kw) -> None:
        self.data.update(kw, wall_s=round(self.elapsed(), 2))
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        os.replace(tmp, self.path)


def log(msg: str) -> None:
    print(f"[device_steps] {msg}", flush=True)


def version(module: str) -> str:
    try:
        from importlib.metadata import version as dist_version
        return dist_version({"orbax.checkpoint": "orbax-checkpoint", "mujoco.mjx": "mujoco-mjx",
                             "tensorboardX": "tensorboardX"}.get(module, module))
    except Exception:
        return getattr(sys.modules.get(module), "__version__", "?")


def device_fields() -> dict:
    """Device, versions and host: the fields every step's JSON starts with."""
    import jax

    from benchmarks.common import cpu_model
    devs = jax.devices()
    return {"backend": jax.default_backend(), "device_count": len(devs),
            "device_kind": devs[0].device_kind, "jax": jax.__version__, "brax": version("brax"),
            "mujoco": version("mujoco"), "python": platform.python_version(),
            "host_cpu": f"{cpu_model()}, {os.cpu_count()} cores",
            # compile times are real compiles only without a persistent cache (cache hits otherwise)
            "compilation_cache": jax.config.jax_compilation_cache_dir or None,
            "xla_flags": os.environ.get("XLA_FLAGS") or None}


def peak_memory_gb():
    """Peak device memory in use so far (GB), where the backend reports it (GPUs), else None."""
    import jax
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return round(peak / 1e9, 2) if peak else None


# ---- steps ----------------------------------------------------------------------------------------

def step_setup(rec: Record, args) -> int:
    """Imports every package the steps need; prints versions and devices. 1 if any import fails,
    or (unless --check or DEVICE_RUN_ALLOW_CPU=1) if jax sees no accelerator."""
    versions, failed = {}, []
    for m in IMPORTS:
        try:
            importlib.import_module(m)
            versions[m] = version(m)
        except Exception as e:  # noqa: BLE001 - report every failure, then stop
            failed.append(f"{m} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    rec.update(versions=versions, failed_imports=failed)
    if failed:
        print("IMPORT FAILED: " + "; ".join(failed), flush=True)
        return 1
    fields = device_fields()
    import jax
    log(f"jax {fields['jax']} backend {fields['backend']}: {jax.devices()}")
    log("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if fields["backend"] == "cpu" and not args.check and os.environ.get("DEVICE_RUN_ALLOW_CPU") != "1":
        rec.update(**fields)
        print("NO ACCELERATOR: jax sees only the CPU; the full sizes would not fit the time limits "
              "(DEVICE_RUN_ALLOW_CPU=1 runs them anyway)", flush=True)
        return 1
    rec.update(**fields, devices=[str(d) for d in jax.devices()], complete=True)
    return 0


def step_throughput(rec: Record, args) -> int:
    """Raw batched env.step steps/s per (family, default backend, batch size); compile excluded."""
    import jax

    import metarl.envs as menvs
    from benchmarks.env_throughput import measure, prepare

    s = THROUGHPUT["check" if args.check else "full"]
    rows, skipped = [], []
    rec.update(**device_fields(), settings=s, rows=rows)
    for name in s["envs"]:
        backend = menvs.default_backend(name)
        env, state0 = prepare(name, backend)
        for n in s["batch_sizes"]:
            if args.budget and rec.elapsed() > args.budget:
                skipped.append(f"{name}/{n}: budget of {args.budget:.0f} s spent")
                log(f"skipped {skipped[-1]}")
                continue
            try:
                r = measure(env, state0, n, s["steps"], s["repeats"])
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: record, go on
                skipped.append(f"{name}/{n}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                log(f"FAILED {skipped[-1]}")
                continue
            rows.append(dict(env=name, backend=backend, envs=n, **{k: round(v, 3) for k, v in r.items()}))
            log(f"{name} {backend} {n} envs: {r['steps_per_s']:,.0f} steps/s "
                f"(compile {r['compile_s']:.1f} s)")
            rec.update(rows=rows, skipped=skipped, peak_memory_gb=peak_memory_gb())
        jax.clear_caches()
    rec.update(rows=rows, skipped=skipped, complete=not skipped)
    return 0 if rows else 1


def step_epg_generation(rec: Record, args) -> int:
    """Compile and steady seconds of one GoalAnt `paper` ES generation; EPG over raw env-steps/s."""
    import jax
    import jax.numpy as jnp

    from benchmarks.inner_loop_overhead import raw_steps_per_s
    from experiments.epg_common import locomotion_presets
    from metarl import envs
    from metarl.algorithms.epg.algorithm import EPG

    preset = "smoke" if args.check else "paper"
    p = locomotion_presets()[preset]
    cfg = p.epg
    env = envs.make(EPG_ENV, episode_length=p.episode_length)
    population, tasks_per_member = cfg.es.population_size, cfg.tasks_per_member
    lifetime_steps, eval_envs = cfg.lifetime.lifetime_steps, cfg.lifetime.eval_envs
    agents = population * tasks_per_member
    # lifetime + evaluation steps, as epg_common counts
    steps = agents * (lifetime_steps + eval_envs * env.episode_length)
    rec.update(**device_fields(), env=EPG_ENV, env_backend=env.backend, preset=preset,
               population=population, tasks_per_member=tasks_per_member, lifetime_steps=lifetime_steps,
               eval_envs=eval_envs, episode_length=env.episode_length,
               context_gradient=cfg.context_gradient, env_steps_per_generation=steps)
    log(f"EPG {EPG_ENV} preset {preset}: population {population} x {tasks_per_member} tasks, "
        f"lifetime {lifetime_steps}, {steps:,} env steps per generation")
    epg = EPG(env, cfg)
    _, _, state, gen = epg.make_es(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    t = time.perf_counter()
    lowered = jax.jit(gen).lower(state, key)
    trace_s = time.perf_counter() - t
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    rec.update(trace_s=round(trace_s, 2), compile_s=round(compile_s, 2))
    log(f"compiled one generation in {compile_s:.1f} s (trace {trace_s:.1f} s)")
    out = jax.eval_shape(gen, state, key)[0]  # the dtypes the generation returns: no re-trace later
    state = jax.tree_util.tree_map(lambda x, o: jnp.asarray(x, o.dtype), state, out)

    gen_s, raw = [], None
    for g in range(MAX_REPEATS["check" if args.check else "full"]):
        t = time.perf_counter()
        state, info = compiled(state, jax.random.PRNGKey(10 + g))
        info = jax.device_get(info)
        gen_s.append(round(time.perf_counter() - t, 3))
        steady = min(gen_s[1:] or gen_s)  # the first run may pay one-off allocation costs
        log(f"generation {g + 1}: {gen_s[-1]:.2f} s, {steps / gen_s[-1]:,.0f} env-steps/s, fitness "
            f"mean {float(info['mean']):.2f}, nonfinite {int(info['nonfinite'])}")
        fields = dict(generation_s=gen_s, steady_generation_s=steady,
                      steady_is_first_generation=len(gen_s) == 1, epg_env_steps_per_s=steps / steady,
                      goal_s=EPG_GOAL_S, goal_met=steady <= EPG_GOAL_S,
                      fitness_mean=float(info["mean"]), nonfinite=int(info["nonfinite"]),
                      peak_memory_gb=peak_memory_gb())
        if raw is None:  # raw env.step of as many envs, once the headline figure is safe
            raw_sps, raw_c = raw_steps_per_s(env, agents, steps=min(lifetime_steps, 1000), repeats=2)
            raw = dict(raw_env_steps_per_s=raw_sps, raw_envs=agents,
                       raw_scan_steps=min(lifetime_steps, 1000), raw_compile_s=round(raw_c, 2))
            log(f"raw env.step at {agents} envs: {raw_sps:,.0f} steps/s (compile {raw_c:.1f} s)")
        rec.update(**fields, **raw, epg_over_raw=fields["epg_env_steps_per_s"] / raw["raw_env_steps_per_s"])
        if args.budget and rec.elapsed() + gen_s[-1] > args.budget:
            break
    rec.update(complete=True)
    return 0


def step_metagenrl_iteration(rec: Record, args) -> int:
    """Seconds and agent env-steps/s of one MetaGenRL `paper` meta-iteration (compile apart)."""
    import jax

    import dataclasses

    from experiments.metagenrl import PRESETS
    from metarl import envs
    from metarl.algorithms.metagenrl.algorithm import make_trainer

    paper = PRESETS["paper"]
    cfg = (PRESETS["smoke"] if args.check else paper).metagrad
    cfg = (dataclasses.replace(cfg, steps_per_iteration=50) if args.check else cfg).validate()
    names = paper.train_envs.split(",")[:1 if args.check else None]  # check: one env group
    A, K = cfg.agents_per_env * len(names), cfg.steps_per_iteration
    rec.update(**device_fields(), preset="smoke" if args.check else "paper", envs=names,
               agents=A, steps_per_iteration=K, meta_batch=cfg.meta_batch,
               replay_size=cfg.td3.replay_size, hidden=list(cfg.td3.hidden))
    log(f"MetaGenRL on {','.join(names)}: {A} agents x {K} steps per meta-iteration")
    trainer = make_trainer([envs.make(n) for n in names], cfg)
    t = time.perf_counter()
    state = jax.block_until_ready(trainer.init(jax.random.PRNGKey(0)))  # replay buffers included
    rec.update(init_s=round(time.perf_counter() - t, 2), peak_memory_gb=peak_memory_gb())
    t = time.perf_counter()
    iteration = jax.jit(trainer.iteration, donate_argnums=0).lower(state).compile()
    compile_s = time.perf_counter() - t
    rec.update(compile_s=round(compile_s, 2))
    log(f"compiled one meta-iteration in {compile_s:.1f} s")
    it_s = []
    for i in range(MAX_REPEATS["check" if args.check else "full"]):
        t = time.perf_counter()
        state, m = iteration(state)
        m = jax.device_get(m)
        it_s.append(round(time.perf_counter() - t, 3))
        steady = min(it_s[1:] or it_s)
        log(f"meta-iteration {i + 1}: {it_s[-1]:.2f} s, {A * K / it_s[-1]:,.0f} agent-steps/s, "
            f"meta-loss {[round(float(x), 3) for x in m['meta_loss']]}")
        rec.update(iteration_s=it_s, steady_iteration_s=steady, agent_steps_per_s=A * K / steady,
                   steady_is_first_iteration=len(it_s) == 1,
                   meta_loss=[float(x) for x in m["meta_loss"]], peak_memory_gb=peak_memory_gb())
        if args.budget and rec.elapsed() + it_s[-1] > args.budget:
            break
    rec.update(complete=True)
    return 0


def step_summary(rec: Record, args) -> int:
    """Headline lines and a RESULTS.md-ready section from the other steps' JSON files."""
    def load(step):
        path = os.path.join(args.out, f"{step}.json")
        return json.load(open(path)) if os.path.exists(path) else None

    def memory(d):
        return f"; peak device memory {d['peak_memory_gb']} GB" if d.get("peak_memory_gb") else ""

    setup, thr, epg, mg = (load(s) for s in STEPS[:4])
    first = next((d for d in (thr, epg, mg, setup) if d and "device_kind" in d), {})
    kind = first.get("device_kind", "?")
    versions = (setup or {}).get("versions") or {k: first.get(k, "?") for k in ("jax", "brax", "mujoco")}
    title = ("`device_run.sh --check` (tiny sizes: a pipeline check, not a measurement)"
             if first.get("check") else f"Accelerator run on {kind} (`benchmarks/device_run.sh`)")
    lines = [f"## {title}", "",
             f"- device: {first.get('device_count', '?')} x {kind} (backend {first.get('backend', '?')}); "
             f"host {first.get('host_cpu', '?')}; python {first.get('python', '?')}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- date: {first.get('date', '?')}", ""]
    heads = []
    if thr and thr.get("rows"):
        lines += ["| family | backend | envs | steps/s | compile (s) |", "|---|---|---|---|---|"]
        lines += [f"| {r['env']} | {r['backend']} | {r['envs']} | {r['steps_per_s']:,.0f} | "
                  f"{r['compile_s']:.1f} |" for r in thr["rows"]]
        lines.append("")
        heads += [f"throughput {r['env']} {r['backend']} {r['envs']}: {r['steps_per_s']:,.0f} steps/s"
                  for r in thr["rows"]]
    if epg and "steady_generation_s" in epg:
        h = (f"epg_generation {epg['env']} {epg['preset']} (P={epg['population']} x T="
             f"{epg['tasks_per_member']}, lifetime {epg['lifetime_steps']}): compile "
             f"{epg['compile_s']:.1f} s, steady {epg['steady_generation_s']:.2f} s/generation "
             f"(goal <= {epg['goal_s']:.0f} s: {'met' if epg['goal_met'] else 'NOT met'}), "
             f"{epg['epg_env_steps_per_s']:,.0f} env-steps/s = {epg['epg_over_raw']:.2f} x raw "
             f"({epg['raw_env_steps_per_s']:,.0f} at {epg['raw_envs']} envs){memory(epg)}")
        heads.append(h)
        lines += ["- " + h, ""]
    if mg and "steady_iteration_s" in mg:
        h = (f"metagenrl_iteration {mg['preset']} ({mg['agents']} agents on {','.join(mg['envs'])}, "
             f"{mg['steps_per_iteration']} steps each): compile {mg['compile_s']:.1f} s, "
             f"{mg['steady_iteration_s']:.2f} s/iteration, {mg['agent_steps_per_s']:,.0f} "
             f"agent-steps/s{memory(mg)}")
        heads.append(h)
        lines += ["- " + h, ""]
    missing = [s for s, d in zip(STEPS[:4], (setup, thr, epg, mg)) if not d or not d.get("complete")]
    if missing:
        lines.append(f"- incomplete or missing: {', '.join(missing)} (see device_run.log)")
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for h in heads:
        print(h)
    print(f"summary: {len(heads)} headline(s); incomplete: {', '.join(missing) or 'none'}")
    return 0


def main(argv=None) -> int:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--step", required=True, choices=STEPS)
    ap.add_argument("--out", required=True, help="directory for <step>.json (created if missing)")
    ap.add_argument("--check", action="store_true", help="tiny sizes (a CPU pipeline check)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds after which no further optional measurement starts")
    args = ap.parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        ap.error(f"--budget must be positive, got {args.budget}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        ap.error(f"--out {args.out!r} is a file; expected a directory")
    os.makedirs(args.out, exist_ok=True)
    if args.step == "summary":
        return step_summary(None, args)
    rec = Record(args.out, args.step, args.check)
    return globals()[f"step_{args.step}"](rec, args)


if __name__ == "__main__":
    sys.exit(main())
