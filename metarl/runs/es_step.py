"""One ES generation as a step of the run driver, shared by every ES-driven algorithm (EPG and
MetaGenRL's objective evolved by ES): run the compiled generation on the run's key, bring its info to
the host, advance the run state, and start the generation's metrics.jsonl record."""
from __future__ import annotations

import time

import jax
import numpy as np


def _finite(x):
    return float(x) if np.isfinite(x) else None


def es_generation_step(compiled, run: dict, g: int, env_steps: int, finite_or_none: bool = False):
    """(run, info, record, seconds, env steps/s): generation ``g`` (0-based) of ``compiled(es_state, key)``.

    The run state's ``es_state``, ``key`` and ``generation`` advance; ``info`` is the generation's
    info on the host; ``record`` holds ``generation`` (1-based), ``fitness_mean``/``max``/``min``,
    ``nonfinite``, and the signal diagnostics ``fitness_ties`` (the fraction of members tied with
    another) and ``es_grad_cosine`` (agreement of the ES gradients of two halves of the tasks; None
    with one task per member: metarl.outer.es); env steps/s is ``env_steps`` (one generation's) over its wall time. ``finite_or_none``: non-finite fitness figures are recorded as None (JSON null).
    """
    k_next, k = jax.random.split(run["key"])
    t0 = time.time()
    new_state, info = compiled(run["es_state"], k)
    info = jax.device_get(info)
    dt = time.time() - t0
    run = dict(run, es_state=jax.device_get(new_state), key=jax.device_get(k_next),
               generation=np.int32(g + 1))
    num = _finite if finite_or_none else float
    rec = {"generation": g + 1, "fitness_mean": num(info["mean"]), "fitness_max": num(info["max"]),
           "fitness_min": num(info["min"]), "nonfinite": int(info["nonfinite"]),
           "fitness_ties": float(info["fitness_ties"]), "es_grad_cosine": _finite(info["es_grad_cosine"])}
    if "fitness_noise_ratio" in info:
        rec["fitness_noise_ratio"] = _finite(info["fitness_noise_ratio"])
    return run, info, rec, dt, env_steps / dt
