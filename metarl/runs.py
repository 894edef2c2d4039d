"""Run plumbing shared by every experiment: presets, run directories, summary.json, CLI errors.

Contract: every experiment writes ``<run-dir>/summary.json`` with at least ``algorithm``, ``env``,
``preset``, ``seed``, ``outer_steps`` (ES generations for EPG, which also writes ``generations``;
meta-iterations for MetaGenRL, which also writes ``meta_iterations``), ``env_steps``, ``wall_s``,
``devices``, ``processes`` and ``meta_test`` (``learned_return``, ``initial_loss_return``, the
baselines' and the do-nothing floors' returns). ``metrics.jsonl`` has one record per outer step,
numbered from 1 (the outer step just completed) under ``generation`` (EPG) or ``iteration``
(MetaGenRL). ``config.json`` records ``run_format``; ``--resume`` refuses run dirs of another format.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

PRESETS = ("smoke", "cpu", "paper")
# 2: metrics.jsonl numbered from 1 for every algorithm (format 1 numbered EPG generations from 0)
RUN_FORMAT = 2


class ConfigError(ValueError):
    """A bad user-supplied value; the CLI prints its one-line message and exits with code 2."""


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def resolve_preset(preset: str | None) -> tuple[str, str]:
    """Returns (preset, reason): the given one, else ``cpu`` without an accelerator, else ``paper``."""
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        return preset, "given by --preset"
    import jax

    platform = jax.default_backend()
    if platform == "cpu":
        return "cpu", "no accelerator visible to jax (backend: cpu)"
    return "paper", f"accelerator visible to jax (backend: {platform})"


def check_run_dir(path: str | os.PathLike, overwrite: bool = False, resume: bool = False,
                  resumable: bool = True) -> Path:
    """Validates a run directory without touching it; raises ConfigError for unusable ones.

    ``resumable``: whether the experiment offers --resume (named in the refusal message)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"--run-dir {str(p)!r} is a file; expected a directory")
    if resume:
        if not p.is_dir():
            raise ConfigError(f"--resume given but run dir {str(p)!r} does not exist")
        return p
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        hint = " or --resume to continue it" if resumable else ""
        raise ConfigError(f"--run-dir {str(p)!r} already holds a run; pass --overwrite to replace it{hint}")
    return p


def stored_argv(run_dir: str | None, experiment: str | None = None) -> tuple[Path, list[str]]:
    """For ``--resume``: (run dir, the argv the run was started with, from its config.json).

    ``experiment``: when given, a run dir of another experiment is refused by name (its stored
    flags are not this experiment's, and the refusal must not name flags this one lacks)."""
    if run_dir is None:
        raise ConfigError("--resume needs --run-dir of the run to continue")
    p = check_run_dir(run_dir, resume=True)
    saved = p / "config.json"
    if not saved.is_file():
        raise ConfigError(f"--resume: no run to continue in {str(p)!r} (config.json missing)")
    config = json.loads(saved.read_text())
    if experiment is not None and config.get("experiment") != experiment:
        raise ConfigError(f"--resume: {str(p)!r} holds a {config.get('experiment', 'unknown')!r} run, "
                          f"not a {experiment!r} run")
    if config.get("run_format", 1) != RUN_FORMAT:
        raise ConfigError(f"--resume: {str(p)!r} was written in run format {config.get('run_format', 1)} "
                          f"(an older metarl; its metrics.jsonl numbering differs), this metarl writes "
                          f"format {RUN_FORMAT}; start a new run in another --run-dir")
    return p, config["argv"]


# Flags of one launch, not of the run: never stored in config.json, taken from the current command
# line on --resume (a resumed multi-host run may get a new coordinator; each process has its own id).
LAUNCH_FLAGS = {"--overwrite": 0, "--resume": 0, "--coordinator": 1, "--num-processes": 1,
                "--process-id": 1}


def run_argv(argv: list[str]) -> list[str]:
    """``argv`` without the launch flags: what config.json stores for --resume."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        name = a.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = LAUNCH_FLAGS[name] if "=" not in a else 0
            continue
        out.append(a)
    return out


# Flags a resumed run may change: they alter neither the meta-training nor its recorded series.
RESUME_SAFE = frozenset({"checkpoint_every"})


def resume_args(args, parse, experiment: str | None = None, argv: list[str] | None = None,
                extendable: tuple[str, ...] = ()):
    """For ``--resume``: (run dir, the run's stored arguments with this launch's flags);
    ``experiment`` as in ``stored_argv``.

    ``argv``: this launch's command line. A flag on it whose value differs from the stored run's is
    applied where that is safe (``RESUME_SAFE``) and refused (ConfigError naming the flag) otherwise:
    a flag given on the command line is never silently ignored. ``extendable``: count flags (e.g.
    ``generations``) that may grow: the run is extended to the new count, ``schedule_<dest>`` keeps
    the stored count (its schedules continue unchanged), ``extended_from`` holds the stored count
    and ``stored_argv`` the argv to write back; a smaller count is refused."""
    run_dir, stored = stored_argv(args.run_dir, experiment)
    stored = run_argv(stored)
    resumed = parse(stored)  # the run continues with its own configuration
    resumed.extended_from, resumed.stored_argv = None, stored
    if argv is not None:
        given = _without_run_dir(run_argv(argv))
        merged = parse(stored + given)  # argparse: the last value of a flag wins
        base = parse(stored)
        for dest, value in vars(merged).items():
            old = getattr(base, dest, None)
            if value == old or dest in ("run_dir", "resume", "extended_from", "stored_argv"):
                continue
            flag = "--" + dest.replace("_", "-")
            if dest in extendable and isinstance(value, int) and isinstance(old, int):
                if value < old:
                    raise ConfigError(f"--resume: {flag} {value} is below the stored run's {old}; a run "
                                      f"can be extended, not shortened")
                setattr(resumed, dest, value)
                resumed.extended_from = old
                schedule = f"schedule_{dest}"
                if getattr(resumed, schedule, None) is None:
                    setattr(resumed, schedule, old)
                resumed.stored_argv = stored + [flag, str(value), f"--schedule-{dest.replace('_', '-')}",
                                                str(getattr(resumed, schedule))]
                continue
            if dest not in RESUME_SAFE:
                raise ConfigError(f"--resume: {flag} {_shown(value)} differs from the stored run's "
                                  f"{_shown(getattr(resumed, dest, None))}; a resumed run keeps it "
                                  f"(start a new run to change it)")
            setattr(resumed, dest, value)
    resumed.resume = True
    for k in ("coordinator", "num_processes", "process_id"):
        setattr(resumed, k, getattr(args, k))
    return run_dir, resumed


def _without_run_dir(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--run-dir":
            skip = True
        elif not a.startswith("--run-dir="):
            out.append(a)
    return out


def _shown(value) -> str:
    return "(off)" if value is False else "(on)" if value is True else "(preset default)" if value is None \
        else repr(value) if isinstance(value, str) else str(value)


def finished_run(run_dir: Path) -> dict | None:
    """The summary of a finished run (summary.json is written last), else None. Resuming a finished
    run has nothing to do: the experiments then rewrite nothing and return this summary."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    print(f"run in {str(run_dir)!r} is finished (summary.json present); nothing to resume, nothing "
          f"rewritten", flush=True)
    return json.loads(path.read_text())


def checked_population_mesh(size: int, what: str):
    """The population mesh over all devices; ConfigError when ``size`` (named ``what``) does not
    split evenly over it."""
    from metarl import distributed

    mesh = distributed.population_mesh()
    try:
        distributed.check_population(size, mesh, what=what)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return mesh


def prepare_run_dir(p: Path, overwrite: bool = False) -> Path:
    """Creates the run directory; with ``overwrite`` the old contents are removed first."""
    import shutil

    if overwrite and p.is_dir():
        shutil.rmtree(p)
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_json_atomic(path: Path, data: dict) -> None:
    """Writes JSON via a temporary file and an atomic rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=_jsonable)
    os.replace(tmp, path)


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, np.generic):
            return x.item()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def enable_compilation_cache() -> None:
    """Persistent XLA compilation cache (~/.cache/metarl/xla or $JAX_COMPILATION_CACHE_DIR), so a
    re-run or a resumed run skips compiling again. METARL_NO_COMPILATION_CACHE=1 turns it off."""
    if os.environ.get("METARL_NO_COMPILATION_CACHE") == "1":
        return
    import jax

    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(Path.home() / ".cache" / "metarl" / "xla")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def device_info() -> dict:
    import jax

    return {"devices": jax.device_count(), "local_devices": jax.local_device_count(),
            "processes": jax.process_count(), "platform": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind}


def common_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--preset", default=None,
                    help=f"one of {', '.join(PRESETS)}; default: cpu without an accelerator, else paper")
    ap.add_argument("--run-dir", default=None, help="output directory (default: runs/<experiment>-<preset>)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    return ap
