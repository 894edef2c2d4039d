"""MetaGenRL: meta-train one learned objective L_alpha over a TD3 population, then meta-test it.

python -m experiments.metagenrl --preset {smoke,cpu,paper} [--run-dir D] [--seed S]
       [--train-envs a,b] [--test-envs c,d] [--meta-iterations K] [--agents-per-env A]
       [--methods learned,initial_loss,td3,reinforce,ppo] [--checkpoint-every C] [--overwrite]
       [--outer {metagrad,es}] [--population P] [--generations G]
python -m experiments.metagenrl --resume --run-dir D        # continue a killed run

``--outer metagrad`` (the default) is MetaGenRL's second-order meta-gradient loop. ``--outer es`` is a
new combination: ES (evosax, as EPG) evolves the objective alpha over TD3 lifetimes of the
frozen-objective harness (metarl/algorithms/metagenrl_es.py; sizes in each preset's ``es``); the
meta-test is the same, learned = the ES mean at the end, initial_loss = alpha_0.

Writes <run-dir>/config.json, metrics.jsonl, tb/ (tensorboard), checkpoints/ (orbax: the whole
population state, replay buffers included, plus alpha, its optimiser, RNG and history), objective/
(the learned L_alpha, orbax), summary.json and meta_test.{json,csv,png} (metarl/meta_test_io.py).
Agents are split over all devices (``agents_per_env`` must be a multiple of the device count);
multi-host runs take --coordinator/--num-processes/--process-id as in the EPG experiments.

Environments follow the original's pattern (meta-train on LunarLanderContinuous + HalfCheetah, one
non-locomotion and one locomotion body; meta-test on Hopper, a body never seen). LunarLander is not
in brax; its closest brax task is reacher (2-D continuous action, a goal-directed control task, no
locomotion), so ``paper`` and ``cpu`` meta-train on reacher + halfcheetah (brax's own rewards) and
meta-test on unseen bodies first (hopper; ``paper`` adds walker2d and inverted_double_pendulum)
and then on the meta-training bodies. Every meta-test reports, per env, the learned objective, the
random-init objective, TD3, REINFORCE, PPO, the do-nothing floors (no-update, zero-action) and, on
locomotion bodies, each one's forward-progress return (metarl/metagenrl_eval.py).
"""
from __future__ import annotations

import dataclasses
import sys
import time

from metarl.runs import (ConfigError, check_run_dir, checked_population_mesh, common_parser,
                         device_info, fail, prepare_run_dir, resolve_preset, resume_args, run_argv,
                         RUN_FORMAT, finished_run,
                         write_json_atomic)

PRESETS = {
    # pipeline check only: tiny budgets, nothing is expected to learn
    "smoke": dict(train_envs="random_reacher", test_envs="random_reacher",
                  td3=dict(hidden=(32, 32), random_steps=200, replay_size=2_000, batch_size=8,
                           polyak=0.99),
                  meta=dict(agents_per_env=2, meta_iterations=2, steps_per_iteration=200,
                            meta_batch=8, warm_start_steps=200),
                  test=dict(total_steps=400, num_chunks=4, num_seeds=2, eval_envs=2),
                  ppo=dict(num_envs=4, unroll_length=50, num_minibatches=2, update_epochs=1),
                  es=dict(population_size=2, generations=1, lifetime_steps=400, num_chunks=1,
                          agents_per_member=1, eval_envs=2)),
    # A small version of ``paper`` for 2 CPU cores (estimate in benchmarks/RESULTS.md): meta-train
    # 2 agents on reacher + 2 on halfcheetah for 12 x 1000 steps each; meta-test 3 seeds per method
    # on hopper (unseen), reacher and halfcheetah (seen). Meta-test budget: 12,000 env steps per
    # agent, 12x its 1,000 random steps (TD3 then takes 11,000 learning steps).
    # Lookahead step 0.1, not the original's 2.0 (a deliberate deviation, tuned on seeds 0-2; see
    # RESULTS.md "metagenrl_seeds"): at 2.0 the meta-training halfcheetah agents fall to about -560
    # once the warm start ends and the hopper agents go backward; ``paper`` keeps 2.0.
    "cpu": dict(train_envs="reacher,halfcheetah", test_envs="hopper,reacher,halfcheetah",
                td3=dict(hidden=(64, 64), random_steps=1_000, replay_size=20_000, batch_size=16,
                         polyak=0.99),
                meta=dict(agents_per_env=2, meta_iterations=12, steps_per_iteration=1_000,
                          meta_batch=16, warm_start_steps=2_000, lookahead_step=0.1),
                test=dict(total_steps=12_000, num_chunks=12, num_seeds=3, eval_envs=4),
                ppo=dict(num_envs=8, unroll_length=50, num_minibatches=4, update_epochs=4,
                         learning_rate=1e-3),
                # --outer es: 8 members x 1 agent x 2 bodies x 3,000-step lifetimes (1,000 random
                # steps, then 2,000 learning steps under the member's L_alpha), 4 generations;
                # measured: 85 s compile + 67 s per generation on 2 shared CPU cores (716 env-steps/s)
                es=dict(population_size=8, generations=4, lifetime_steps=3_000, num_chunks=1,
                        agents_per_member=1, eval_envs=2)),
    # The original's sizes (Kirsch et al. 2020; louiskirsch/metagenrl): 10 agents per body, ~700k steps each, 350-350 networks,
    # replay 1M, batches of 100 x 20, 10k random steps. Meta-test budget: 1M env steps per agent
    # (100x its 10k random steps), 6 seeds, on 3 unseen bodies and the 2 meta-training bodies.
    "paper": dict(train_envs="reacher,halfcheetah",
                  test_envs="hopper,walker2d,inverted_double_pendulum,reacher,halfcheetah",
                  td3=dict(),
                  meta=dict(agents_per_env=10, meta_iterations=700, steps_per_iteration=1_000,
                            meta_batch=200, warm_start_steps=10_000),
                  test=dict(total_steps=1_000_000, num_chunks=100, num_seeds=6, eval_envs=8),
                  ppo=dict(num_envs=16, unroll_length=64, num_minibatches=4, update_epochs=4),
                  # --outer es: 64 members (as EPG's paper preset), 100k-step lifetimes; replay 100k
                  # (64 members x 2 bodies of 1M-step buffers would not fit one accelerator)
                  es=dict(population_size=64, generations=200, lifetime_steps=100_000, num_chunks=10,
                          agents_per_member=1, eval_envs=8, td3=dict(replay_size=100_000))),
}

OUTERS = ("metagrad", "es")
# flags of one outer loop only: given with the other, they are refused (exit 2)
METAGRAD_ONLY = ("meta_iterations", "agents_per_env", "lookahead_step")
ES_ONLY = ("population", "generations")


def parse_envs(text: str, flag: str) -> list[str]:
    from metarl.envs import ENV_NAMES

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{flag} {text!r} names no environment")
    for n in names:
        if n not in ENV_NAMES:
            raise ConfigError(f"{flag}: unknown environment {n!r}; expected names from "
                              f"{', '.join(ENV_NAMES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{flag} {text!r} repeats an environment")
    return names


def parser():
    ap = common_parser(__doc__.splitlines()[0])
    ap.add_argument("--train-envs", default=None, help="comma-separated meta-training envs")
    ap.add_argument("--test-envs", default=None, help="comma-separated meta-test envs")
    ap.add_argument("--meta-iterations", type=int, default=None)
    ap.add_argument("--agents-per-env", type=int, default=None)
    ap.add_argument("--lookahead-step", type=float, default=None,
                    help="eta of the lookahead phi' = phi - eta grad L_alpha on the mean (the original's "
                         "lr 1e-3 on its 100 x 20 sum is 2.0)")
    ap.add_argument("--outer", default="metagrad", choices=OUTERS,
                    help="metagrad: MetaGenRL's second-order meta-gradient (default); es: ES evolves "
                         "the objective over TD3 lifetimes (a new combination)")
    ap.add_argument("--population", type=int, default=None, help="--outer es: ES population size")
    ap.add_argument("--generations", type=int, default=None, help="--outer es: ES generations")
    ap.add_argument("--methods", default=None,
                    help="meta-test methods, comma-separated (default: all of learned, initial_loss, "
                         "td3, reinforce, ppo)")
    ap.add_argument("--checkpoint-every", type=int, default=10, help="meta-iterations between checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    ap.add_argument("--coordinator", default=None, help="multi-host: coordinator host:port")
    ap.add_argument("--num-processes", type=int, default=None)
    ap.add_argument("--process-id", type=int, default=None)
    # the bad-input contract: a one-line error naming the bad flag, exit 2 (argparse's default
    # prints the whole usage first)
    ap.error = lambda message: fail(message)
    return ap


def parse(argv):
    return parser().parse_args(argv)


def build_config(args):
    """Preset plus CLI overrides; raises ConfigError naming any bad value."""
    from metarl.algorithms.metagenrl import MetaGenRLConfig
    from metarl.inner.td3 import TD3Config
    from metarl.metagenrl_eval import METHODS

    preset, why = resolve_preset(args.preset)
    P = PRESETS[preset]
    train_names = parse_envs(P["train_envs"] if args.train_envs is None else args.train_envs, "--train-envs")
    test_names = parse_envs(P["test_envs"] if args.test_envs is None else args.test_envs, "--test-envs")
    methods = tuple(P.get("methods", METHODS))
    if args.methods is not None:
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        bad = [m for m in methods if m not in METHODS]
        if bad or not methods:
            raise ConfigError(f"--methods {args.methods!r}: unknown method {bad[0] if bad else ''!r}; "
                              f"expected names from {', '.join(METHODS)}")
        if "learned" not in methods:
            raise ConfigError(f"--methods {args.methods!r} must include 'learned'")
    for flag in (METAGRAD_ONLY if args.outer == "es" else ES_ONLY):
        if getattr(args, flag) is not None:
            name = "--" + flag.replace("_", "-")
            raise ConfigError(f"{name} is not used by --outer {args.outer}" +
                              (" (use --population, --generations)" if args.outer == "es"
                               else " (it sets the ES of --outer es)"))
    if args.checkpoint_every <= 0:
        raise ConfigError(f"--checkpoint-every must be a positive integer, got {args.checkpoint_every}")
    if args.outer == "es":
        return preset, why, P, es_config(P, args), train_names, test_names, methods
    meta = dict(P["meta"])
    for flag, field in (("meta_iterations", "meta_iterations"), ("agents_per_env", "agents_per_env"),
                        ("lookahead_step", "lookahead_step")):
        if getattr(args, flag) is not None:
            meta[field] = getattr(args, flag)
    if args.checkpoint_every <= 0:
        raise ConfigError(f"--checkpoint-every must be a positive integer, got {args.checkpoint_every}")
    try:
        cfg = MetaGenRLConfig(td3=TD3Config(**P["td3"]), **meta).validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return preset, why, P, cfg, train_names, test_names, methods


def es_config(P: dict, args):
    """The ``--outer es`` configuration: the preset's ``es`` sizes, --population, --generations."""
    from metarl.algorithms.metagenrl_es import MetaGenRLESConfig
    from metarl.inner.td3 import TD3Config
    from metarl.outer.es import ESConfig

    es = dict(P["es"])
    td3 = dict(P["td3"], **es.pop("td3", {}))
    es_fields = {"population_size": es.pop("population_size"), "generations": es.pop("generations")}
    for flag, field in (("population", "population_size"), ("generations", "generations")):
        if getattr(args, flag) is not None:
            es_fields[field] = getattr(args, flag)
    try:
        return MetaGenRLESConfig(td3=TD3Config(**td3), es=ESConfig(ppo_anneal_fraction=0.0, **es_fields),
                                 **es).validate()
    except ValueError as e:
        msg = str(e).replace("population_size", "--population").replace("generations must", "--generations must")
        raise ConfigError(msg) from None


def init_run_state(meta_state, iterations: int, n_envs: int) -> dict:
    """The whole resumable state of a MetaGenRL run (a pytree of host arrays)."""
    import numpy as np

    return {"meta_state": meta_state, "iteration": np.int32(0),
            "returns": np.full((iterations, n_envs), np.nan, np.float32),
            "meta_loss": np.full((iterations, n_envs), np.nan, np.float32),
            "iter_s": np.full(iterations, np.nan, np.float32)}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    try:
        if args.resume:
            run_dir, args = resume_args(args, parse, experiment="metagenrl", argv=argv)
        from metarl import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        preset, why, P, cfg, train_names, test_names, methods = build_config(args)
        if not args.resume:
            run_dir = check_run_dir(args.run_dir or f"runs/metagenrl-{preset}", args.overwrite)
        if args.outer == "es":
            mesh = checked_population_mesh(cfg.es.population_size, "population")
        else:
            mesh = checked_population_mesh(cfg.agents_per_env, "agents_per_env")
    except ConfigError as e:
        fail(str(e))
    if args.resume and finished_run(run_dir) is not None:
        return 0

    import jax
    import numpy as np

    from metarl import envs
    from metarl.algorithms.metagenrl import make_trainer
    from metarl.baselines.ppo import PPOConfig
    from metarl.checkpoint import RunCheckpointer, save_params
    from metarl.meta_test_io import write_meta_test
    from metarl.metagenrl_eval import meta_test, meta_test_summary, results_table
    from metarl.metrics_log import MetricsLog
    from metarl.runs import enable_compilation_cache

    enable_compilation_cache()
    writer = distributed.is_writer()
    if args.outer == "es":
        from experiments.metagenrl_es import run_es

        return run_es(args, argv, preset, why, P, cfg, train_names, test_names, methods, run_dir, mesh, writer)
    print(f"[metagenrl] preset={preset} ({why}); train {','.join(train_names)} -> test "
          f"{','.join(test_names)}; devices={jax.device_count()} ({jax.default_backend()}), "
          f"processes={jax.process_count()}; run dir {run_dir}{' (resuming)' if args.resume else ''}",
          flush=True)
    if writer and not args.resume:
        prepare_run_dir(run_dir, args.overwrite)
        write_json_atomic(run_dir / "config.json", {
            "experiment": "metagenrl", "run_format": RUN_FORMAT, "train_envs": train_names, "test_envs": test_names,
            "preset": preset, "seed": args.seed, "methods": list(methods),
            "argv": run_argv(argv), "config": dataclasses.asdict(cfg)})
    t_start = time.time()

    trainer = make_trainer([envs.make(n) for n in train_names], cfg,
                           mesh=mesh if jax.device_count() > 1 else None)
    # Host copies with canonical (non-weak) dtypes: the compiled iteration takes exactly these
    # types from a fresh start and from a restored checkpoint alike.
    state = distributed.to_host(trainer.init(jax.random.PRNGKey(args.seed)))
    initial_alpha = state.alpha
    I, E = cfg.meta_iterations, len(train_names)
    run = init_run_state(state, I, E)
    ckpt = RunCheckpointer(run_dir / "checkpoints", every=args.checkpoint_every, is_writer=writer)
    if args.resume:
        run = ckpt.resume(run, "iteration", "metagenrl")
    start = int(run["iteration"])

    t0 = time.time()
    iteration = jax.jit(trainer.iteration, donate_argnums=0).lower(run["meta_state"]).compile()
    compile_s = time.time() - t0
    print(f"[metagenrl] compiled one meta-iteration in {compile_s:.1f}s", flush=True)
    n_agents = cfg.agents_per_env * E
    steps_per_it = n_agents * cfg.steps_per_iteration
    log = MetricsLog(run_dir, start + 1, enabled=writer, step_key="iteration")
    state = run["meta_state"]
    if jax.process_count() == 1:
        state = jax.device_put(state)  # device buffers, donated to each iteration
    t_loop = time.time()
    for it in range(start, I):
        t0 = time.time()
        state, m = iteration(state)
        m = distributed.to_host(m)
        dt = time.time() - t0
        done = it + 1
        rets, jv = np.asarray(m["return"]), np.asarray(m["meta_loss"])
        for k, v in (("returns", rets), ("meta_loss", jv)):
            run[k] = run[k].copy()
            run[k][it] = v
        run["iter_s"] = run["iter_s"].copy()
        run["iter_s"][it] = dt
        run["iteration"] = np.int32(done)
        log.write({"iteration": done, "return": dict(zip(train_names, rets.tolist())),
                   "mean_return": float(np.nanmean(rets)) if np.isfinite(rets).any() else None,
                   "meta_loss": dict(zip(train_names, jv.tolist())), "iter_s": dt,
                   "env_steps_per_s": steps_per_it / dt})
        eta = (time.time() - t_loop) / (done - start) * (I - done)
        ret_txt = " ".join(f"{n}={r:.2f}" for n, r in zip(train_names, rets))
        print(f"[metagenrl] iter {done}/{I} return {ret_txt} meta_loss {' '.join(f'{x:.3f}' for x in jv)} "
              f"{steps_per_it / dt:,.0f} env-steps/s ETA {eta:.0f}s", flush=True)
        if done % args.checkpoint_every == 0 or done == I:
            run["meta_state"] = distributed.to_host(state)  # every process joins a multi-host gather
            ckpt.maybe_save(done, run, force=True)
    log.close()
    ckpt.close()
    alpha = distributed.to_host(state.alpha)
    if writer:
        save_params(run_dir / "objective", alpha)
    meta_train_s = time.time() - t_start

    # meta-test: fresh agents, no warm start, no objective updates
    td3_cfg = cfg.td3
    T = P["test"]
    results = meta_test(test_names, alpha, initial_alpha, trainer.objective, td3_cfg,
                        T["total_steps"], T["num_chunks"], T["num_seeds"], args.seed,
                        ppo_config=PPOConfig(**P["ppo"]), methods=methods, eval_envs=T["eval_envs"])
    history = [{"iteration": i + 1, "return": dict(zip(train_names, run["returns"][i].tolist())),
                "meta_loss": run["meta_loss"][i].tolist()} for i in range(I)]
    summary = {
        "algorithm": "metagenrl", "outer": "metagrad", "env": f"train:{','.join(train_names)} test:{','.join(test_names)}",
        "train_envs": train_names, "test_envs": test_names, "preset": preset, "seed": args.seed,
        "outer_steps": I, "meta_iterations": I, "agents": n_agents, "env_steps": I * steps_per_it,
        "compile_s": compile_s, "meta_train_wall_s": meta_train_s, "wall_s": time.time() - t_start,
        "resumed_from": start if args.resume else None,
        "devices": device_info(), "processes": jax.process_count(),
        "config": {"td3": dataclasses.asdict(td3_cfg),
                   "meta": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "td3"}, "test": T},
        "meta_train_history": history,
        "meta_test": meta_test_summary(results, train_names, test_names, T, methods),
    }
    if writer:
        write_meta_test(run_dir, results, f"MetaGenRL meta-test (meta-trained on {', '.join(train_names)})",
                        seen=train_names)
        write_json_atomic(run_dir / "summary.json", summary)
    wrote = f"wrote {run_dir}/summary.json" if writer else "process 0 writes the outputs"
    print(results_table(results, seen=train_names), flush=True)
    print(f"{wrote} ({summary['wall_s']:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
