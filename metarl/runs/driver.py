"""The one run driver of every meta-learning experiment: launch, outer loop, checkpoints, summary.

An algorithm (``metarl/algorithms/<name>/run.py``) supplies three hooks and the driver does the rest::

    parse(argv)                  -> args     (``experiment_parser`` + the algorithm's own flags)
    configure(args)              -> Plan     (checked configuration; raises ConfigError, writes nothing)
    build(plan, args, mesh)      -> Loop     (compiled outer step, fresh run state, step/finish hooks)

    runner.main("epg_point", argv, parse, configure, build, extendable=("generations",))

The driver owns, for every algorithm alike: the shared flags and the launch-only ones (which
config.json never stores), ``--resume`` (stored flags, changed-flag refusals, extensions of a count
flag, finished runs left untouched), the exit-2 contract for bad input, config.json, the run state's
checkpoint cadence (orbax, every ``--checkpoint-every`` outer steps and the last), ``metrics.jsonl``
numbered from 1, progress lines with an ETA, the saved objectives, ``meta_test.{json,csv,png}``
(``metarl.runs.meta_test_schema``) and ``summary.json``, written last (its presence marks a finished run).

jax, and the modules that import it, are imported inside the functions that use them: a multi-host
run must call ``jax.distributed.initialize`` (``launch``) before anything imports jax.
"""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from metarl.runs import run_lock
from metarl.runs.flags import resume_args, run_argv, with_counts
from metarl.runs.meta_test_schema import write_meta_test
from metarl.runs.metrics_log import MetricsLog
from metarl.runs.preempt import Stop, exit_code

from metarl.runs.run_dir import (RUN_FORMAT, ConfigError, check_run_dir, checked_population_mesh, device_info,
                                 enable_compilation_cache, fail, finished_run, fmt_time, prepare_run_dir,
                                 write_json_atomic)

@dataclasses.dataclass
class Plan:
    """An algorithm's checked configuration, before anything is written.

    ``population``: (size, flag) of what is split over the devices (refused by flag name when it
    does not split evenly); ``header``: what the first progress line says about the run;
    ``config``: config.json fields beyond the driver's own; ``counts``: extendable count flags and
    their values (stored explicitly in config.json's argv); ``algo``: anything ``build`` needs;
    ``extension_note``: what an extended run's message adds (e.g. what its schedules span);
    ``pinned``: flags (dest -> value) written explicitly into config.json's argv as the counts are,
    so that --resume rebuilds the run's own values even if a preset changes later."""

    preset: str
    why: str
    population: tuple[int, str]
    header: str
    config: dict
    counts: dict = dataclasses.field(default_factory=dict)
    algo: Any = None
    extension_note: str = ""
    pinned: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    """What an algorithm's ``finish`` returns: its summary keys, the meta-test
    (``{env: {method: result}}``, metarl.runs.meta_test_schema's schema), the plot title, the meta-training
    envs among the test envs (``seen``) and the results table to print."""

    summary: dict
    results: dict
    title: str
    table: str
    seen: tuple = ()


def _identity(x):
    return x


@dataclasses.dataclass
class Loop:
    """One run's outer loop, built by an algorithm's ``build``.

    ``state``: the fresh run state (a dict pytree of host arrays) with ``state[counter] == 0`` and,
    for each key in ``history``, an array with one row per outer step (NaN until recorded; an
    extended run's are padded). ``step(run, i) -> (run, record, progress)`` runs outer step ``i``
    (0-based) and returns the new state (``run[counter] == i + 1``), its metrics.jsonl record and a
    progress text. ``objectives(run) -> {dir: params}``: the learned objectives to save once
    meta-training ends. ``finish(run, test_key_seed) -> Outcome``: the meta-test and the summary
    keys. ``to_host(run)``: the state as checkpointed (every process calls it; a multi-host gather
    may happen there); ``from_host(run)``: after a restore (e.g. onto devices). ``begin(run) ->
    (run, record, progress)`` (optional): on a fresh start, before outer step 0, e.g. an evaluation
    of the initial objective; its record is metrics.jsonl's step 0."""

    name: str
    counter: str
    total: int
    state: dict
    compile_s: float
    step: Callable
    objectives: Callable
    finish: Callable
    history: tuple = ()
    to_host: Callable = _identity
    from_host: Callable = _identity
    begin: Callable | None = None


def record(run: dict, i: int, **values) -> None:
    """Writes outer step ``i``'s row of the run state's history arrays (copies: arrays restored
    from a checkpoint may be read-only)."""
    for k, v in values.items():
        run[k] = run[k].copy()
        run[k][i] = v


def launch(experiment: str, argv, parse, configure, extendable: tuple[str, ...] = ()):
    """Parses and checks a launch and takes the run dir's lock (process 0; ``metarl.runs.run_lock``);
    returns (args, plan, run dir, mesh, lock). Exits 2 on bad input, or on a run dir that another
    live process holds, before anything is written."""
    args = parse(argv)
    lock = None
    try:
        if args.resume:
            run_dir, args = resume_args(args, parse, experiment=experiment, argv=argv, extendable=extendable)
        from metarl import distributed  # the first import of jax: initialize comes before any other use

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        error = None
        try:
            if args.checkpoint_every <= 0:
                raise ConfigError(f"--checkpoint-every must be a positive integer, got {args.checkpoint_every}")
            plan = configure(args)
            if not args.resume:
                run_dir = Path(args.run_dir or f"runs/{experiment}-{plan.preset}")
            mesh = checked_population_mesh(*plan.population)
            if distributed.is_writer():
                lock = _lock_run_dir(run_dir, args)
        except ConfigError as e:
            error = str(e)
        # process 0 alone checks and locks the run dir; the others take its verdict
        error = distributed.share_verdict("launch", error)
        if error is not None:
            raise ConfigError(error)
    except ConfigError as e:
        if lock is not None:
            lock.release()
        fail(str(e))
    return args, plan, run_dir, mesh, lock


def _lock_run_dir(run_dir: Path, args):
    """Takes the run dir's lock after checking it (never removing or writing into a dir that a live
    run holds); a fresh start re-checks the dir once it holds the lock (a run that was in it has
    then ended). The others need --run-dir only to exist on process 0."""
    check_run_dir(run_dir, overwrite=True)  # not a file
    run_lock.check_free(run_dir)
    if not args.resume:
        check_run_dir(run_dir, overwrite=args.overwrite)
    lock = run_lock.acquire(run_dir, say=lambda line: print(line, flush=True))
    try:
        if not args.resume:
            check_run_dir(run_dir, overwrite=args.overwrite)
    except ConfigError:
        lock.release()
        raise
    return lock


def main(experiment: str, argv, parse, configure, build, extendable: tuple[str, ...] = ()) -> dict:
    """Runs (or resumes, or extends) one experiment to its summary; returns summary.json's dict.

    SIGTERM / SIGINT (``metarl.runs.preempt``): the outer step in flight is finished and checkpointed,
    then the process exits 143 / 130; the run dir's lock is released on every exit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, plan, run_dir, mesh, lock = launch(experiment, argv, parse, configure, extendable)
    release = lock.release if lock is not None else (lambda: None)
    stop = Stop(experiment, on_exit=release).install()
    try:
        extended_from = getattr(args, "extended_from", None)
        if args.resume and extended_from is None:
            try:
                done = finished_run(run_dir)
            except ConfigError as e:
                fail(str(e))
            if done is not None:
                return done
        return _run(experiment, argv, args, plan, run_dir, mesh, build, stop, extended_from)
    finally:
        stop.uninstall()
        release()


def _run(experiment, argv, args, plan, run_dir, mesh, build, stop, extended_from) -> dict:
    import jax  # after jax.distributed.initialize (see the module docstring)

    from metarl import distributed  # imports jax
    from metarl.runs.checkpoint import RunCheckpointer  # imports jax

    enable_compilation_cache()
    writer = distributed.is_writer()
    t_start = time.time()
    # config.json first: once the preset line is out, the run dir holds the run (a second launch that
    # reads it then finds the lock and the config, never a half-made dir)
    _write_config(experiment, argv, args, plan, run_dir, writer, extended_from)
    print(f"[{experiment}] preset={plan.preset} ({plan.why}); {plan.header}; devices={jax.device_count()} "
          f"({jax.default_backend()}), processes={jax.process_count()}; run dir {run_dir}"
          f"{' (resuming)' if args.resume else ''}", flush=True)
    distributed.barrier("build")  # processes meet before the first collective (see barrier)
    loop = build(plan, args, mesh)
    distributed.barrier("restore")
    ckpt = RunCheckpointer(run_dir / "checkpoints", every=args.checkpoint_every, is_writer=writer)
    run = _restore(loop, ckpt, args, extended_from)
    return _outer_loop(experiment, plan, loop, ckpt, run, run_dir, args, writer, t_start, stop)


def _write_config(experiment, argv, args, plan: Plan, run_dir: Path, writer: bool, extended_from):
    if writer and not args.resume:
        prepare_run_dir(run_dir, overwrite=args.overwrite)
        write_json_atomic(run_dir / "config.json", {
            "experiment": experiment, "run_format": RUN_FORMAT, "preset": plan.preset, "seed": args.seed,
            "argv": with_counts(run_argv(argv), {**plan.counts, **plan.pinned}), **plan.config})
    if writer and extended_from is not None:  # later resumes continue the extended run
        config = json.loads((run_dir / "config.json").read_text())
        write_json_atomic(run_dir / "config.json", dict(config, argv=args.stored_argv,
                                                        config=plan.config.get("config")))
        print(f"[{experiment}] extending the run from {extended_from} to "
              f"{', '.join(f'{v} {k}' for k, v in plan.counts.items())}{plan.extension_note}", flush=True)


def _restore(loop: Loop, ckpt, args, extended_from) -> dict:
    """The run state to start from: fresh, or the newest readable checkpoint (an extended run's
    checkpoints hold ``extended_from`` history rows; the rest stay NaN)."""
    run = loop.state
    if not args.resume:
        return run
    template = run if extended_from is None else {
        k: (v[:extended_from] if k in loop.history else v) for k, v in run.items()}
    restored = ckpt.resume(template, loop.counter, loop.name)
    if restored is template:
        return run
    restored = {k: (np.concatenate([v, run[k][len(v):]]) if k in loop.history else v)
                for k, v in restored.items()}
    return loop.from_host(restored)


def _outer_loop(experiment: str, plan: Plan, loop: Loop, ckpt, run: dict, run_dir: Path, args,
                writer: bool, t_start: float, stop=None) -> dict:
    import jax  # after jax.distributed.initialize (see the module docstring)

    from metarl.runs.checkpoint import save_params  # imports jax

    name = loop.name
    start = int(run[loop.counter])
    # a resumed run keeps the records of steps 0..start; a fresh one none (begin's step 0 is rewritten)
    log = MetricsLog(run_dir, start + 1 if start else 0, enabled=writer, step_key=loop.counter)
    t_train = time.time()
    if stop is not None:
        stop.phase("loop")
    if start == 0 and loop.begin is not None:
        run, record, progress = loop.begin(run)
        log.write(record)
        print(f"[{name}] {progress}", flush=True)
    for i in range(start, loop.total):
        run, record, progress = loop.step(run, i)
        done = i + 1
        log.write(record)
        eta = (time.time() - t_train) / (done - start) * (loop.total - done)
        print(f"[{name}] {progress} ETA {fmt_time(eta)}", flush=True)
        saved = done % args.checkpoint_every == 0 or done == loop.total
        if saved:
            ckpt.maybe_save(done, loop.to_host(run), force=True)
        if stop is not None and (signum := stop.agreed()) is not None:
            _stop_after(signum, done, saved, loop, ckpt, log, run, run_dir, writer)
    if stop is not None:
        stop.phase("finish")
    log.close()
    ckpt.close()
    train_s = time.time() - t_train
    objectives = loop.objectives(run)
    if writer:
        for directory, params in objectives.items():
            save_params(run_dir / directory, params)
    meta_train_s = time.time() - t_start
    t_test = time.time()
    out: Outcome = loop.finish(run)
    summary = {**out.summary, "experiment": experiment, "preset": plan.preset, "seed": args.seed,
               "outer_steps": loop.total, "compile_s": loop.compile_s, "train_s": train_s,
               "meta_train_wall_s": meta_train_s, "meta_test_s": time.time() - t_test,
               "wall_s": time.time() - t_start, "resumed_from": start if args.resume else None,
               "devices": device_info(), "processes": jax.process_count(), **_meta_test_last(out)}
    if writer:
        write_meta_test(run_dir, out.results, out.title, seen=out.seen)
        write_json_atomic(run_dir / "summary.json", summary)
    if stop is not None:
        stop.phase("done")  # the run is finished: a signal now changes nothing
    print(out.table, flush=True)
    print(f"[{name}] wrote {run_dir}/summary.json, meta_test.json, meta_test.csv, meta_test.png "
          f"({summary['wall_s']:.0f}s)" if writer else f"[{name}] process 0 writes the outputs", flush=True)
    return summary


def _stop_after(signum: int, done: int, saved: bool, loop: Loop, ckpt, log, run, run_dir: Path, writer: bool):
    """A signal asked the run to stop (every process agrees on ``done``): checkpoints outer step
    ``done`` unless just saved, says so in one line and exits 128 + signum."""
    if not saved:
        ckpt.maybe_save(done, loop.to_host(run), force=True)
    log.close()
    ckpt.close()
    where = (f"checkpoint {done} is in {run_dir / 'checkpoints'}" if writer
             else f"process 0 saved checkpoint {done}")
    print(f"[{loop.name}] {signal.Signals(signum).name}: stopped after {loop.counter} {done} of "
          f"{loop.total}; {where}; continue with --resume --run-dir {run_dir}", file=sys.stderr, flush=True)
    raise SystemExit(exit_code(signum))


def _meta_test_last(out: Outcome) -> dict:
    """``meta_test`` last in summary.json (the keys a reader looks for first sit above it)."""
    return {"meta_test": out.summary["meta_test"]}
