"""Populations over devices and hosts: a 1-D ``jax.sharding.Mesh`` named 'pop'.

The population axis (ES members, or agents) is laid out over all devices of all processes with
``NamedSharding``; XLA partitions the vmapped inner loops along it, and the outer-loop state stays
replicated, so N devices compute the same generation as one. Multi-host (TPU pods, GPU clusters):
call ``initialize`` first in every process; only process 0 writes logs and checkpoints.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax._src import distributed as jax_distributed  # the coordination client (see barrier)
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "pop"


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """``jax.distributed.initialize``: explicit arguments, or auto-detection on TPU pods/SLURM
    when METARL_DISTRIBUTED=1 is set. A no-op for single-process runs."""
    if coordinator is not None:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    elif os.environ.get("METARL_DISTRIBUTED") == "1":
        jax.distributed.initialize()


def barrier(name: str, timeout_s: float = 1800) -> None:
    """Waits until every process of a multi-host run reaches ``name`` (a no-op for one process).

    The coordination service's barrier, with a long timeout. Called before the first cross-process
    collective of each phase: on CPU clusters the first collective sets up gloo, whose key-value
    lookup gives up after 30 s, so processes that drift apart while compiling on a loaded machine
    fail there. jax has no public coordination-service barrier
    (``multihost_utils.sync_global_devices`` is itself a device collective), hence the private
    ``jax._src.distributed.global_state.client``."""
    if jax.process_count() == 1:
        return
    jax_distributed.global_state.client.wait_at_barrier(f"metarl:{name}", int(timeout_s * 1000))


def share_verdict(name: str, error: str | None, timeout_s: float = 1800) -> str | None:
    """Multi-host: process 0's verdict on a launch (an error message, or None) for every process, so
    that all exit together when process 0 alone refuses (e.g. its run dir is locked); a process's
    own error stands. Every process must call it. A no-op for one process."""
    if jax.process_count() == 1:
        return error
    client = jax_distributed.global_state.client
    key = f"metarl:verdict:{name}"
    if is_writer():
        client.key_value_set(key, "ok" if error is None else "error:" + error)
        verdict = error
    else:
        value = client.blocking_key_value_get(key, int(timeout_s * 1000))
        verdict = error if error is not None or value == "ok" else value[len("error:"):]
    barrier(f"verdict:{name}", timeout_s)  # process 0 (the coordinator) stays until all have read it
    return verdict


def is_writer() -> bool:
    return jax.process_index() == 0


def population_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def check_population(population_size: int, mesh: Mesh, what: str = "population_size") -> None:
    """Rejects a population axis that cannot be split evenly over the mesh's devices.

    (Padding with dummy members would waste whole inner loops and, for ES, bias the rank
    shaping; a clear refusal naming the nearest valid sizes is the better default.)"""
    n = mesh.devices.size
    if population_size % n:
        lo, hi = population_size // n * n, (population_size // n + 1) * n
        near = f"{lo} or {hi}" if lo else f"{hi}"
        raise ValueError(f"{what}={population_size} is not divisible by the {n} devices; "
                         f"use a multiple of {n} (e.g. {near})")


def shard_population(tree, mesh: Mesh | None):
    """Constrains every leaf's leading (population) axis to be split over the mesh."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def to_host(tree):
    """The whole value of every leaf as host numpy arrays, in every process.

    Single-process this is ``jax.device_get``; across hosts, arrays sharded over other processes'
    devices are gathered first (``multihost_utils.process_allgather``), so process 0 can checkpoint
    the full population state.
    """
    if jax.process_count() == 1:
        return jax.device_get(tree)
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree_util.tree_map(get, tree)
