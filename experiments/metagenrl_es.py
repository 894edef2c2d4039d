"""``python -m experiments.metagenrl --outer es``: ES evolves the objective alpha over TD3 lifetimes
(metarl/algorithms/metagenrl_es.py), then the same meta-test as ``--outer metagrad``. Not a CLI of
its own: ``experiments.metagenrl.main`` parses and validates the flags and calls ``run_es``.

Checkpoints (every --checkpoint-every generations, orbax, ``metarl.checkpoint.RunCheckpointer``): the
ES state, the RNG key, the generation and the fitness history; ``--resume`` continues from them.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from metarl import envs
from metarl.algorithms.metagenrl_es import MetaGenRLES
from metarl.baselines.ppo import PPOConfig
from metarl.checkpoint import RunCheckpointer, save_params
from metarl.meta_test_io import write_meta_test
from metarl.metagenrl_eval import meta_test, meta_test_summary, results_table
from metarl.metrics_log import MetricsLog
from metarl.outer.es import compile_generation
from metarl.runs import RUN_FORMAT, device_info, prepare_run_dir, run_argv, write_json_atomic


def init_run_state(es_state, key, generations: int, n_envs: int) -> dict:
    """The whole resumable state of an ES run (a pytree of host arrays)."""
    return {"es_state": es_state, "key": key, "generation": np.int32(0),
            "fitness_mean": np.full(generations, np.nan, np.float32),
            "fitness_max": np.full(generations, np.nan, np.float32),
            "returns": np.full((generations, n_envs), np.nan, np.float32),
            "gen_s": np.full(generations, np.nan, np.float32)}


def run_es(args, argv, preset, why, P, cfg, train_names, test_names, methods, run_dir, mesh, writer) -> int:
    G, Pop, A, E = cfg.es.generations, cfg.es.population_size, cfg.agents_per_member, len(train_names)
    print(f"[metagenrl-es] preset={preset} ({why}); train {','.join(train_names)} -> test "
          f"{','.join(test_names)}; population {Pop} x {A} agent(s) x {E} env(s), lifetimes of "
          f"{cfg.lifetime_steps} steps, {G} generations; devices={jax.device_count()} "
          f"({jax.default_backend()}); run dir {run_dir}{' (resuming)' if args.resume else ''}", flush=True)
    if writer and not args.resume:
        prepare_run_dir(run_dir, args.overwrite)
        write_json_atomic(run_dir / "config.json", {
            "experiment": "metagenrl", "outer": "es", "run_format": RUN_FORMAT, "train_envs": train_names,
            "test_envs": test_names, "preset": preset, "seed": args.seed, "methods": list(methods),
            "argv": run_argv(argv), "config": dataclasses.asdict(cfg)})
    t_start = time.time()

    algo = MetaGenRLES([envs.make(n) for n in train_names], cfg,
                       mesh=mesh if jax.device_count() > 1 else None)
    k_es, k_run = jax.random.split(jax.random.PRNGKey(args.seed))
    es, es_params, es_state, generation = algo.make_es(k_es)
    alpha0 = jax.device_get(es.get_mean(es_state))
    t0 = time.time()
    compiled, compile_s, es_state = compile_generation(generation, es_state, k_run, algo.mesh)
    print(f"[metagenrl-es] compiled one generation in {compile_s:.1f}s", flush=True)
    run = jax.device_get(init_run_state(es_state, k_run, G, E))
    ckpt = RunCheckpointer(run_dir / "checkpoints", every=args.checkpoint_every, is_writer=writer)
    if args.resume:
        run = ckpt.resume(run, "generation", "metagenrl-es")
    start = int(run["generation"])
    steps_per_gen = Pop * A * E * cfg.lifetime_steps
    log = MetricsLog(run_dir, start + 1, enabled=writer, step_key="generation")
    t_loop = time.time()
    for g in range(start, G):
        k_run, k = jax.random.split(run["key"])
        t0 = time.time()
        es_state, info = compiled(run["es_state"], k)
        info = jax.device_get(info)
        dt = time.time() - t0
        raw = np.asarray(info["fitness_aux"])  # (population, envs) mean final returns
        env_mean = np.array([np.nanmean(c) if np.isfinite(c).any() else np.nan for c in raw.T])
        run = dict(run, es_state=jax.device_get(es_state), key=jax.device_get(k_run), generation=np.int32(g + 1))
        for k_, v in (("fitness_mean", info["mean"]), ("fitness_max", info["max"]), ("returns", env_mean),
                      ("gen_s", dt)):
            run[k_] = run[k_].copy()
            run[k_][g] = v
        fin = lambda x: float(x) if np.isfinite(x) else None
        log.write({"generation": g + 1, "fitness_mean": fin(info["mean"]), "fitness_max": fin(info["max"]),
                   "fitness_min": fin(info["min"]), "nonfinite": int(info["nonfinite"]),
                   "return": dict(zip(train_names, [fin(x) for x in env_mean])),
                   "return_max": dict(zip(train_names, [fin(np.nanmax(c)) if np.isfinite(c).any() else None
                                                        for c in raw.T])),
                   "gen_s": dt, "env_steps_per_s": steps_per_gen / dt})
        eta = (time.time() - t_loop) / (g + 1 - start) * (G - g - 1)
        print(f"[metagenrl-es] gen {g + 1}/{G} fitness mean {float(info['mean']):.3f} max "
              f"{float(info['max']):.3f} nonfinite={int(info['nonfinite'])} member return "
              + " ".join(f"{n}={r:.2f}" for n, r in zip(train_names, env_mean))
              + f" {steps_per_gen / dt:,.0f} env-steps/s ETA {eta:.0f}s", flush=True)
        ckpt.maybe_save(g + 1, run, force=(g + 1 == G))
    log.close()
    ckpt.close()
    alpha = jax.device_get(es.get_mean(run["es_state"]))
    if writer:
        save_params(run_dir / "objective", alpha)
    meta_train_s = time.time() - t_start

    T = P["test"]
    results = meta_test(test_names, alpha, alpha0, algo.objective, cfg.td3, T["total_steps"], T["num_chunks"],
                        T["num_seeds"], args.seed, ppo_config=PPOConfig(**P["ppo"]), methods=methods,
                        eval_envs=T["eval_envs"])
    history = [{"generation": g + 1, "fitness_mean": float(run["fitness_mean"][g]),
                "fitness_max": float(run["fitness_max"][g]),
                "return": dict(zip(train_names, run["returns"][g].tolist()))} for g in range(G)]
    summary = {
        "algorithm": "metagenrl", "outer": "es",
        "env": f"train:{','.join(train_names)} test:{','.join(test_names)}",
        "train_envs": train_names, "test_envs": test_names, "preset": preset, "seed": args.seed,
        "outer_steps": G, "generations": G, "population_size": Pop, "agents_per_member": A,
        "lifetime_steps": cfg.lifetime_steps, "env_steps": G * steps_per_gen,
        "fitness": "mean over meta-training envs of each env's final deployed-policy return, "
                   + ("z-scored over the population per env" if cfg.standardise else "raw"),
        "compile_s": compile_s, "meta_train_wall_s": meta_train_s, "wall_s": time.time() - t_start,
        "resumed_from": start if args.resume else None,
        "devices": device_info(), "processes": jax.process_count(),
        "config": {"es": dataclasses.asdict(cfg), "test": T},
        "meta_train_history": history,
        "meta_test": meta_test_summary(results, train_names, test_names, T, methods),
    }
    if writer:
        write_meta_test(run_dir, results, f"MetaGenRL objective evolved by ES (meta-trained on "
                        f"{', '.join(train_names)})", seen=train_names)
        write_json_atomic(run_dir / "summary.json", summary)
    print(results_table(results, seen=train_names), flush=True)
    print(f"{'wrote ' + str(run_dir) + '/summary.json' if writer else 'process 0 writes the outputs'} "
          f"({summary['wall_s']:.0f}s)", flush=True)
    return 0
