"""Meta-test: freeze a learned objective, train fresh agents on held-out tasks, compare with baselines.

Writes ``meta_test.json`` (final returns and curves), ``meta_test.csv`` (one row per update: env
steps and the mean training return of each method) and ``meta_test.png``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from metarl.baselines.ppo import PPOConfig, make_train
from metarl.runs import write_json_atomic


def stack(*trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def epg_compare_losses(epg, loss_a, loss_b, key, num_agents: int, split: str = "train"):
    """Paired held-out comparison of two losses: each trains ``num_agents`` fresh agents (f = 0) on
    the same freshly drawn tasks of ``split`` with the same seeds. Returns the two mean final
    evaluation returns (floats). Compiles the same program as ``epg_meta_test``'s learned/initial pair.
    """
    k_tasks, k_agents = jax.random.split(key)
    tasks = epg.sample_tasks(k_tasks, num_agents, split)
    out = epg.jit_train_agents(stack(loss_a, loss_b), tasks, jax.random.split(k_agents, num_agents), None)
    r = np.asarray(jax.device_get(out["eval_return"])).mean(axis=1)
    return float(r[0]), float(r[1])


def epg_meta_test(epg, learned_params, initial_params, key, num_agents: int, split: str = "test"):
    """Trains ``num_agents`` fresh agents (one per test task) with each frozen loss (f = 0), and PPO
    (metarl.baselines.ppo) for the same environment steps on the same tasks.

    Returns a dict of host numpy results: '<method>_return' (mean final evaluation return),
    '<method>_returns' (per agent), '<method>_curve' (mean training-episode return per update),
    'env_steps' (per update).
    """
    lc = epg.config.lifetime
    k_tasks, k_agents, k_ppo = jax.random.split(key, 3)
    tasks = epg.sample_tasks(k_tasks, num_agents, split)
    # Both losses in one compiled call: leading axis 2 = (learned, initial); same tasks and seeds.
    out = epg.jit_train_agents(stack(learned_params, initial_params), tasks,
                               jax.random.split(k_agents, num_agents), None)
    out = jax.device_get(out)
    ppo_cfg = PPOConfig(total_steps=lc.lifetime_steps, num_envs=1, unroll_length=lc.update_period,
                        num_minibatches=max(1, lc.update_period // lc.minibatch_size), update_epochs=4,
                        learning_rate=3e-4, hidden=tuple(lc.hidden), eval_envs=lc.eval_envs)
    _, ppo = jax.jit(jax.vmap(make_train(epg.env, ppo_cfg)))(jax.random.split(k_ppo, num_agents), tasks)
    ppo = jax.device_get(ppo)
    res = {"env_steps": (np.arange(lc.num_updates) + 1) * lc.update_period, "split": split,
           "num_agents": num_agents}
    for i, name in enumerate(("learned", "initial_loss")):
        res[f"{name}_returns"] = np.asarray(out["eval_return"][i])
        res[f"{name}_return"] = float(np.mean(out["eval_return"][i]))
        res[f"{name}_curve"] = _nanmean(out["curve"][i], axis=0)
    res["ppo_returns"] = np.asarray(ppo["eval_return"])
    res["ppo_return"] = float(np.mean(ppo["eval_return"]))
    res["ppo_curve"] = _nanmean(ppo["episode_return"], axis=0)
    return res


def _nanmean(x, axis):
    x = np.asarray(x, dtype=np.float64)
    cnt = np.sum(np.isfinite(x), axis=axis)
    tot = np.nansum(x, axis=axis)
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def write_meta_test(run_dir: Path, res: dict, methods=("learned", "initial_loss", "ppo"),
                    title: str = "meta-test") -> None:
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / "meta_test.json", res)
    with open(run_dir / "meta_test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", *methods])
        n = len(res["env_steps"])
        for i in range(n):
            w.writerow([int(res["env_steps"][i]), *[_fmt(res[f"{m}_curve"], i) for m in methods]])
    plot_curves(run_dir / "meta_test.png", res, methods, title)


def _fmt(curve, i):
    return "" if i >= len(curve) or not np.isfinite(curve[i]) else f"{curve[i]:.4f}"


def plot_curves(path, res, methods, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in methods:
        c = np.asarray(res[f"{m}_curve"], dtype=float)
        steps = np.asarray(res["env_steps"])[: len(c)]
        ok = np.isfinite(c)
        ax.plot(steps[ok], c[ok], label=f"{m} (final {res[f'{m}_return']:.1f})")
    ax.set_xlabel("environment steps per agent")
    ax.set_ylabel("training episode return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
