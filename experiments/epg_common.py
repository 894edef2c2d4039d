"""Shared driver of the EPG experiments (``python -m experiments.epg_<family>``).

Meta-trains an EPG loss with ES on the family's train split, then meta-tests the best loss on the
test split against PPO and the initial (random) loss, and writes ``<run-dir>/summary.json``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from metarl import envs
from metarl.epg import EPG, EPGConfig
from metarl.evaluate import epg_meta_test, write_meta_test
from metarl.inner.epg_lifetime import LifetimeConfig
from metarl.outer.es import STRATEGIES, ESConfig
from metarl.runs import (ConfigError, check_run_dir, common_parser, device_info, fail,
                         prepare_run_dir, resolve_preset, write_json_atomic)


@dataclasses.dataclass(frozen=True)
class Preset:
    epg: EPGConfig
    test_agents: int
    episode_length: int | None = None


def parse(name: str, env_name: str, argv=None):
    ap = common_parser(f"EPG meta-training on {env_name}, then meta-test on its test split")
    ap.add_argument("--generations", type=int, default=None, help="ES generations (outer epochs)")
    ap.add_argument("--population", type=int, default=None, help="ES population size")
    ap.add_argument("--tasks-per-member", type=int, default=None)
    ap.add_argument("--lifetime-steps", type=int, default=None)
    ap.add_argument("--strategy", default=None, help=f"evosax strategy, e.g. Open_ES, SNES, PGPE")
    ap.add_argument("--no-antithetic", action="store_true")
    ap.add_argument("--no-crn", action="store_true", help="independent tasks/seeds per member")
    ap.add_argument("--test-agents", type=int, default=None)
    return ap.parse_args(argv)


def build_config(args, presets: dict, env_name: str):
    """Applies CLI overrides to the preset; raises ConfigError naming any bad value."""
    preset_name, reason = resolve_preset(args.preset)
    p = presets[preset_name]
    cfg = p.epg
    life = cfg.lifetime
    if args.lifetime_steps is not None:
        life = dataclasses.replace(life, lifetime_steps=args.lifetime_steps)
    es = cfg.es
    overrides = {k: v for k, v in dict(generations=args.generations, population_size=args.population,
                                       strategy=args.strategy).items() if v is not None}
    if args.no_antithetic:
        overrides["antithetic"] = False
    es = dataclasses.replace(es, **overrides)
    cfg = dataclasses.replace(cfg, lifetime=life, es=es,
                              tasks_per_member=args.tasks_per_member or cfg.tasks_per_member,
                              common_random_numbers=cfg.common_random_numbers and not args.no_crn)
    test_agents = args.test_agents if args.test_agents is not None else p.test_agents
    if args.strategy is not None and args.strategy not in STRATEGIES:
        raise ConfigError(f"unknown --strategy {args.strategy!r}; expected one of {', '.join(STRATEGIES)}")
    try:
        cfg.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if test_agents <= 0:
        raise ConfigError(f"--test-agents must be a positive integer, got {test_agents}")
    return preset_name, reason, cfg, test_agents, p.episode_length


def fmt_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def main(name: str, env_name: str, presets: dict, argv=None) -> dict:
    args = parse(name, env_name, argv)
    try:
        preset, reason, cfg, test_agents, ep_len = build_config(args, presets, env_name)
        run_dir = check_run_dir(args.run_dir or f"runs/{name}-{preset}", overwrite=args.overwrite)
    except ConfigError as e:
        fail(str(e))
    print(f"[{name}] preset={preset} ({reason}); env={env_name}; devices={jax.device_count()} "
          f"({jax.default_backend()}); run dir {run_dir}", flush=True)
    env = envs.make(env_name, episode_length=ep_len)
    epg = EPG(env, cfg)
    prepare_run_dir(run_dir, overwrite=args.overwrite)
    write_json_atomic(run_dir / "config.json", {"experiment": name, "env": env_name, "preset": preset,
                                                 "seed": args.seed, "config": dataclasses.asdict(cfg)})
    result = meta_train_and_test(epg, cfg, preset, env_name, name, run_dir, args.seed, test_agents)
    return result


def meta_train_and_test(epg: EPG, cfg: EPGConfig, preset, env_name, name, run_dir: Path, seed: int,
                        test_agents: int) -> dict:
    key = jax.random.PRNGKey(seed)
    k_es, k_run, k_test = jax.random.split(key, 3)
    es, es_params, state, generation = epg.make_es(k_es)
    phi0 = es.get_mean(state)  # the initial (random) loss: the ES mean before any generation
    n_params = sum(int(x.size) for x in jax.tree_util.tree_leaves(phi0))
    G, P, T = cfg.es.generations, cfg.es.population_size, cfg.tasks_per_member
    steps_per_gen = P * T * (cfg.lifetime.lifetime_steps + epg.env.episode_length * cfg.lifetime.eval_envs)
    print(f"[{name}] loss parameters: {n_params}; population {P} x {T} tasks; lifetime "
          f"{cfg.lifetime.lifetime_steps} steps; {G} generations", flush=True)

    gen_fn = jax.jit(generation)
    t0 = time.time()
    lowered = gen_fn.lower(state, k_run)
    compiled = lowered.compile()
    compile_s = time.time() - t0
    print(f"[{name}] compiled one generation in {compile_s:.1f}s", flush=True)
    # Canonicalise the initial state's dtypes to those the generation returns (no re-trace later).
    out_state = jax.eval_shape(generation, state, k_run)[0]
    state = jax.tree_util.tree_map(lambda x, s: np.asarray(x, dtype=s.dtype), state, out_state)

    history, best_score, best_params = [], -np.inf, es.get_mean(state)
    metrics_f = open(run_dir / "metrics.jsonl", "a")
    t_train = time.time()
    for g in range(G):
        k_run, k = jax.random.split(k_run)
        mean_before = es.get_mean(state)
        tg = time.time()
        state, info = compiled(state, k)
        info = jax.device_get(info)
        dt = time.time() - tg
        mean_f = float(info["mean"])
        if np.isfinite(mean_f) and mean_f > best_score:
            best_score, best_params = mean_f, mean_before
        rec = {"generation": g, "fitness_mean": mean_f, "fitness_max": float(info["max"]),
               "fitness_min": float(info["min"]), "nonfinite": int(info["nonfinite"]),
               "ppo_factor": float(info["ppo_factor"]), "gen_s": dt, "env_steps_per_s": steps_per_gen / dt}
        history.append(rec)
        metrics_f.write(json.dumps(rec) + "\n")
        metrics_f.flush()
        eta = (time.time() - t_train) / (g + 1) * (G - g - 1)
        print(f"[{name}] gen {g + 1}/{G} fitness mean {mean_f:9.2f} max {rec['fitness_max']:9.2f} "
              f"f={rec['ppo_factor']:.2f} nonfinite={rec['nonfinite']} "
              f"{rec['env_steps_per_s']:,.0f} env-steps/s ETA {fmt_time(eta)}", flush=True)
    metrics_f.close()
    train_s = time.time() - t_train
    final_params = es.get_mean(state)

    print(f"[{name}] meta-test: {test_agents} fresh agents on the test split "
          f"(learned loss, initial loss, PPO)", flush=True)
    t_test = time.time()
    res = epg_meta_test(epg, best_params, phi0, k_test, test_agents)
    write_meta_test(run_dir, res, title=f"EPG meta-test on {env_name} (test split)")
    test_s = time.time() - t_test
    summary = {
        "algorithm": "epg", "experiment": name, "env": env_name, "preset": preset, "seed": seed,
        "generations": G, "population_size": P, "tasks_per_member": T,
        "lifetime_steps": cfg.lifetime.lifetime_steps, "loss_parameters": n_params,
        "env_steps": steps_per_gen * G, "wall_s": time.time() - t0, "compile_s": compile_s,
        "train_s": train_s, "meta_test_s": test_s,
        "devices": device_info(),
        "fitness_first": history[0]["fitness_mean"] if history else None,
        "fitness_last": history[-1]["fitness_mean"] if history else None,
        "best_generation_fitness": best_score,
        "meta_test": {"split": "test", "agents": test_agents,
                      "learned_return": res["learned_return"],
                      "initial_loss_return": res["initial_loss_return"],
                      "ppo_return": res["ppo_return"]},
    }
    write_json_atomic(run_dir / "summary.json", summary)
    _save_loss(run_dir, best_params, final_params)
    mt = summary["meta_test"]
    print(f"[{name}] meta-test returns (test split, mean of {test_agents} agents): learned "
          f"{mt['learned_return']:.2f} | initial loss {mt['initial_loss_return']:.2f} | PPO "
          f"{mt['ppo_return']:.2f}", flush=True)
    print(f"[{name}] wrote {run_dir}/summary.json, meta_test.csv, meta_test.png", flush=True)
    return summary


def _save_loss(run_dir: Path, best, final):
    import orbax.checkpoint as ocp

    ckptr = ocp.PyTreeCheckpointer()
    for tag, params in (("best_loss", best), ("final_loss", final)):
        ckptr.save((run_dir / tag).absolute(), jax.device_get(params), force=True)
