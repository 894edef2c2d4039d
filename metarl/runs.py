"""Run plumbing shared by every experiment: presets, run directories, summary.json, CLI errors.

Contract: every experiment writes ``<run-dir>/summary.json`` with at least ``algorithm``, ``env``,
``preset``, ``generations``, ``env_steps``, ``wall_s``, ``devices``, ``processes`` and ``meta_test``
(``learned_return``, ``initial_loss_return``, baseline returns).
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


def resume_args(args, parse, experiment: str | None = None):
    """For ``--resume``: (run dir, the run's stored arguments with this launch's flags);
    ``experiment`` as in ``stored_argv``."""
    run_dir, stored = stored_argv(args.run_dir, experiment)
    resumed = parse(run_argv(stored))  # the run continues with its own configuration
    resumed.resume = True
    for k in ("coordinator", "num_processes", "process_id"):
        setattr(resumed, k, getattr(args, k))
    return run_dir, resumed


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
