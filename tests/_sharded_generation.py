"""Helper run in a subprocess: one EPG generation (or one MetaGenRL meta-iteration) on a population
mesh of the visible devices."""
import json
import sys

import jax
import numpy as np

from metarl import distributed, envs
from metarl.algorithms.epg.algorithm import EPG, EPGConfig
from metarl.inner.on_policy_agent import LifetimeConfig
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


def metagenrl_iteration(mesh):
    from metarl.algorithms.metagenrl.algorithm import MetaGenRLConfig, make_trainer
    from metarl.inner.td3 import TD3Config

    # A small lookahead step: with the original's 2.0, float rounding in near-zero meta-gradient
    # entries (which differs with the reduction order across devices) is amplified by Adam's
    # first step (about +-lr for any nonzero entry) past the comparison's tolerance. The sharding
    # under test is the same at any step size.
    cfg = MetaGenRLConfig(td3=TD3Config(hidden=(16,), random_steps=20, replay_size=200, batch_size=4),
                          agents_per_env=4, steps_per_iteration=40, meta_batch=4, warm_start_steps=40,
                          lookahead_step=1e-3)
    mt = make_trainer([envs.make("random_reacher")], cfg, mesh=mesh)
    ms, metrics = jax.jit(mt.iteration)(mt.init(jax.random.PRNGKey(0)))
    alpha = jax.flatten_util.ravel_pytree(distributed.to_host(ms.alpha))[0]
    policy = jax.flatten_util.ravel_pytree(distributed.to_host(ms.groups[0].policy))[0]
    return (np.asarray(distributed.to_host(metrics["meta_loss"])), np.asarray(alpha), np.asarray(policy),
            str(jax.tree_util.tree_leaves(ms.groups[0].policy)[0].sharding))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "metagenrl":
        import jax.flatten_util  # noqa: F401

        l1, a1, p1, _ = metagenrl_iteration(None)
        l4, a4, p4, sharding = metagenrl_iteration(distributed.population_mesh())
        print(json.dumps({"n": jax.device_count(), "loss1": l1.tolist(), "loss4": l4.tolist(),
                          "alpha_diff": float(np.abs(a1 - a4).max()),
                          "policy_diff": float(np.abs(p1 - p4).max()), "sharding": sharding}))
    elif mode == "devices":
        r1, m1 = generation_returns(distributed.population_mesh(jax.devices()[:1]))
        r4, m4 = generation_returns(distributed.population_mesh())
        print(json.dumps({"n": jax.device_count(), "r1": r1.tolist(), "r4": r4.tolist(),
                          "mean_diff": float(np.abs(m1 - m4).max())}))
