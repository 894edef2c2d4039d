"""A learned objective used on its own: load it from a finished run, train fresh agents with it.

    import metarl
    saved = metarl.load_objective("runs/epg_point-cpu")   # objective, params, initial_params, settings
    python -m metarl.apply RUN_DIR --env NAME [--split test] [--agents N] [--seed S] [--run-dir OUT]

``load_objective`` rebuilds the run's settings as ``--resume`` does (its stored command line and its
experiment's presets) and loads the saved parameters: EPG's ``best_loss/`` (the objective the run's
own meta-test used), MetaGenRL's ``objective/``. ``initial_params`` is the same seed's objective
before meta-training (phi_0 / alpha_0), the run's ``initial_loss``.

``python -m metarl.apply`` trains fresh agents with the saved objective on ``--env`` and writes a
meta-test (``meta_test.{json,csv,png}``, the one schema, beside the same baselines and floors as the
run's own meta-test) and a ``summary.json`` into a new run directory. Where the objective cannot train
agents on the env (EPG's conv loss is sized to the body it was evolved on), it exits 2 with one line.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax

from metarl import envs
from metarl.algorithms.epg import run as epg_run
from metarl.algorithms.epg.algorithm import EPG
from metarl.algorithms.epg.meta_test import EVALUATION, epg_meta_test
from metarl.algorithms.metagenrl import run as metagenrl_run
from metarl.algorithms.metagenrl.meta_test import meta_test, meta_test_summary
from metarl.objectives.backward_lstm import BackwardLSTMObjective
from metarl.runs.checkpoint import load_params
from metarl.runs.meta_test_schema import write_meta_test
from metarl.runs.run_dir import (ConfigError, check_run_dir, enable_compilation_cache, fail, prepare_run_dir,
                                 write_json_atomic)

# the saved objective each algorithm's run writes (metarl.runs.driver: objectives())
OBJECTIVE_DIRS = {"epg": "best_loss", "metagenrl": "objective"}


@dataclasses.dataclass(frozen=True)
class SavedObjective:
    """A run's learned objective. ``objective``: the object (EPG: an ``OnPolicyObjective``;
    MetaGenRL: an ``Objective``); ``params``: its learned parameters; ``initial_params``: its
    parameters before meta-training; ``settings``: the run's checked settings (EPG: ``env_name``,
    ``cfg`` an ``EPGConfig``, ``test_agents``, ``episode_length``, ``ppo_cfg``; MetaGenRL: ``cfg``,
    ``train_names``, ``test_names``, ``methods``, ``outer``, the preset); ``seed``: the run's seed."""

    algorithm: str
    objective: Any
    params: Any
    initial_params: Any
    settings: Any
    seed: int
    run_dir: Path


def _run_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (no config.json)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None


def _settings(config: dict):
    """(algorithm, the experiment's Plan.algo) from the stored command line, as --resume does."""
    experiment, argv = config.get("experiment"), config.get("argv")
    if not experiment or argv is None:
        raise ConfigError("config.json has no experiment/argv; it was not written by metarl's run driver")
    try:
        module = importlib.import_module(f"experiments.{experiment}")
    except ImportError:
        raise ConfigError(f"unknown experiment {experiment!r} in config.json") from None
    if experiment == "metagenrl":

        return "metagenrl", metagenrl_run.configure(metagenrl_run.parser().parse_args(argv), module.PRESETS).algo

    args = epg_run.parser(module.ENV).parse_args(argv)
    return "epg", epg_run.configure(args, module.PRESETS, module.ENV).algo


def load_objective(run_dir) -> SavedObjective:
    """The learned objective of the finished (or checkpointed-and-saved) run in ``run_dir``."""


    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    algorithm, s = _settings(config)
    seed = int(config.get("seed", 0))
    path = run_dir / OBJECTIVE_DIRS[algorithm]
    if not path.is_dir():
        raise ConfigError(f"{str(run_dir)!r} has no saved objective ({path.name}/): the run has not "
                          "finished meta-training")
    if algorithm == "epg":
        cfg = s.cfg
        env = envs.make(s.env_name, episode_length=s.episode_length)
        objective = cfg.make_objective(env.action_bound)
        # the run's phi_0: the ES mean before any generation (metarl.algorithms.epg.run.build)
        k_es = jax.random.split(jax.random.PRNGKey(seed), 3)[0]
        initial = objective.init(jax.random.split(k_es)[0], env.observation_size, env.action_size)
    else:
        objective = _metagenrl_objective(s)
        initial = _metagenrl_initial(s, objective, seed)
    return SavedObjective(algorithm, objective, load_params(path), initial, s, seed, run_dir)


def _metagenrl_objective(s):

    return s.cfg.objective() if s.outer == "metagrad" else BackwardLSTMObjective()


def _metagenrl_initial(s, objective, seed: int):
    """alpha_0 as the run drew it (MetaTrainer.init for metagrad, MetaGenRLES.make_es for es);
    L_alpha's shapes do not depend on the body, so no env is built."""

    if s.outer == "metagrad":
        key = jax.random.split(jax.random.PRNGKey(seed), 2 + len(s.train_names))[0]
    else:
        key = jax.random.split(jax.random.split(jax.random.PRNGKey(seed))[0])[0]
    return objective.init(key, 1, 1)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m metarl.apply",
                                 description="train fresh agents with a run's learned objective and "
                                             "meta-test them beside the baselines and floors")
    ap.add_argument("run", help="a finished run directory (EPG or MetaGenRL)")
    ap.add_argument("--env", required=True, help="the env to train on (EPG: a family of the same body)")
    ap.add_argument("--split", default="test", choices=("train", "test"))
    ap.add_argument("--agents", type=int, default=None,
                    help="fresh agents per method (default: the run's own meta-test count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", default=None, help="output directory (default runs/apply-<run>-<env>)")
    ap.add_argument("--overwrite", action="store_true")
    return ap


def _check_env(name: str) -> None:

    if name not in envs.ENV_NAMES:
        raise ConfigError(f"unknown --env {name!r}; expected one of {', '.join(envs.ENV_NAMES)}")


def _apply_epg(saved: SavedObjective, env_name: str, split: str, agents: int, seed: int):


    s = saved.settings
    env = envs.make(env_name, episode_length=s.episode_length)
    trained = envs.make(s.env_name, episode_length=s.episode_length)
    want = (trained.observation_size, trained.action_size)
    if (env.observation_size, env.action_size) != want:
        raise ConfigError(f"--env {env_name} (obs {env.observation_size}, act {env.action_size}) does not fit "
                          f"the objective evolved on {s.env_name} (obs {want[0]}, act {want[1]}): EPG's conv "
                          "loss is sized to its body; expected an env of the same sizes")
    epg = EPG(env, s.cfg, objective=saved.objective)
    res = epg_meta_test(epg, saved.params, saved.initial_params, jax.random.PRNGKey(seed), agents, split=split,
                        ppo_config=s.ppo_cfg)
    summary = {"split": split, "agents": agents, "evaluation": EVALUATION, "eval_episodes": s.cfg.lifetime.eval_envs,
               **{f"{m}_return": r["return"] for m, r in res.items()}}
    return {env_name: res}, summary, []


def _apply_metagenrl(saved: SavedObjective, env_name: str, split: str, agents: int, seed: int):
    s = saved.settings
    config = metagenrl_run.meta_test_config(s, split, agents)
    results = meta_test([env_name], saved.params, saved.initial_params, saved.objective, config, seed,
                        methods=s.methods, backends=s.backends)  # an env of the run: the run's physics
    seen = [env_name] if env_name in s.train_names else []
    summary = meta_test_summary(results, s.train_names, [env_name], config.sizes, s.methods)
    return results, dict(summary, split=split), seen


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    try:
        run = Path(args.run)
        if not run.is_dir():
            raise ConfigError(f"run dir {str(run)!r} does not exist")
        _check_env(args.env)
        out = Path(args.run_dir or f"runs/apply-{run.resolve().name}-{args.env}")
        check_run_dir(out, overwrite=args.overwrite, resumable=False)
        if out.resolve() == run.resolve():
            raise ConfigError(f"--run-dir {str(out)!r} is the source run; expected a new directory")
        if args.agents is not None and args.agents <= 0:
            raise ConfigError(f"--agents must be a positive integer, got {args.agents}")

        enable_compilation_cache()
        saved = load_objective(run)
        agents = args.agents or (saved.settings.test_agents if saved.algorithm == "epg"
                                 else algo_agents(saved))
        t0 = time.time()
        apply = _apply_epg if saved.algorithm == "epg" else _apply_metagenrl
        results, meta_test, seen = apply(saved, args.env, args.split, agents, args.seed)
    except ConfigError as e:
        fail(str(e))

    prepare_run_dir(out, overwrite=args.overwrite)
    title = f"{saved.algorithm} objective of {run.name} on {args.env} ({args.split} split)"
    write_meta_test(out, results, title, seen)
    summary = {"algorithm": saved.algorithm, "source_run": str(run.resolve()), "env": args.env,
               "seed": args.seed, "wall_s": time.time() - t0, "meta_test": meta_test}
    write_json_atomic(out / "summary.json", summary)
    line = " | ".join(f"{m.replace('_', ' ')} {r['return']:.2f}" for m, r in results[args.env].items())
    print(f"[apply] {args.env} ({args.split} split, {agents} agents per method): {line}", flush=True)
    print(f"[apply] wrote {out}/meta_test.json, meta_test.csv, meta_test.png, summary.json", flush=True)
    return summary


def algo_agents(saved: SavedObjective) -> int:
    return metagenrl_run.meta_test_config(saved.settings).sizes.num_seeds


if __name__ == "__main__":
    main(sys.argv[1:])
