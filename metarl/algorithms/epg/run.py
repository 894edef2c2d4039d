"""EPG as a run of the driver (metarl/runs/driver.py): flags, checked configuration, the ES generation
step with best-loss selection, and the meta-test on the family's test split.

Used by ``python -m experiments.epg_<family>``: ``run("epg_point", "goal_point", PRESETS, argv)``.

jax and the modules that import it are imported inside ``configure`` and ``build``: the driver parses
and checks a launch before a multi-host run calls ``jax.distributed.initialize``.
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from metarl.runs import driver as runner
from metarl.runs import flags
from metarl.runs.run_dir import ConfigError, resolve_preset

# run-state arrays with one entry per generation (NaN until recorded)
HISTORY_KEYS = ("eval_mean", "eval_best", "fitness_mean", "fitness_max")


@dataclasses.dataclass(frozen=True)
class Preset:
    """epg: the method's config (metarl.algorithms.epg.algorithm.EPGConfig); test_agents: meta-test agents per method;
    episode_length: the family's episode length (None: its default); ppo: overrides of the
    meta-test PPO baseline (metarl.algorithms.epg.meta_test.meta_test_ppo_config), PPO's own tuned settings."""

    epg: object
    test_agents: int
    episode_length: int | None = None
    ppo: tuple = ()  # ((field, value), ...) of PPOConfig


def parser(env_name: str) -> argparse.ArgumentParser:
    from metarl.algorithms.epg.algorithm import FITNESS
    from metarl.objectives import registry

    ap = flags.experiment_parser(f"EPG meta-training on {env_name}, then meta-test on its test split",
                                  outer_step="generations")
    ap.add_argument("--generations", type=int, default=None,
                    help="ES generations (outer epochs); with --resume, a larger value extends the run")
    # written by an extension into config.json: the G the schedules span (not a user flag)
    ap.add_argument("--schedule-generations", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--population", type=int, default=None, help="ES population size")
    ap.add_argument("--tasks-per-member", type=int, default=None)
    ap.add_argument("--lifetime-steps", type=int, default=None)
    ap.add_argument("--inner-lr", type=float, default=None,
                    help="the agent's Adam learning rate (LifetimeConfig.learning_rate; the paper: 1e-3), "
                         "for the learned, initial and no-update agents alike (the meta-test PPO follows it unless the preset sets its own)")
    ap.add_argument("--init-log-std", type=float, default=None,
                    help="the agent policy's initial log-std (LifetimeConfig.init_log_std; the paper: 0), "
                         "for the learned, initial and no-update agents alike (and the meta-test PPO unless the preset sets its own)")
    ap.add_argument("--meta-test-lifetime-steps", type=int, default=None,
                    help="the meta-test agents' lifetime (default: the meta-training lifetime); meta-train on "
                         "shorter lifetimes (more tasks per generation) and meta-test at the preset's")
    ap.add_argument("--no-context-gradient", action="store_true",
                    help="compute the learned loss's buffer context once per update and hold it "
                         "constant (stop-gradient; faster, an approximation of the paper's gradient)")
    ap.add_argument("--strategy", default=None, help="evosax strategy, e.g. Open_ES, SNES, PGPE")
    ap.add_argument("--objective", default=None, metavar="{" + ",".join(registry.names()) + "}",
                    help="pure: the paper's loss, (1 - f) L_phi + f L_PPO; residual: L_PPO + L_phi "
                         "with L_phi's output layer starting at zero (ES starts from PPO); lstm: "
                         "(1 - f) L_alpha + f L_PPO, ES evolving MetaGenRL's backward-LSTM objective "
                         "L_alpha on EPG's on-policy learner (a new combination); drift, drift_t: LPO's "
                         "learned drift added to PPO's; ppo_schedule: PPO plus 5 terms with evolved "
                         "coefficients over the lifetime progress (15 parameters, PPO at generation 0)")
    ap.add_argument("--progress-input", action="store_true",
                    help="the agent's lifetime progress t/T (update index / updates) as one more input of "
                         "the learned objective's network (conv loss: its per-row head; lstm and drift: "
                         "their inputs; drift_t always has it); not in the paper")
    ap.add_argument("--progress-context", action="store_true",
                    help="with --progress-input and the conv loss (pure, residual): append the progress "
                         "to the buffer rows its context convolutions read too")
    ap.add_argument("--mean-penalty", type=float, default=None, metavar="COEF",
                    help="conv loss (pure, residual): add COEF * mean(relu(|mu| - the env's action "
                         "bound)^2) on the policy means to the objective (default 0: off, the paper, "
                         "whose unbounded policy mean the env clips)")
    ap.add_argument("--l2-penalty", type=float, default=None,
                    help="weight decay on the ES gradient (default 1e-3 where the strategy has an optax "
                         "optimiser, as openai/EPG; strategies without one refuse a nonzero value)")
    ap.add_argument("--sigma", type=float, default=None, help="ES perturbation std (the paper: 0.01)")
    ap.add_argument("--es-lr", type=float, default=None,
                    help="ES learning rate at generation 0 (the paper: 1e-2, falling linearly to a tenth "
                         "over the first half)")
    ap.add_argument("--no-antithetic", action="store_true")
    ap.add_argument("--noise-probe", action="store_true",
                    help="evaluate each generation's members on a second draw of tasks and seeds (twice the "
                         "cost) and log fitness_noise_ratio, members' signal over their draw-to-draw noise")
    ap.add_argument("--fitness", default=None, choices=FITNESS,
                    help="a member's fitness on a task: final (the paper: return after the lifetime), "
                         "auc (mean return over the lifetime's episodes: trains faster) or late_auc (the "
                         "same over the last quarter of the lifetime: final performance, on more episodes)")
    ap.add_argument("--task-shaping", default=None, choices=("none", "z_score", "centered_rank"),
                    help="shape each task's fitness across members before the mean over tasks "
                         "(default none: the raw mean; then centred ranks across members, as openai/EPG)")
    ap.add_argument("--fitness-shaping", default=None,
                    choices=("centered_rank", "centered_rank_tied", "z_score", "identity"),
                    help="across members (default centered_rank, evosax's, as openai/EPG; centered_rank_tied: "
                         "tied members share their average rank, so a tied population takes no step)")
    ap.add_argument("--no-crn", action="store_true", help="independent tasks/seeds per member")
    ap.add_argument("--test-agents", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=None,
                    help="generations between held-out evaluations that pick the best loss (default: "
                         "a tenth of the generations; 0: pick by the generation's mean fitness)")
    return ap


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``build`` needs beyond the EPGConfig."""

    env_name: str
    cfg: object  # EPGConfig
    test_agents: int
    episode_length: int | None
    eval_every: int
    ppo_cfg: object  # PPOConfig of the meta-test baseline
    test_lifetime_steps: int | None = None  # the meta-test agents' lifetime; None: the meta-training one


def configure(args, presets: dict, env_name: str) -> runner.Plan:
    """Applies CLI overrides to the preset; raises ConfigError naming any bad value."""
    from metarl.algorithms.epg.meta_test import meta_test_ppo_config
    from metarl.outer.es import TRUNCATED, strategies

    preset_name, reason = resolve_preset(args.preset)
    p = presets[preset_name]
    cfg = p.epg
    life = cfg.lifetime
    if args.lifetime_steps is not None:
        life = dataclasses.replace(life, lifetime_steps=args.lifetime_steps)
    if args.inner_lr is not None:
        if not (np.isfinite(args.inner_lr) and args.inner_lr > 0):
            raise ConfigError(f"--inner-lr must be a finite number > 0, got {args.inner_lr}")
        life = dataclasses.replace(life, learning_rate=args.inner_lr)
    if args.init_log_std is not None:
        if not np.isfinite(args.init_log_std):
            raise ConfigError(f"--init-log-std must be a finite number, got {args.init_log_std}")
        life = dataclasses.replace(life, init_log_std=args.init_log_std)
    overrides = {k: v for k, v in dict(generations=args.generations, population_size=args.population,
                                       schedule_generations=args.schedule_generations,
                                       strategy=args.strategy, l2_penalty=args.l2_penalty,
                                       sigma=args.sigma, learning_rate=args.es_lr).items()
                 if v is not None}
    if args.no_antithetic:
        overrides["antithetic"] = False
    if args.noise_probe:
        overrides["noise_probe"] = True
    if args.task_shaping is not None:
        overrides["task_shaping"] = args.task_shaping
    if args.fitness_shaping is not None:
        overrides["fitness_shaping"] = args.fitness_shaping
    es = dataclasses.replace(cfg.es, **overrides)
    cfg = dataclasses.replace(cfg, lifetime=life, es=es,
                              objective=cfg.objective if args.objective is None else args.objective,
                              context_gradient=cfg.context_gradient and not args.no_context_gradient,
                              fitness=cfg.fitness if args.fitness is None else args.fitness,
                              progress_input=cfg.progress_input or args.progress_input,
                              progress_context=cfg.progress_context or args.progress_context,
                              mean_penalty=cfg.mean_penalty if args.mean_penalty is None else args.mean_penalty,
                              tasks_per_member=(cfg.tasks_per_member if args.tasks_per_member is None
                                                else args.tasks_per_member),
                              common_random_numbers=cfg.common_random_numbers and not args.no_crn)
    test_agents = args.test_agents if args.test_agents is not None else p.test_agents
    if args.mean_penalty is not None and not (np.isfinite(args.mean_penalty) and args.mean_penalty >= 0):
        raise ConfigError(f"--mean-penalty must be a finite number >= 0, got {args.mean_penalty}")
    if args.progress_context and not cfg.progress_input:
        raise ConfigError("--progress-context needs --progress-input")
    if args.strategy is not None and args.strategy not in strategies() + TRUNCATED:
        raise ConfigError(f"unknown --strategy {args.strategy!r}; expected one of {', '.join(strategies())}")
    try:
        cfg.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if test_agents <= 0:
        raise ConfigError(f"--test-agents must be a positive integer, got {test_agents}")
    eval_every = args.eval_every if args.eval_every is not None else max(1, cfg.es.schedule_span // 10)
    if eval_every < 0:
        raise ConfigError(f"--eval-every must be >= 0 (0 turns it off), got {eval_every}")
    test_steps = args.meta_test_lifetime_steps
    test_life = cfg.lifetime if test_steps is None else dataclasses.replace(cfg.lifetime, lifetime_steps=test_steps)
    try:
        test_life.validate()
    except ValueError as e:
        raise ConfigError(f"--meta-test-lifetime-steps: {e}") from None
    ppo_cfg = dataclasses.replace(meta_test_ppo_config(test_life), **dict(p.ppo))
    from metarl.envs import default_backend  # the family's physics, recorded (EPG builds it with the default)

    return runner.Plan(
        preset=preset_name, why=reason, population=(cfg.es.population_size, "population_size"),
        header=f"env={env_name}",
        config={"env": env_name, "backend": default_backend(env_name), "config": dataclasses.asdict(cfg),
                "meta_test_ppo": dataclasses.asdict(ppo_cfg)},
        counts={"generations": cfg.es.generations},
        extension_note=f" (schedules keep spanning {cfg.es.schedule_span})",
        algo=Settings(env_name, cfg, test_agents, p.episode_length, eval_every, ppo_cfg, test_steps))


def _shown(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def init_run_state(es_state, key, phi0, generations: int) -> dict:
    """The whole resumable state of a meta-training run (a pytree of arrays)."""
    nan = lambda: np.full(generations, np.nan, np.float32)  # noqa: E731
    return {"es_state": es_state, "key": key, "generation": np.int32(0), "best_params": phi0,
            "best_score": np.float32(-np.inf),
            **{k: nan() for k in HISTORY_KEYS}}


def build(plan: runner.Plan, args, mesh, name: str) -> runner.Loop:
    """The ES outer loop of one EPG run.

    The best loss: with ``eval_every`` > 0, every ``eval_every`` generations (and after the last)
    the ES mean and the best loss so far (initially phi_0) each train ``test_agents`` fresh agents
    on the same fresh train-split tasks and seeds, and the better one is kept (openai/EPG: test
    runs every 50 epochs); with 0, the ES mean of the generation with the best mean fitness.
    """
    import jax

    from metarl import envs
    from metarl.algorithms.epg.algorithm import EPG
    from metarl.runs.es_step import es_generation_step
    from metarl.algorithms.epg.meta_test import EVALUATION, epg_compare_losses, epg_meta_test
    from metarl.outer.es import compile_generation

    s: Settings = plan.algo
    cfg = s.cfg
    env = envs.make(s.env_name, episode_length=s.episode_length)
    epg = EPG(env, cfg, mesh=mesh if jax.device_count() > 1 else None)
    k_es, k_run, k_test = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    k_select = jax.random.fold_in(k_test, 1)
    es, _, es_state, generation = epg.make_es(k_es)
    phi0 = es.get_mean(es_state)  # the initial (random) loss: the ES mean before any generation
    n_params = sum(int(x.size) for x in jax.tree_util.tree_leaves(phi0))
    G, pop, tasks = cfg.es.generations, cfg.es.population_size, cfg.tasks_per_member
    steps_per_gen = pop * tasks * (cfg.lifetime.lifetime_steps + env.episode_length * cfg.lifetime.eval_envs)
    print(f"[{name}] loss parameters: {n_params}; population {pop} x {tasks} tasks; lifetime "
          f"{cfg.lifetime.lifetime_steps} steps; {G} generations", flush=True)
    compiled, compile_s, es_state = compile_generation(generation, es_state, k_run, epg.mesh)
    print(f"[{name}] compiled one generation in {compile_s:.1f}s", flush=True)

    def step(run, g):
        mean_before = es.get_mean(run["es_state"])
        run, info, rec, dt, steps_per_s = es_generation_step(compiled, run, g, steps_per_gen)
        mean_f = rec["fitness_mean"]
        runner.record(run, g, fitness_mean=mean_f, fitness_max=rec["fitness_max"])
        rec.update(ppo_factor=float(info["fitness_aux"]["ppo_factor"]), gen_s=dt, env_steps_per_s=steps_per_s)
        if s.eval_every == 0:
            if np.isfinite(mean_f) and mean_f > float(run["best_score"]):
                # sigma is small: the population's mean fitness scores the ES mean it was drawn around
                run["best_score"], run["best_params"] = np.float32(mean_f), jax.device_get(mean_before)
        elif (g + 1) % s.eval_every == 0 or g + 1 == G:
            mean_now = es.get_mean(run["es_state"])
            r_mean, r_best = epg_compare_losses(epg, mean_now, run["best_params"],
                                                jax.random.fold_in(k_select, g), s.test_agents)
            runner.record(run, g, eval_mean=r_mean, eval_best=r_best)
            if np.isfinite(r_mean) and not r_mean <= r_best:
                run["best_score"], run["best_params"] = np.float32(r_mean), jax.device_get(mean_now)
            else:
                run["best_score"] = np.float32(r_best)
            rec.update(eval_mean=r_mean, eval_best=r_best)
        held_out = (f" | held-out: mean {rec['eval_mean']:.2f} vs best {rec['eval_best']:.2f}"
                    if "eval_mean" in rec else "")
        progress = (f"gen {g + 1}/{G} fitness mean {mean_f:9.2f} max {rec['fitness_max']:9.2f} "
                    f"f={rec['ppo_factor']:.2f} nonfinite={rec['nonfinite']} ties={rec['fitness_ties']:.2f} "
                    f"grad-cos={_shown(rec['es_grad_cosine'])} "
                    f"{rec['env_steps_per_s']:,.0f} env-steps/s{held_out}")
        return run, rec, progress

    def objectives(run):
        return {"best_loss": run["best_params"], "final_loss": es.get_mean(run["es_state"])}

    def finish(run):
        print(f"[{name}] meta-test: {s.test_agents} fresh agents on the test split (learned loss, PPO, "
              f"no-update, zero-action, initial loss; sampled-action evaluation)", flush=True)
        epg_test = epg  # the meta-test's learner: the meta-training one, or the same at another lifetime
        if s.test_lifetime_steps not in (None, cfg.lifetime.lifetime_steps):
            test_cfg = dataclasses.replace(cfg, lifetime=dataclasses.replace(
                cfg.lifetime, lifetime_steps=s.test_lifetime_steps))
            epg_test = EPG(env, test_cfg, mesh=mesh if jax.device_count() > 1 else None)
        res = epg_meta_test(epg_test, run["best_params"], phi0, k_test, s.test_agents, ppo_config=s.ppo_cfg)
        fm = run["fitness_mean"]
        tenth = max(1, G // 10)
        summary = {
            "algorithm": "epg", "env": s.env_name, "backend": env.backend, "objective": cfg.objective,
            "fitness": cfg.fitness, "progress_input": cfg.progress_input, "mean_penalty": cfg.mean_penalty,
            "task_shaping": cfg.es.task_shaping,
            "generations": G, "population_size": pop, "tasks_per_member": tasks,
            "lifetime_steps": cfg.lifetime.lifetime_steps, "loss_parameters": n_params,
            "meta_test_lifetime_steps": s.test_lifetime_steps or cfg.lifetime.lifetime_steps,
            "env_steps": steps_per_gen * G,
            "fitness_first": float(fm[0]), "fitness_last": float(fm[-1]),
            "fitness_first_10pct": float(np.nanmean(fm[:tenth])),
            "fitness_last_10pct": float(np.nanmean(fm[-tenth:])),
            "best_selection": (f"held-out evaluation every {s.eval_every} generations ({s.test_agents} "
                               f"train-split agents, paired with the best so far)" if s.eval_every
                               else "best generation mean fitness"),
            "best_score": float(run["best_score"]),
            "meta_test": {"split": "test", "agents": s.test_agents, "evaluation": EVALUATION,
                          "eval_episodes": cfg.lifetime.eval_envs,
                          **{f"{m}_return": r["return"] for m, r in res.items()},
                          **{f"{m}_return_mean_action": r["return_mean_action"] for m, r in res.items()}},
        }
        table = (f"[{name}] meta-test returns (test split, mean of {s.test_agents} agents, sampled "
                 f"actions): " + " | ".join(f"{m.replace('_', ' ')} {r['return']:.2f}" for m, r in res.items()))
        return runner.Outcome(summary, {s.env_name: res}, f"EPG meta-test on {s.env_name} (test split)", table)

    return runner.Loop(name=name, counter="generation", total=G,
                       state=jax.device_get(init_run_state(es_state, k_run, phi0, G)),
                       compile_s=compile_s, step=step, objectives=objectives, finish=finish,
                       history=HISTORY_KEYS)


def run(name: str, env_name: str, presets: dict, argv=None) -> dict:
    """``python -m experiments.<name>``: EPG on ``env_name`` with ``presets``; returns summary.json's dict."""
    return runner.main(name, argv, parser(env_name).parse_args,
                       lambda args: configure(args, presets, env_name),
                       lambda plan, args, mesh: build(plan, args, mesh, name),
                       extendable=("generations",))
