"""Helper run in a subprocess: one EPG generation on a population mesh of the visible devices."""
import json
import sys

import jax
import numpy as np

from metarl import distributed, envs
from metarl.epg import EPG, EPGConfig
from metarl.inner.epg_lifetime import LifetimeConfig
from metarl.outer.es import ESConfig


def generation_returns(mesh):
    env = envs.make("random_reacher")
    cfg = EPGConfig(LifetimeConfig(lifetime_steps=64, eval_envs=1),
                    ESConfig(population_size=4, generations=2), tasks_per_member=1)
    epg = EPG(env, cfg, mesh=mesh)
    es, params, state, gen = epg.make_es(jax.random.PRNGKey(0))
    kw = {"out_shardings": distributed.replicated(mesh)} if mesh is not None else {}
    state, info = jax.jit(gen, **kw)(state, jax.random.PRNGKey(1))
    mean = jax.device_get(state.mean)  # the flat ES mean, replicated on every process
    return np.asarray(jax.device_get(info["returns"])), np.asarray(mean)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "devices":
        r1, m1 = generation_returns(distributed.population_mesh(jax.devices()[:1]))
        r4, m4 = generation_returns(distributed.population_mesh())
        print(json.dumps({"n": jax.device_count(), "r1": r1.tolist(), "r4": r4.tolist(),
                          "mean_diff": float(np.abs(m1 - m4).max())}))
    else:  # multi-process: coordinator, num_processes, process_id
        distributed.initialize(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        r, m = generation_returns(distributed.population_mesh())
        print(json.dumps({"n": jax.device_count(), "procs": jax.process_count(), "r": r.tolist(),
                          "writer": distributed.is_writer()}))
