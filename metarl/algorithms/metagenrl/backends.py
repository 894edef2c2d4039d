"""Per-body physics backends of a MetaGenRL run.

A preset's ``backends`` ({env: backend}) and ``--backend env=backend[,env=backend...]`` choose the
brax pipeline of each env (later wins: flag over preset over the registry's default,
``metarl.envs.default_backend``). The run resolves one backend for every env it uses (meta-training
and meta-test alike), builds each env with it (meta-training, the ``--outer es`` fitness agents,
the meta-test) and records the map as ``backends`` in config.json and summary.json. config.json's
argv also carries it as the hidden ``--resolved-backends``, so that ``--resume`` (and
``metarl.load_objective``) rebuild the run's own backends even if a preset changes later; a run
resumed from before backends were recorded gets the registry's defaults, which it ran on.

Why: brax's hopper pays +1 per step for staying healthy. On spring (the registry's default, the
fastest) a zero-action hopper stays healthy for the whole 1,000-step horizon (return ~1000); on
``generalized`` it falls after ~120 steps, as MuJoCo's Hopper does (benchmarks/env_floors.py).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from metarl.runs.run_dir import ConfigError

EXPECTED = "expected env=backend[,env=backend...] (e.g. hopper=generalized)"


def check_backend(env: str, backend: str, what: str) -> None:
    """ConfigError (one line, naming ``what``) unless ``env`` is a registry env that has ``backend``."""
    from metarl.envs import ENV_NAMES, backends_of

    if env not in ENV_NAMES:
        raise ConfigError(f"{what}: unknown environment {env!r}; expected names from {', '.join(ENV_NAMES)}")
    allowed = backends_of(env)
    if backend not in allowed:
        raise ConfigError(f"{what}: unknown backend {backend!r} for {env}; expected one of {', '.join(allowed)}")


def parse_backends(text: str, flag: str = "--backend") -> dict:
    """``env=backend[,env=backend...]`` -> {env: backend}; ConfigError naming the bad part."""
    pairs = [t.strip() for t in text.split(",") if t.strip()]
    if not pairs:
        raise ConfigError(f"{flag} {text!r} names no env=backend pair; {EXPECTED}")
    out = {}
    for pair in pairs:
        env, sep, backend = (x.strip() for x in pair.partition("="))
        if not sep or not env or not backend:
            raise ConfigError(f"{flag}: {pair!r} is not env=backend; {EXPECTED}")
        check_backend(env, backend, flag)
        if env in out:
            raise ConfigError(f"{flag} {text!r} names {env} twice")
        out[env] = backend
    return out


def check_preset_backends(backends: Mapping[str, str]) -> None:
    """A preset's ``backends`` (ConfigError, a ValueError, naming the bad entry)."""
    for env, backend in backends.items():
        check_backend(env, backend, "backends")


def format_backends(backends: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in backends.items())


def resolve(names: Sequence[str], preset_backends: Mapping[str, str], args) -> dict:
    """{env: backend} for every env of the run (``names``: meta-training then meta-test envs, each
    once), from ``args.backend`` (the flag), the preset's and the registry's defaults; a resumed run
    (``args.resolved_backends``, from its config.json) keeps its own."""
    from metarl.envs import default_backend

    names = list(dict.fromkeys(names))
    given = {} if args.backend is None else parse_backends(args.backend)
    unused = [e for e in given if e not in names]
    if unused:
        raise ConfigError(f"--backend: {unused[0]} is not an env of this run; expected names from "
                          f"{', '.join(names)}")
    if getattr(args, "resolved_backends", None) is not None:
        stored = parse_backends(args.resolved_backends, "--resolved-backends")
        return {n: stored.get(n, default_backend(n)) for n in names}
    if getattr(args, "resume", False):  # a run from before backends were recorded: the registry's
        return {n: default_backend(n) for n in names}
    return {n: given.get(n, preset_backends.get(n, default_backend(n))) for n in names}


def non_default(backends: Mapping[str, str]) -> dict:
    """The entries that differ from the registry's default (for the progress header)."""
    from metarl.envs import default_backend

    return {k: v for k, v in backends.items() if v != default_backend(k)}
