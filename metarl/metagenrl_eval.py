"""Meta-test of MetaGenRL objectives: fresh TD3-harness agents trained only by a frozen L_alpha
(no objective updates, no DDPG warm start) on seen and unseen environments, against a random-init
objective, TD3/DDPG (critic-only), off-policy REINFORCE with GAE and PPO at equal env steps.

``meta_test(...)`` returns {env: {method: {...}}}; ``write_outputs`` writes curves.csv,
meta_test.json and curves.png (matplotlib, Agg backend) into a run directory.
"""
from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from metarl import envs as envs_lib
from metarl.baselines import ppo as ppo_lib
from metarl.baselines import td3 as td3_lib
from metarl.baselines.reinforce import reinforce_loss
from metarl.inner.td3 import TD3Config
from metarl.objectives.metagenrl import MetaGenRLObjective
from metarl.outer.metagrad import learned_loss
from metarl.runs import write_json_atomic

METHODS = ("learned", "initial_loss", "td3", "reinforce", "ppo")


def _summ(metrics: dict) -> dict:
    curve = np.asarray(metrics["episode_return"], dtype=np.float64)  # (seeds, chunks)
    evals = np.asarray(metrics["eval_return"], dtype=np.float64)     # (seeds,)
    with np.errstate(all="ignore"):
        mean_curve = np.nanmean(curve, axis=0)
    return {"env_steps": np.asarray(metrics["env_steps"])[0].tolist(),
            "curve": [None if np.isnan(x) else float(x) for x in mean_curve],
            "eval_returns": evals.tolist(), "eval_return": float(evals.mean())}


TD3_HARNESS = ("learned", "initial_loss", "td3", "reinforce")


def combined_loss(module: MetaGenRLObjective, sigma: float):
    """policy_loss factory whose params {'w': (3,), 'alpha'} select L_alpha, DDPG or REINFORCE:
    loss = w0 L_alpha + w1 (-Q1) + w2 REINFORCE. One compiled program then trains every method of
    the TD3 harness side by side (vmap over method x seed), which saves a compile per method."""

    def factory(agent):
        lf = learned_loss(module, agent)
        rf = reinforce_loss(sigma)(agent)

        def loss(p, pol, cri, batch):
            w = p["w"]
            return (w[0] * lf(p["alpha"], pol, cri, batch) + w[1] * agent.ddpg_loss(pol, cri, batch)
                    + w[2] * rf(None, pol, cri, batch))

        return loss

    return factory


def meta_test(env_names: Sequence[str], learned_alpha, initial_alpha, module: MetaGenRLObjective,
              td3_config: TD3Config, total_steps: int, num_chunks: int, num_seeds: int, seed: int,
              ppo_config: ppo_lib.PPOConfig | None = None, methods: Sequence[str] = METHODS,
              split: str = "test", log=print) -> dict:
    """Trains ``num_seeds`` fresh agents per (env, method) on tasks of ``split``; every method sees
    the same seeds and tasks. Returns {env: {method: summary}} (eval_return: deterministic policy
    after ``total_steps`` env steps, curve: training-episode returns per chunk)."""
    import jax.numpy as jnp

    weights = {"learned": (1.0, 0.0, 0.0), "initial_loss": (1.0, 0.0, 0.0), "td3": (0.0, 1.0, 0.0),
               "reinforce": (0.0, 0.0, 1.0)}
    alphas = {"initial_loss": initial_alpha}
    out = {}
    for name in env_names:
        env = envs_lib.make(name)
        keys = jax.random.split(jax.random.PRNGKey(seed + 1000), num_seeds)
        tasks = jax.vmap(lambda k: env.sample_task(jax.random.fold_in(k, 7), split))(keys)
        res = {}
        harness = [m for m in methods if m in TD3_HARNESS]
        if harness:
            t0 = time.time()
            train = td3_lib.make_train(env, td3_config, total_steps, num_chunks,
                                       combined_loss(module, td3_config.expl_noise))
            M = len(harness)
            params = {"w": jnp.repeat(jnp.array([weights[m] for m in harness]), num_seeds, axis=0),
                      "alpha": jax.tree_util.tree_map(
                          lambda *xs: jnp.repeat(jnp.stack(xs), num_seeds, axis=0),
                          *[alphas.get(m, learned_alpha) for m in harness])}
            tile = lambda x: jnp.tile(x, (M,) + (1,) * (x.ndim - 1))
            _, metrics = jax.jit(jax.vmap(train))(tile(keys), jax.tree_util.tree_map(tile, tasks), params)
            for i, m in enumerate(harness):
                res[m] = _summ(jax.tree_util.tree_map(lambda x: x[i * num_seeds:(i + 1) * num_seeds], metrics))
            log(f"meta-test {name}: TD3 harness ({', '.join(harness)}) [{time.time() - t0:.0f}s]")
        if "ppo" in methods:
            t0 = time.time()
            cfg = dataclasses.replace(ppo_config or ppo_lib.PPOConfig(), total_steps=total_steps)
            _, metrics = jax.jit(jax.vmap(ppo_lib.make_train(env, cfg)))(keys, tasks)
            res["ppo"] = _summ(metrics)
            log(f"meta-test {name}: ppo [{time.time() - t0:.0f}s]")
        for m in methods:
            log(f"meta-test {name} {m:>12s}: eval return {res[m]['eval_return']:.2f} "
                f"(seeds {np.round(res[m]['eval_returns'], 2).tolist()})")
        out[name] = res
    return out


def write_outputs(run_dir: Path, results: dict, seen: Sequence[str] = ()) -> None:
    run_dir = Path(run_dir)
    with open(run_dir / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env", "seen_env", "method", "env_steps", "episode_return"])
        for env, res in results.items():
            for m, r in res.items():
                for s, v in zip(r["env_steps"], r["curve"]):
                    w.writerow([env, env in seen, m, s, "" if v is None else v])
    write_json_atomic(run_dir / "meta_test.json", results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (env, res) in zip(axes[0], results.items()):
        for m, r in res.items():
            y = np.array([np.nan if v is None else v for v in r["curve"]])
            ax.plot(r["env_steps"], y, label=f"{m} (eval {r['eval_return']:.1f})")
        ax.set_title(f"{env} ({'seen' if env in seen else 'unseen'})")
        ax.set_xlabel("env steps")
        ax.set_ylabel("training episode return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "curves.png", dpi=100)
    plt.close(fig)
