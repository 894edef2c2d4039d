"""Shared driver of the EPG experiments (``python -m experiments.epg_<family>``).

Meta-trains an EPG loss with ES on the family's train split, then meta-tests the best loss on the
test split against PPO and the initial (random) loss, and writes ``<run-dir>/summary.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from metarl import distributed, envs
from metarl.checkpoint import RunCheckpointer, save_params
from metarl.epg import EPG, EPGConfig
from metarl.inner.epg_lifetime import OBJECTIVES, LifetimeConfig
from metarl.outer.es import ESConfig
from metarl.evaluate import EVALUATION, epg_compare_losses, epg_meta_test, meta_test_ppo_config
from metarl.meta_test_io import write_meta_test
from metarl.metrics_log import MetricsLog
from metarl.outer.es import compile_generation, strategies
from metarl.runs import (ConfigError, check_run_dir, checked_population_mesh, common_parser,
                         device_info, enable_compilation_cache, fail, prepare_run_dir,
                         resolve_preset, resume_args, run_argv, write_json_atomic, RUN_FORMAT,
                         finished_run)


@dataclasses.dataclass(frozen=True)
class Preset:
    """epg: the method's config; test_agents: meta-test agents per method; ppo: overrides of the
    meta-test PPO baseline (metarl.evaluate.meta_test_ppo_config), PPO's own tuned settings."""

    epg: EPGConfig
    test_agents: int
    episode_length: int | None = None
    ppo: tuple = ()  # ((field, value), ...) of PPOConfig


def locomotion_presets() -> dict:
    """Presets shared by the Brax locomotion families (GoalAnt, DirHalfCheetah, RandomHopper).

    ``paper`` uses the EPG paper's sizes (Houthooft et al. 2018) (8192-step lifetimes of 1000-step episodes), a GPU/TPU job;
    ``cpu`` shortens episodes to 200 steps and lifetimes to 1024 steps to fit 15 minutes on 2 cores.
    """
    return {
        "smoke": Preset(EPGConfig(LifetimeConfig(lifetime_steps=128, eval_envs=1),
                                  ESConfig(population_size=2, generations=1), tasks_per_member=1),
                        test_agents=1, episode_length=50),
        "cpu": Preset(EPGConfig(LifetimeConfig(lifetime_steps=1024, eval_envs=2),
                                ESConfig(population_size=8, generations=60, ppo_anneal_fraction=0.0),
                                tasks_per_member=1),
                      test_agents=4, episode_length=200),
        "paper": Preset(EPGConfig(LifetimeConfig(lifetime_steps=8192, eval_envs=4),
                                  ESConfig(population_size=64, generations=2000), tasks_per_member=4),
                        test_agents=16),
    }


def parse(name: str, env_name: str, argv=None):
    ap = common_parser(f"EPG meta-training on {env_name}, then meta-test on its test split")
    ap.add_argument("--generations", type=int, default=None,
                    help="ES generations (outer epochs); with --resume, a larger value extends the run")
    # written by an extension into config.json: the G the schedules span (not a user flag)
    ap.add_argument("--schedule-generations", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--population", type=int, default=None, help="ES population size")
    ap.add_argument("--tasks-per-member", type=int, default=None)
    ap.add_argument("--lifetime-steps", type=int, default=None)
    ap.add_argument("--no-context-gradient", action="store_true",
                    help="compute the learned loss's buffer context once per update and hold it "
                         "constant (stop-gradient; faster, an approximation of the paper's gradient)")
    ap.add_argument("--strategy", default=None, help="evosax strategy, e.g. Open_ES, SNES, PGPE")
    ap.add_argument("--objective", default=None, metavar="{" + ",".join(OBJECTIVES) + "}",
                    help="pure: the paper's loss, (1 - f) L_phi + f L_PPO; residual: L_PPO + L_phi "
                         "with L_phi's output layer starting at zero (ES starts from PPO); lstm: "
                         "(1 - f) L_alpha + f L_PPO, ES evolving MetaGenRL's backward-LSTM objective "
                         "L_alpha on EPG's on-policy learner (a new combination)")
    ap.add_argument("--l2-penalty", type=float, default=None,
                    help="weight decay on the ES gradient (default 1e-3 where the strategy has an optax "
                         "optimiser, as openai/EPG; strategies without one refuse a nonzero value)")
    ap.add_argument("--no-antithetic", action="store_true")
    ap.add_argument("--no-crn", action="store_true", help="independent tasks/seeds per member")
    ap.add_argument("--test-agents", type=int, default=None)
    ap.add_argument("--checkpoint-every", type=int, default=10, help="generations between checkpoints")
    ap.add_argument("--eval-every", type=int, default=None,
                    help="generations between held-out evaluations that pick the best loss (default: "
                         "a tenth of the generations; 0: pick by the generation's mean fitness)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    ap.add_argument("--coordinator", default=None, help="multi-host: coordinator host:port")
    ap.add_argument("--num-processes", type=int, default=None)
    ap.add_argument("--process-id", type=int, default=None)
    return ap.parse_args(argv)


def build_config(args, presets: dict, env_name: str):
    """Applies CLI overrides to the preset; raises ConfigError naming any bad value."""
    preset_name, reason = resolve_preset(args.preset)
    p = presets[preset_name]
    cfg = p.epg
    life = cfg.lifetime
    if args.lifetime_steps is not None:
        life = dataclasses.replace(life, lifetime_steps=args.lifetime_steps)
    if args.no_context_gradient:
        life = dataclasses.replace(life, context_gradient=False)
    if args.objective is not None:
        life = dataclasses.replace(life, objective=args.objective)
    es = cfg.es
    overrides = {k: v for k, v in dict(generations=args.generations, population_size=args.population,
                                       schedule_generations=args.schedule_generations,
                                       strategy=args.strategy, l2_penalty=args.l2_penalty).items()
                 if v is not None}
    if args.no_antithetic:
        overrides["antithetic"] = False
    es = dataclasses.replace(es, **overrides)
    cfg = dataclasses.replace(cfg, lifetime=life, es=es,
                              tasks_per_member=(cfg.tasks_per_member if args.tasks_per_member is None
                                                else args.tasks_per_member),
                              common_random_numbers=cfg.common_random_numbers and not args.no_crn)
    test_agents = args.test_agents if args.test_agents is not None else p.test_agents
    if args.strategy is not None and args.strategy not in strategies():
        raise ConfigError(f"unknown --strategy {args.strategy!r}; expected one of {', '.join(strategies())}")
    try:
        cfg.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if test_agents <= 0:
        raise ConfigError(f"--test-agents must be a positive integer, got {test_agents}")
    if args.checkpoint_every <= 0:
        raise ConfigError(f"--checkpoint-every must be a positive integer, got {args.checkpoint_every}")
    eval_every = args.eval_every if args.eval_every is not None else max(1, cfg.es.schedule_span // 10)
    if eval_every < 0:
        raise ConfigError(f"--eval-every must be >= 0 (0 turns it off), got {eval_every}")
    ppo_cfg = dataclasses.replace(meta_test_ppo_config(cfg.lifetime), **dict(p.ppo))
    return preset_name, reason, cfg, test_agents, p.episode_length, eval_every, ppo_cfg


def fmt_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def main(name: str, env_name: str, presets: dict, argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(name, env_name, argv)
    try:
        if args.resume:
            run_dir, args = resume_args(args, lambda a: parse(name, env_name, a), experiment=name, argv=argv,
                                        extendable=("generations",))
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        preset, reason, cfg, test_agents, ep_len, eval_every, ppo_cfg = build_config(args, presets, env_name)
        if not args.resume:
            run_dir = check_run_dir(args.run_dir or f"runs/{name}-{preset}", overwrite=args.overwrite)
        mesh = checked_population_mesh(cfg.es.population_size, "population_size")
    except ConfigError as e:
        fail(str(e))
    extended_from = getattr(args, "extended_from", None)
    if args.resume and extended_from is None and (done := finished_run(run_dir)) is not None:
        return done
    enable_compilation_cache()
    writer = distributed.is_writer()
    print(f"[{name}] preset={preset} ({reason}); env={env_name}; devices={jax.device_count()} "
          f"({jax.default_backend()}), processes={jax.process_count()}; run dir {run_dir}"
          f"{' (resuming)' if args.resume else ''}", flush=True)
    env = envs.make(env_name, episode_length=ep_len)
    epg = EPG(env, cfg, mesh=mesh if jax.device_count() > 1 else None)
    if writer and not args.resume:
        prepare_run_dir(run_dir, overwrite=args.overwrite)
        write_json_atomic(run_dir / "config.json", {
            "experiment": name, "run_format": RUN_FORMAT, "env": env_name, "preset": preset, "seed": args.seed,
            "argv": stored_generations(run_argv(argv), cfg.es.generations), "config": dataclasses.asdict(cfg),
            "meta_test_ppo": dataclasses.asdict(ppo_cfg)})
    if writer and extended_from is not None:  # later resumes continue the extended run
        config = json.loads((run_dir / "config.json").read_text())
        write_json_atomic(run_dir / "config.json", dict(config, argv=args.stored_argv,
                                                        config=dataclasses.asdict(cfg)))
        print(f"[{name}] extending the run from {extended_from} to {cfg.es.generations} generations "
              f"(schedules keep spanning {cfg.es.schedule_span})", flush=True)
    return meta_train_and_test(epg, cfg, preset, env_name, name, run_dir, args.seed, test_agents,
                               args.checkpoint_every, args.resume, writer, eval_every, ppo_cfg,
                               restore_generations=extended_from)


def stored_generations(argv: list[str], generations: int) -> list[str]:
    """The argv config.json stores: with --generations explicit, so that --resume can tell an
    extension (a larger --generations) from the run's own count."""
    given = any(a == "--generations" or a.startswith("--generations=") for a in argv)
    return argv if given else [*argv, "--generations", str(generations)]


HISTORY_KEYS = ("eval_mean", "eval_best", "fitness_mean", "fitness_max")  # (generations,) each


def init_run_state(es_state, key, phi0, generations: int) -> dict:
    """The whole resumable state of a meta-training run (a pytree of arrays)."""
    return {"es_state": es_state, "key": key, "generation": np.int32(0), "best_params": phi0,
            "best_score": np.float32(-np.inf),
            "eval_mean": np.full(generations, np.nan, np.float32),
            "eval_best": np.full(generations, np.nan, np.float32),
            "fitness_mean": np.full(generations, np.nan, np.float32),
            "fitness_max": np.full(generations, np.nan, np.float32)}


def meta_train_and_test(epg: EPG, cfg: EPGConfig, preset, env_name, name, run_dir: Path, seed: int,
                        test_agents: int, checkpoint_every: int = 10, resume: bool = False,
                        writer: bool = True, eval_every: int = 0, ppo_config=None,
                        restore_generations: int | None = None) -> dict:
    """Meta-trains, then meta-tests the best loss.

    The best loss: with ``eval_every`` > 0, every ``eval_every`` generations (and after the last)
    the ES mean and the best loss so far (initially phi_0) each train ``test_agents`` fresh agents
    on the same fresh train-split tasks and seeds, and the better one is kept (openai/EPG: test
    runs every 50 epochs); with 0, the ES mean of the generation with the best mean fitness.
    """
    key = jax.random.PRNGKey(seed)
    k_es, k_run, k_test = jax.random.split(key, 3)
    k_select = jax.random.fold_in(k_test, 1)
    es, es_params, es_state, generation = epg.make_es(k_es)
    phi0 = es.get_mean(es_state)  # the initial (random) loss: the ES mean before any generation
    n_params = sum(int(x.size) for x in jax.tree_util.tree_leaves(phi0))
    G, P, T = cfg.es.generations, cfg.es.population_size, cfg.tasks_per_member
    steps_per_gen = P * T * (cfg.lifetime.lifetime_steps + epg.env.episode_length * cfg.lifetime.eval_envs)
    print(f"[{name}] loss parameters: {n_params}; population {P} x {T} tasks; lifetime "
          f"{cfg.lifetime.lifetime_steps} steps; {G} generations", flush=True)

    t0 = time.time()
    compiled, compile_s, es_state = compile_generation(generation, es_state, k_run, epg.mesh)
    print(f"[{name}] compiled one generation in {compile_s:.1f}s", flush=True)
    run = jax.device_get(init_run_state(es_state, k_run, phi0, G))

    ckpt = RunCheckpointer(run_dir / "checkpoints", every=checkpoint_every, is_writer=writer)
    if resume:
        # an extended run's checkpoints hold the histories of its stored G: restore, then pad
        template = run if restore_generations is None else jax.device_get(
            init_run_state(es_state, k_run, phi0, restore_generations))
        restored = ckpt.resume(template, "generation", name)
        run = {k: (np.concatenate([v, run[k][len(v):]]) if k in HISTORY_KEYS else v)
               for k, v in restored.items()}
    start = int(run["generation"])
    log = MetricsLog(run_dir, start + 1, enabled=writer)

    t_train = time.time()
    for g in range(start, G):
        k_run, k = jax.random.split(run["key"])
        mean_before = es.get_mean(run["es_state"])
        tg = time.time()
        es_state, info = compiled(run["es_state"], k)
        info = jax.device_get(info)
        dt = time.time() - tg
        mean_f = float(info["mean"])
        run = dict(run, es_state=jax.device_get(es_state), key=jax.device_get(k_run),
                   generation=np.int32(g + 1))
        run["fitness_mean"] = run["fitness_mean"].copy()
        run["fitness_max"] = run["fitness_max"].copy()
        run["fitness_mean"][g], run["fitness_max"][g] = mean_f, float(info["max"])
        rec = {"generation": g + 1, "fitness_mean": mean_f, "fitness_max": float(info["max"]),
               "fitness_min": float(info["min"]), "nonfinite": int(info["nonfinite"]),
               "ppo_factor": float(info["ppo_factor"]), "gen_s": dt, "env_steps_per_s": steps_per_gen / dt}
        if eval_every == 0:
            if np.isfinite(mean_f) and mean_f > float(run["best_score"]):
                # sigma is small: the population's mean fitness scores the ES mean it was drawn around
                run["best_score"], run["best_params"] = np.float32(mean_f), jax.device_get(mean_before)
        elif (g + 1) % eval_every == 0 or g + 1 == G:
            mean_now = es.get_mean(run["es_state"])
            r_mean, r_best = epg_compare_losses(epg, mean_now, run["best_params"],
                                                jax.random.fold_in(k_select, g), test_agents)
            for k, v in (("eval_mean", r_mean), ("eval_best", r_best)):
                run[k] = run[k].copy()
                run[k][g] = v
            if np.isfinite(r_mean) and not r_mean <= r_best:
                run["best_score"], run["best_params"] = np.float32(r_mean), jax.device_get(mean_now)
            else:
                run["best_score"] = np.float32(r_best)
            rec.update(eval_mean=r_mean, eval_best=r_best)
        log.write(rec)
        eta = (time.time() - t_train) / (g + 1 - start) * (G - g - 1)
        ev = (f" | held-out: mean {rec['eval_mean']:.2f} vs best {rec['eval_best']:.2f}"
              if "eval_mean" in rec else "")
        print(f"[{name}] gen {g + 1}/{G} fitness mean {mean_f:9.2f} max {rec['fitness_max']:9.2f} "
              f"f={rec['ppo_factor']:.2f} nonfinite={rec['nonfinite']} "
              f"{rec['env_steps_per_s']:,.0f} env-steps/s ETA {fmt_time(eta)}{ev}", flush=True)
        ckpt.maybe_save(g + 1, run, force=(g + 1 == G))
    log.close()
    ckpt.close()
    train_s = time.time() - t_train
    final_params = es.get_mean(run["es_state"])
    best_params = run["best_params"]

    print(f"[{name}] meta-test: {test_agents} fresh agents on the test split (learned loss, PPO, "
          f"no-update, zero-action, initial loss; sampled-action evaluation)", flush=True)
    t_test = time.time()
    res = epg_meta_test(epg, best_params, phi0, k_test, test_agents, ppo_config=ppo_config)
    test_s = time.time() - t_test
    fm = run["fitness_mean"]
    summary = {
        "algorithm": "epg", "experiment": name, "env": env_name, "preset": preset, "seed": seed,
        "outer_steps": G, "generations": G, "population_size": P, "tasks_per_member": T,
        "lifetime_steps": cfg.lifetime.lifetime_steps, "loss_parameters": n_params,
        "env_steps": steps_per_gen * G, "wall_s": time.time() - t0, "compile_s": compile_s,
        "train_s": train_s, "meta_test_s": test_s, "resumed_from": start if resume else None,
        "devices": device_info(), "processes": jax.process_count(),
        "fitness_first": float(fm[0]), "fitness_last": float(fm[-1]),
        "fitness_first_10pct": float(np.nanmean(fm[: max(1, G // 10)])),
        "fitness_last_10pct": float(np.nanmean(fm[-max(1, G // 10):])),
        "best_selection": (f"held-out evaluation every {eval_every} generations ({test_agents} "
                           f"train-split agents, paired with the best so far)" if eval_every
                           else "best generation mean fitness"),
        "best_score": float(run["best_score"]),
        "objective": cfg.lifetime.objective,
        "meta_test": {"split": "test", "agents": test_agents, "evaluation": EVALUATION,
                      "eval_episodes": epg.config.lifetime.eval_envs,
                      **{f"{m}_return": r["return"] for m, r in res.items()},
                      **{f"{m}_return_mean_action": r["return_mean_action"] for m, r in res.items()}},
    }
    if writer:
        write_meta_test(run_dir, {env_name: res}, f"EPG meta-test on {env_name} (test split)")
        write_json_atomic(run_dir / "summary.json", summary)
        save_params(run_dir / "best_loss", best_params)
        save_params(run_dir / "final_loss", final_params)
    print(f"[{name}] meta-test returns (test split, mean of {test_agents} agents, sampled actions): "
          + " | ".join(f"{m.replace('_', ' ')} {r['return']:.2f}" for m, r in res.items()),
          flush=True)
    if writer:
        print(f"[{name}] wrote {run_dir}/summary.json, meta_test.csv, meta_test.png", flush=True)
    return summary
