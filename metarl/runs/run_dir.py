"""Run-directory plumbing under the run driver (metarl/runs/driver.py): presets, run directories,
stored flags, summary.json, CLI errors.

Contract: every experiment writes ``<run-dir>/summary.json`` with at least ``algorithm``, ``env``,
``preset``, ``seed``, ``outer_steps`` (ES generations for EPG, which also writes ``generations``;
meta-iterations for MetaGenRL, which also writes ``meta_iterations``), ``env_steps``, ``wall_s``,
``devices``, ``processes`` and ``meta_test`` (``learned_return``, ``initial_loss_return``, the
baselines' and the do-nothing floors' returns). ``metrics.jsonl`` has one record per outer step,
numbered from 1 (the outer step just completed) under ``generation`` (EPG) or ``iteration``
(MetaGenRL). ``config.json`` records ``run_format``; ``--resume`` refuses run dirs of another format.

jax (and what imports it) is imported inside the functions that use it: the driver checks a launch
here before a multi-host run calls ``jax.distributed.initialize``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import numpy as np

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
    if p.is_dir() and any(not _is_lock(c) for c in p.iterdir()) and not overwrite:
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
    config = read_json(saved, "--resume: ")
    if not isinstance(config.get("argv"), list) or not all(isinstance(a, str) for a in config["argv"]):
        raise ConfigError(f"--resume: {str(saved)!r} holds no run's flags (no 'argv' list); it is "
                          f"damaged or not a metarl config.json")
    if experiment is not None and config.get("experiment") != experiment:
        raise ConfigError(f"--resume: {str(p)!r} holds a {config.get('experiment', 'unknown')!r} run, "
                          f"not a {experiment!r} run")
    if config.get("run_format", 1) != RUN_FORMAT:
        raise ConfigError(f"--resume: {str(p)!r} was written in run format {config.get('run_format', 1)} "
                          f"(an older metarl; its metrics.jsonl numbering differs), this metarl writes "
                          f"format {RUN_FORMAT}; start a new run in another --run-dir")
    return p, config["argv"]


def finished_run(run_dir: Path) -> dict | None:
    """The summary of a finished run (summary.json is written last), else None. Resuming a finished
    run has nothing to do: the experiments then rewrite nothing and return this summary."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    summary = read_json(path, "--resume: ")
    print(f"run in {str(run_dir)!r} is finished (summary.json present); nothing to resume, nothing "
          f"rewritten", flush=True)
    return summary


def read_json(path: Path, context: str = "") -> dict:
    """A JSON object from ``path``; ConfigError naming the file when it is unreadable or damaged."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise ConfigError(f"{context}cannot read {str(path)!r} ({why}); it is damaged or not a "
                          f"metarl file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{context}cannot read {str(path)!r} (not a JSON object); it is damaged or "
                          f"not a metarl file")
    return data


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
    """Creates the run directory; with ``overwrite`` the old contents are removed first (all but
    the run's lock file, held by the caller)."""
    if overwrite and p.is_dir():
        for c in p.iterdir():
            if _is_lock(c):
                continue
            if c.is_dir() and not c.is_symlink():
                shutil.rmtree(c)
            else:
                c.unlink()
    p.mkdir(parents=True, exist_ok=True)
    return p


def _is_lock(p: Path) -> bool:
    """The run lock (metarl.runs.run_lock) and its private files: not part of a run's contents."""
    return p.name == ".lock" or p.name.startswith(".lock.")


def write_json_atomic(path: Path, data: dict) -> None:
    """Writes JSON via a temporary file and an atomic rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=_jsonable)
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
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


def fmt_time(s: float) -> str:
    """Seconds as ``1h02m`` or ``3m04s`` (progress lines' ETA)."""
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
