"""MetaGenRL as a run of the driver (metarl/runs/driver.py): flags, checked configuration, and the two
outer loops over one learned objective L_alpha, followed by the same meta-test.

``--outer metagrad`` (default): MetaGenRL's second-order meta-gradient through the critics of a TD3
population (metarl/algorithms/metagenrl/algorithm.py). ``--outer es``: ES evolves alpha over TD3 lifetimes of
the frozen-objective harness (metarl/algorithms/metagenrl/es.py), a new combination; learned = the
ES mean at the end, initial_loss = alpha_0.

Used by ``python -m experiments.metagenrl``: ``run(PRESETS, argv)``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from metarl.runs import driver as runner
from metarl.runs import flags
from metarl.algorithms.metagenrl import backends as env_backends
from metarl.algorithms.metagenrl.algorithm import MetaGenRLConfig
from metarl.algorithms.metagenrl.es import MetaGenRLESConfig
from metarl.algorithms.metagenrl import validation
from metarl.baselines.ppo import PPOConfig
from metarl.algorithms.metagenrl.meta_test import (METHODS, MetaTest, MetaTestConfig, MetaTestSizes,
                                                   meta_test_summary, results_table)
from metarl.runs.run_dir import ConfigError, resolve_preset

OUTERS = ("metagrad", "es")
# When the meta-test's methods that do not read the learned objective (floors, initial_loss, td3,
# reinforce, ppo) train: "overlap" on a background thread from the start of the run, beside
# meta-training (the default on one process: on 2 CPU cores each gets a core), or "after" it, in
# sequence. The same programs, keys and tasks either way: the schedule changes no number.
SCHEDULES = ("overlap", "after")
# flags of one outer loop only: given with the other, they are refused (exit 2)
METAGRAD_ONLY = ("meta_iterations", "agents_per_env", "lookahead_step", "meta_lr", "warm_start_steps",
                 "second_order")
ES_ONLY = ("population", "generations")


@dataclasses.dataclass(frozen=True)
class Preset:
    """One MetaGenRL preset. train_envs / test_envs: comma-separated env names; metagrad: the
    ``--outer metagrad`` config (its td3: the agents'); es: the ``--outer es`` config; test: the
    meta-test's budget; ppo: the meta-test PPO baseline's settings (total_steps: the budget's);
    methods: the meta-test methods; backends: {env: brax backend} of the envs that do not use the
    registry's default (metarl/algorithms/metagenrl/backends.py)."""

    train_envs: str
    test_envs: str
    metagrad: MetaGenRLConfig
    es: MetaGenRLESConfig
    test: MetaTestSizes
    ppo: PPOConfig
    methods: tuple = METHODS
    # meta-validation of --outer metagrad (metarl/algorithms/metagenrl/validation.py); default off
    val: validation.MetaValConfig = validation.MetaValConfig()
    backends: dict = dataclasses.field(default_factory=dict)

    def validate(self) -> "Preset":
        for cfg in (self.metagrad, self.es, self.test, self.ppo, self.val):
            cfg.validate()
        env_backends.check_preset_backends(self.backends)
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown meta-test method {bad[0]!r}; expected names from {', '.join(METHODS)}")
        return self


def parser() -> argparse.ArgumentParser:
    ap = flags.experiment_parser("MetaGenRL: meta-train one learned objective L_alpha over a TD3 "
                                  "population, then meta-test it.",
                                  outer_step="meta-iterations (--outer es: generations)")
    ap.add_argument("--train-envs", default=None, help="comma-separated meta-training envs")
    ap.add_argument("--test-envs", default=None, help="comma-separated meta-test envs")
    ap.add_argument("--meta-iterations", type=int, default=None,
                    help="with --resume, a larger value extends the run")
    ap.add_argument("--agents-per-env", type=int, default=None)
    ap.add_argument("--lookahead-step", type=float, default=None,
                    help="eta of the lookahead phi' = phi - eta grad L_alpha on the mean (the original's "
                         "lr 1e-3 on its 100 x 20 sum is 2.0)")
    # no argparse choices: MetaGradConfig.validate refuses a bad value (one line, exit 2)
    ap.add_argument("--second-order", default=None, metavar="{reverse,forward}",
                    help="how the meta-gradient differentiates through the lookahead: reverse "
                         "(reverse-over-reverse, as the original) or forward (reverse-over-forward, "
                         "the same quantity; metarl/outer/metagrad.py)")
    ap.add_argument("--meta-lr", type=float, default=None, help="Adam learning rate of alpha (original: 1e-3)")
    ap.add_argument("--warm-start-steps", type=int, default=None,
                    help="env steps over which each agent's policy loss blends from DDPG's -Q1 to L_alpha "
                         "(original: 10,000)")
    ap.add_argument("--outer", default="metagrad", choices=OUTERS,
                    help="metagrad: MetaGenRL's second-order meta-gradient (default); es: ES evolves "
                         "the objective over TD3 lifetimes (a new combination)")
    ap.add_argument("--population", type=int, default=None, help="--outer es: ES population size")
    ap.add_argument("--generations", type=int, default=None,
                    help="--outer es: ES generations; with --resume, a larger value extends the run")
    # written by an extension into config.json: the G the ES schedules span (not a user flag)
    ap.add_argument("--schedule-generations", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--backend", default=None, metavar="ENV=BACKEND[,ENV=BACKEND...]",
                    help="brax backend per env, e.g. hopper=generalized (default: the preset's "
                         "backends, else the registry's default)")
    # written into config.json's argv: the run's resolved {env: backend}, for --resume (not a user flag)
    ap.add_argument("--resolved-backends", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--methods", default=None,
                    help="meta-test methods, comma-separated (default: all of learned, initial_loss, "
                         "td3, reinforce, ppo)")
    ap.add_argument("--meta-test-schedule", default="overlap", choices=SCHEDULES,
                    help="overlap (default): the meta-test's baselines (floors, initial objective, TD3, "
                         "REINFORCE, PPO) train beside meta-training, on a second thread; after: once it "
                         "ends. The numbers are the same; multi-process runs always use after")
    validation.add_flags(ap)
    return ap


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


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``build`` needs: the preset, the checked config, envs and meta-test methods."""

    preset: Preset
    cfg: object  # MetaGenRLConfig (metagrad) or MetaGenRLESConfig (es)
    train_names: list
    test_names: list
    methods: tuple
    outer: str
    backends: dict = dataclasses.field(default_factory=dict)  # {env: backend}, every env of the run
    val: validation.MetaValConfig = validation.MetaValConfig()  # meta-validation (metagrad only)

    def make_env(self, name: str):
        from metarl import envs

        return envs.make(name, backend=self.backends.get(name))

    def start_meta_test(self, alpha0, objective, seed: int, schedule: str) -> MetaTest:
        """The run's meta-test (``MetaTest``), its baselines started now: on a background thread
        with ``schedule == "overlap"`` on a single process, else when ``finish`` runs."""
        import jax

        mt = MetaTest(self.test_names, alpha0, objective, meta_test_config(self), seed, methods=self.methods,
                      backends=self.backends)
        if schedule == "overlap" and jax.process_count() == 1:
            print("[metagenrl] meta-test baselines (" + ", ".join(
                m for m in ("no_update", "zero_action", *self.methods) if m != "learned")
                + ") train beside meta-training, on a second thread", flush=True)
            mt.start(background=True)
        return mt


def configure(args, presets: dict) -> runner.Plan:
    """Preset plus CLI overrides; raises ConfigError naming any bad value."""
    preset, why = resolve_preset(args.preset)
    chosen: Preset = presets[preset]
    try:
        chosen.validate()
    except ValueError as e:
        raise ConfigError(f"preset {preset!r}: {e}") from None
    train_names = parse_envs(chosen.train_envs if args.train_envs is None else args.train_envs, "--train-envs")
    test_names = parse_envs(chosen.test_envs if args.test_envs is None else args.test_envs, "--test-envs")
    methods = tuple(chosen.methods)
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
    backends = env_backends.resolve(train_names + test_names, chosen.backends, args)
    envs_text = f"train {','.join(train_names)} -> test {','.join(test_names)}"
    if env_backends.non_default(backends):
        envs_text += f" ({env_backends.format_backends(env_backends.non_default(backends))})"
    config = {"train_envs": train_names, "test_envs": test_names, "methods": list(methods),
              "backends": backends}
    pinned = {"resolved_backends": env_backends.format_backends(backends)}
    if args.outer == "es":
        validation.configure(chosen.val, args, "es")  # refuses the meta-validation flags
        cfg = es_config(chosen, args)
        return runner.Plan(preset, why, (cfg.es.population_size, "population"), envs_text,
                           {"outer": "es", **config, "config": dataclasses.asdict(cfg)},
                           counts={"generations": cfg.es.generations}, pinned=pinned,
                           algo=Settings(chosen, cfg, train_names, test_names, methods, "es", backends),
                           extension_note=f" (schedules keep spanning {cfg.es.schedule_span})")
    cfg = metagrad_config(chosen, args)
    val = validation.configure(chosen.val, args, "metagrad")
    if val.on and val.lifetime_steps <= cfg.td3.random_steps:
        raise ConfigError(f"--val-lifetime-steps {val.lifetime_steps} is within TD3's {cfg.td3.random_steps} "
                          f"random steps (the validation agents would never use the objective); expected > "
                          f"{cfg.td3.random_steps}")
    if val.on:  # config.json of a run without meta-validation stays as it was
        config["meta_validation"] = dataclasses.asdict(val)
    return runner.Plan(preset, why, (cfg.agents_per_env, "agents_per_env"), envs_text,
                       {**config, "config": dataclasses.asdict(cfg)},
                       counts={"meta_iterations": cfg.meta_iterations}, pinned=pinned,
                       algo=Settings(chosen, cfg, train_names, test_names, methods, "metagrad", backends, val))


def metagrad_config(preset: Preset, args) -> MetaGenRLConfig:
    """The ``--outer metagrad`` configuration: the preset's ``metagrad`` plus flags."""
    flags = {f: getattr(args, f) for f in METAGRAD_ONLY if getattr(args, f) is not None}
    try:
        return dataclasses.replace(preset.metagrad, **flags).validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None


def es_config(preset: Preset, args) -> MetaGenRLESConfig:
    """The ``--outer es`` configuration: the preset's ``es``, --population, --generations."""
    es_fields = {"schedule_generations": args.schedule_generations}
    for flag, field in (("population", "population_size"), ("generations", "generations")):
        if getattr(args, flag) is not None:
            es_fields[field] = getattr(args, flag)
    try:
        return dataclasses.replace(preset.es, es=dataclasses.replace(preset.es.es, **es_fields)).validate()
    except ValueError as e:
        msg = str(e).replace("population_size", "--population").replace("generations must", "--generations must")
        raise ConfigError(msg) from None


def build(plan: runner.Plan, args, mesh) -> runner.Loop:
    s: Settings = plan.algo
    return (_build_es if s.outer == "es" else _build_metagrad)(s, args.seed, mesh, args.meta_test_schedule)


def _build_metagrad(s: Settings, seed: int, mesh, schedule: str = "after") -> runner.Loop:
    import jax
    import numpy as np

    from metarl import distributed
    from metarl.algorithms.metagenrl.algorithm import make_trainer

    cfg, names = s.cfg, s.train_names
    trainer = make_trainer([s.make_env(n) for n in names], cfg, mesh=mesh if jax.device_count() > 1 else None)
    # Host copies with canonical (non-weak) dtypes: the compiled iteration takes exactly these
    # types from a fresh start and from a restored checkpoint alike.
    state = distributed.to_host(trainer.init(jax.random.PRNGKey(seed)))
    initial_alpha = state.alpha
    tester = s.start_meta_test(initial_alpha, trainer.objective, seed, schedule)
    I, E = cfg.meta_iterations, len(names)
    t0 = time.time()
    iteration = jax.jit(trainer.iteration, donate_argnums=0).lower(state).compile()
    compile_s = time.time() - t0
    print(f"[metagenrl] compiled one meta-iteration in {compile_s:.1f}s", flush=True)
    steps_per_it = cfg.agents_per_env * E * cfg.steps_per_iteration
    nan = lambda *shape: np.full(shape, np.nan, np.float32)  # noqa: E731
    val = _validator(s, trainer, seed, initial_alpha)  # None without meta-validation

    def on_device(run):  # device buffers, donated to each iteration (a multi-host run keeps host arrays)
        return dict(run, meta_state=jax.device_put(run["meta_state"])) if jax.process_count() == 1 else run

    def step(run, it):
        t = time.time()
        state, m = iteration(run["meta_state"])
        m = distributed.to_host(m)
        dt = time.time() - t
        rets, jv, cos = np.asarray(m["return"]), np.asarray(m["meta_loss"]), np.asarray(m["alignment"])
        run = dict(run, meta_state=state, iteration=np.int32(it + 1))
        runner.record(run, it, returns=rets, meta_loss=jv, iter_s=dt)
        rec = {"iteration": it + 1, "return": dict(zip(names, rets.tolist())),
               "mean_return": float(np.nanmean(rets)) if np.isfinite(rets).any() else None,
               "meta_loss": dict(zip(names, jv.tolist())), "alignment": dict(zip(names, cos.tolist())),
               "iter_s": dt,
               "env_steps_per_s": steps_per_it / dt}
        progress = (f"iter {it + 1}/{I} return {' '.join(f'{n}={r:.2f}' for n, r in zip(names, rets))} "
                    f"meta_loss {' '.join(f'{x:.3f}' for x in jv)} alignment {' '.join(f'{x:.2f}' for x in cos)} "
                    f"{steps_per_it / dt:,.0f} env-steps/s")
        if val is not None:
            run, extra, tail = val.after(run, it, state.alpha)
            rec.update(extra)
            progress += tail
        return run, rec, progress

    def finish(run):
        history = [{"iteration": i + 1, "return": dict(zip(names, run["returns"][i].tolist())),
                    "meta_loss": run["meta_loss"][i].tolist()} for i in range(I)]
        alpha = distributed.to_host(run["meta_state"].alpha)
        selected = {}
        if val is not None:  # the meta-test's learned objective: --select's
            alpha, selected["meta_validation"] = val.selected(run, alpha)
        meta = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "td3"}
        return _meta_test(s, tester, alpha, history, {**selected,
            "outer": "metagrad", "meta_iterations": I, "agents": cfg.agents_per_env * E,
            "env_steps": I * steps_per_it,
            "config": {"td3": dataclasses.asdict(cfg.td3), "meta": meta,
                       "test": dataclasses.asdict(s.preset.test)}},
            title=f"MetaGenRL meta-test (meta-trained on {', '.join(names)})")

    fresh = {"meta_state": state, "iteration": np.int32(0), "returns": nan(I, E),
             "meta_loss": nan(I, E), "iter_s": nan(I)}
    objectives = lambda run: {"objective": distributed.to_host(run["meta_state"].alpha)}  # noqa: E731
    loop = runner.Loop(
        name="metagenrl", counter="iteration", total=I, state=on_device(fresh), compile_s=compile_s,
        step=step, objectives=objectives,
        finish=finish, history=("returns", "meta_loss", "iter_s"),
        to_host=lambda run: dict(run, meta_state=distributed.to_host(run["meta_state"])),
        from_host=on_device)
    return loop if val is None else _with_validation(loop, val, initial_alpha)


def _validator(s: Settings, trainer, seed: int, alpha0):
    """The run's meta-validation (metarl/algorithms/metagenrl/validation.py), None when off."""
    if not s.val.on:
        return None
    from metarl import envs

    val = validation.Validator([s.make_env(n) for n in s.train_names], s.train_names, s.cfg.td3, s.val,
                               trainer.objective, seed, alpha0, s.cfg.meta_iterations)
    print(f"[metagenrl] meta-validation every {s.val.every} meta-iterations: {s.val.agents} fresh agent(s) "
          f"per meta-training body, {s.val.lifetime_steps}-step lifetimes (compiled in {val.compile_s:.1f}s); "
          f"the meta-test gets the {s.val.selection} objective", flush=True)
    return val


def _with_validation(loop: runner.Loop, val, alpha0) -> runner.Loop:
    """``loop`` with meta-validation's run state (the best objective, kept in checkpoints), its
    iteration-0 record (alpha_0 validated) and the selected objective saved in objective/."""
    def objectives(run):
        last = loop.objectives(run)["objective"]
        chosen, _ = val.selected(run, last)
        other = ("objective_last", last) if val.val.selection == "best" else ("objective_best", run["val_best_alpha"])
        return {"objective": chosen, other[0]: other[1]}

    return dataclasses.replace(
        loop, state={**loop.state, **val.fresh_state(alpha0)}, compile_s=loop.compile_s + val.compile_s,
        objectives=objectives, history=(*loop.history, validation.VAL_HISTORY),
        begin=lambda run: val.begin(run, alpha0, loop.counter))


def _build_es(s: Settings, seed: int, mesh, schedule: str = "after") -> runner.Loop:
    import jax
    import numpy as np

    from metarl.algorithms.metagenrl.es import MetaGenRLES
    from metarl.runs.es_step import es_generation_step
    from metarl.outer.es import compile_generation

    cfg, names = s.cfg, s.train_names
    G, pop, A, E = cfg.es.generations, cfg.es.population_size, cfg.agents_per_member, len(names)
    print(f"[metagenrl-es] population {pop} x {A} agent(s) x {E} env(s), lifetimes of "
          f"{cfg.lifetime_steps} steps, {G} generations", flush=True)
    algo = MetaGenRLES([s.make_env(n) for n in names], cfg, mesh=mesh if jax.device_count() > 1 else None)
    k_es, k_run = jax.random.split(jax.random.PRNGKey(seed))
    es, _, es_state, generation = algo.make_es(k_es)
    alpha0 = jax.device_get(es.get_mean(es_state))
    tester = s.start_meta_test(alpha0, algo.objective, seed, schedule)
    compiled, compile_s, es_state = compile_generation(generation, es_state, k_run, algo.mesh)
    print(f"[metagenrl-es] compiled one generation in {compile_s:.1f}s", flush=True)
    steps_per_gen = pop * A * E * cfg.lifetime_steps
    nan = lambda *shape: np.full(shape, np.nan, np.float32)  # noqa: E731
    fin = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731

    def step(run, g):
        run, info, rec, dt, steps_per_s = es_generation_step(compiled, run, g, steps_per_gen, finite_or_none=True)
        raw = np.asarray(info["task_returns"])  # (population, envs) mean final returns
        env_mean = np.array([np.nanmean(c) if np.isfinite(c).any() else np.nan for c in raw.T])
        runner.record(run, g, fitness_mean=info["mean"], fitness_max=info["max"], returns=env_mean, gen_s=dt)
        rec.update({"return": dict(zip(names, [fin(x) for x in env_mean])),
                    "return_max": dict(zip(names, [fin(np.nanmax(c)) if np.isfinite(c).any() else None
                                                   for c in raw.T])),
                    "gen_s": dt, "env_steps_per_s": steps_per_s})
        progress = (f"gen {g + 1}/{G} fitness mean {float(info['mean']):.3f} max {float(info['max']):.3f} "
                    f"nonfinite={int(info['nonfinite'])} member return "
                    + " ".join(f"{n}={r:.2f}" for n, r in zip(names, env_mean))
                    + f" {steps_per_gen / dt:,.0f} env-steps/s")
        return run, rec, progress

    def objectives(run):
        return {"objective": jax.device_get(es.get_mean(run["es_state"]))}

    def finish(run):
        history = [{"generation": g + 1, "fitness_mean": float(run["fitness_mean"][g]),
                    "fitness_max": float(run["fitness_max"][g]),
                    "return": dict(zip(names, run["returns"][g].tolist()))} for g in range(G)]
        return _meta_test(s, tester, objectives(run)["objective"], history, {
            "outer": "es", "generations": G, "population_size": pop, "agents_per_member": A,
            "lifetime_steps": cfg.lifetime_steps, "env_steps": G * steps_per_gen,
            "fitness": "mean over meta-training envs of each env's final deployed-policy return, "
                       + {"z_score": "z-scored over the population per env", "none": "raw",
                          "centered_rank": "centred ranks over the population per env"}[cfg.es.task_shaping],
            "config": {"es": dataclasses.asdict(cfg), "test": dataclasses.asdict(s.preset.test)}},
            title=f"MetaGenRL objective evolved by ES (meta-trained on {', '.join(names)})")

    fresh = {"es_state": es_state, "key": k_run, "generation": np.int32(0), "fitness_mean": nan(G),
             "fitness_max": nan(G), "returns": nan(G, E), "gen_s": nan(G)}
    return runner.Loop(name="metagenrl-es", counter="generation", total=G, state=jax.device_get(fresh),
                       compile_s=compile_s, step=step, objectives=objectives, finish=finish,
                       history=("fitness_mean", "fitness_max", "returns", "gen_s"))


def meta_test_config(s: Settings, split: str = "test", agents: int | None = None) -> MetaTestConfig:
    """The run's meta-test settings (the preset's budget, PPO and the run's TD3 harness); ``agents``
    replaces the agents per (env, method)."""
    sizes = s.preset.test if agents is None else dataclasses.replace(s.preset.test, num_seeds=agents)
    return MetaTestConfig(td3=s.cfg.td3, sizes=sizes, ppo=s.preset.ppo, split=split)


def _meta_test(s: Settings, tester: MetaTest, alpha, history: list, keys: dict,
               title: str) -> runner.Outcome:
    """Fresh agents, no warm start, no objective updates, on every test env (meta_test.py);
    ``tester``: the run's ``MetaTest`` (``Settings.start_meta_test``), ``alpha`` the learned objective."""
    test = s.preset.test
    results = tester.finish(alpha)
    summary = {"algorithm": "metagenrl",
               "env": f"train:{','.join(s.train_names)} test:{','.join(s.test_names)}",
               "train_envs": s.train_names, "test_envs": s.test_names, "backends": s.backends,
               "meta_test_schedule": "overlap" if tester.background else "after", **keys,
               "meta_train_history": history,
               "meta_test": meta_test_summary(results, s.train_names, s.test_names, test, s.methods)}
    return runner.Outcome(summary, results, title, results_table(results, seen=s.train_names),
                          seen=s.train_names)


def run(presets: dict, argv=None) -> dict:
    """``python -m experiments.metagenrl``; returns summary.json's dict.

    A run that exits (SystemExit: a SIGTERM / SIGINT stop after its checkpoint, exit 143 / 130) while
    the meta-test's baselines still train on their background thread leaves by ``os._exit`` with
    the same code, its output flushed: the interpreter's shutdown would otherwise stop that thread
    inside an XLA computation, which aborts the process (exit 134). Everything the run keeps (the
    checkpoint, metrics, the released lock) is written before; the baselines train again on --resume."""
    ap = parser()
    try:
        return runner.main("metagenrl", argv, ap.parse_args, lambda args: configure(args, presets), build,
                           extendable=("meta_iterations", "generations"))
    except SystemExit as e:
        if not MetaTest.background_running():
            raise
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
