"""Environment registry: ``make(name, backend=None, episode_length=None)``.

Default physics backends were chosen by measured batched step throughput on a 2-core CPU
(benchmarks/env_throughput.py, figures in benchmarks/RESULTS.md): spring was the fastest for every
family, 2x to 4x over positional at 512 envs (GoalAnt 13.8k vs 3.4k steps/s, DirHalfCheetah 8.9k vs
2.6k, RandomHopper 72k vs 19k, RandomReacher 50k vs 23k). spring is the least accurate of brax's
pipelines; pass backend="positional" or "generalized" where contact fidelity matters more than speed.
"""
from __future__ import annotations

from metarl.envs.core import SPLITS, EnvState, TaskFamily
from metarl.envs.point import GoalPoint
from metarl.envs.families import (DirHalfCheetah, DirHopper, GoalAnt, Plain, RandomHopper,
                                  RandomReacher)

BACKENDS = ("spring", "positional", "generalized", "mjx")
# goal_point is pure JAX: its one backend is "jax"
_PURE_JAX = {"goal_point"}

# name -> (constructor(backend, episode_length), default backend, default episode length)
_REGISTRY = {
    "goal_point": (GoalPoint, "jax", 100),
    "goal_ant": (GoalAnt, "spring", 1000),
    "dir_halfcheetah": (DirHalfCheetah, "spring", 1000),
    "dir_hopper": (DirHopper, "spring", 1000),
    "random_hopper": (RandomHopper, "spring", 1000),
    "random_reacher": (RandomReacher, "spring", 50),
    "ant": (lambda b, e: Plain("ant", b, e), "spring", 1000),
    "hopper": (lambda b, e: Plain("hopper", b, e), "spring", 1000),
    "halfcheetah": (lambda b, e: Plain("halfcheetah", b, e), "spring", 1000),
    "reacher": (lambda b, e: Plain("reacher", b, e), "spring", 50),
    "walker2d": (lambda b, e: Plain("walker2d", b, e), "spring", 1000),
    "inverted_double_pendulum": (lambda b, e: Plain("inverted_double_pendulum", b, e), "spring", 1000),
}
ENV_NAMES = tuple(_REGISTRY)


def default_backend(name: str) -> str:
    _check_name(name)
    return _REGISTRY[name][1]


def backends_of(name: str) -> tuple[str, ...]:
    """The backends ``make(name, backend=...)`` accepts."""
    _check_name(name)
    return ("jax",) if name in _PURE_JAX else BACKENDS


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment {name!r}; expected one of {', '.join(ENV_NAMES)}")


def make(name: str, backend: str | None = None, episode_length: int | None = None) -> TaskFamily:
    """Builds a task family by name; unknown names or backends raise a one-line ValueError."""
    _check_name(name)
    ctor, default_be, default_len = _REGISTRY[name]
    backend = default_be if backend is None else backend
    allowed = backends_of(name)
    if backend not in allowed:
        raise ValueError(f"unknown backend {backend!r} for {name}; expected one of {', '.join(allowed)}")
    episode_length = default_len if episode_length is None else int(episode_length)
    if episode_length <= 0:
        raise ValueError(f"episode_length must be a positive integer, got {episode_length}")
    return ctor(backend, episode_length)


__all__ = ["make", "ENV_NAMES", "BACKENDS", "SPLITS", "EnvState", "TaskFamily", "default_backend",
           "backends_of"]
