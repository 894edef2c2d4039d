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

from metarl.baselines.ppo import PPOConfig
from metarl.baselines.ppo import make_train as make_ppo_train
from metarl.evaluate_policy import episode_return, zero_action_return
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
    r = np.asarray(jax.device_get(out["eval_return_sampled"])).mean(axis=1)
    return float(r[0]), float(r[1])


# Methods of an EPG meta-test, in table order; oracle only where the family has a scripted optimum.
EPG_METHODS = ("learned", "ppo", "no_update", "zero_action", "initial_loss", "oracle")
CURVE_METHODS = ("learned", "initial_loss", "ppo")  # methods that train, with learning curves


def meta_test_ppo_config(lifetime_cfg) -> PPOConfig:
    """PPO at the EPG agent's budget: the same env steps, one env, an update every M steps, the
    same networks, Adam learning rate, discount, initial log-std and observation normaliser (std
    floor) as the EPG agent, and 4 epochs per update (PPO's usual; EPG's agent makes one pass).
    Presets override what PPO itself was tuned to (experiments.epg_common.Preset.ppo)."""
    lc = lifetime_cfg
    return PPOConfig(total_steps=lc.lifetime_steps, num_envs=1, unroll_length=lc.update_period,
                     num_minibatches=max(1, lc.update_period // lc.minibatch_size), update_epochs=4,
                     learning_rate=lc.learning_rate, hidden=tuple(lc.hidden), init_log_std=lc.init_log_std,
                     obs_std_min=lc.obs_std_min, gamma=lc.gamma, gae_lambda=lc.gae_lambda,
                     eval_envs=lc.eval_envs)


def epg_meta_test(epg, learned_params, initial_params, key, num_agents: int, split: str = "test",
                  ppo_config: PPOConfig | None = None):
    """Meta-test on ``num_agents`` fresh tasks of ``split``; every method is evaluated the same way
    (``eval_envs`` episodes per agent, actions sampled from the policy; mean-action beside it).

    - learned / initial_loss: fresh agents trained by the frozen loss (f = 0), same tasks and seeds;
    - ppo: PPO (metarl.baselines.ppo) for the same environment steps on the same tasks;
    - no_update: the learned loss's agents before their first update (same initialisation);
    - zero_action: a policy that always outputs zero, the floor that shows a task was learned;
    - oracle: the family's scripted optimum, where it has one (goal_point).

    Returns host results: '<method>_return' (mean over agents, sampled actions),
    '<method>_return_mean_action', '<method>_returns' (per agent), '<method>_curve' (mean training
    episode return per update, for methods that train), 'env_steps' (per update), 'methods'.
    """
    lc = epg.config.lifetime
    k_tasks, k_agents, k_ppo, k_fixed = jax.random.split(key, 4)
    tasks = epg.sample_tasks(k_tasks, num_agents, split)
    agent_keys = jax.random.split(k_agents, num_agents)
    # Both losses in one compiled call: leading axis 2 = (learned, initial); same tasks and seeds.
    out = jax.device_get(epg.jit_train_agents(stack(learned_params, initial_params), tasks,
                                              agent_keys, None))
    ppo_cfg = ppo_config or meta_test_ppo_config(lc)
    ppo = jax.device_get(jax.jit(jax.vmap(make_ppo_train(epg.env, ppo_cfg)))(
        jax.random.split(k_ppo, num_agents), tasks)[1])
    env = epg.env
    fixed_keys = jax.random.split(k_fixed, num_agents)
    zero = jax.jit(jax.vmap(lambda t, k: zero_action_return(env, t, k, lc.eval_envs)))(tasks, fixed_keys)
    res = {"env_steps": (np.arange(lc.num_updates) + 1) * lc.update_period, "split": split,
           "num_agents": num_agents, "eval_episodes": lc.eval_envs, "evaluation": "sampled actions"}

    def put(name, sampled, mean_action, curve=None):
        res[f"{name}_returns"] = np.asarray(sampled, dtype=np.float64)
        res[f"{name}_return"] = float(np.mean(sampled))
        res[f"{name}_return_mean_action"] = float(np.mean(mean_action))
        if curve is not None:
            res[f"{name}_curve"] = curve

    for i, name in enumerate(("learned", "initial_loss")):
        put(name, out["eval_return_sampled"][i], out["eval_return_mean_action"][i],
            _nanmean(out["curve"][i], axis=0))
    put("no_update", out["no_update_return"][0], out["no_update_return_mean_action"][0])
    put("ppo", ppo["eval_return_sampled"], ppo["eval_return_mean_action"],
        _nanmean(ppo["episode_return"], axis=0))
    zero = np.asarray(zero)
    put("zero_action", zero, zero)
    methods = list(EPG_METHODS[:-1])
    if hasattr(env, "oracle_policy"):
        oracle = jax.jit(jax.vmap(lambda t, k: episode_return(env, env.oracle_policy(t), t, k,
                                                              lc.eval_envs)))(tasks, fixed_keys)
        put("oracle", np.asarray(oracle), np.asarray(oracle))
        methods.append("oracle")
    res["methods"] = methods
    return res


def _nanmean(x, axis):
    x = np.asarray(x, dtype=np.float64)
    cnt = np.sum(np.isfinite(x), axis=axis)
    tot = np.nansum(x, axis=axis)
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def write_meta_test(run_dir: Path, res: dict, methods=CURVE_METHODS, title: str = "meta-test") -> None:
    """meta_test.json (everything), meta_test.csv (one row per update: the training curves) and
    meta_test.png (curves, with the final sampled-action return of every method as a level line)."""
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
    for m in res.get("methods", ()):
        if m not in methods:  # the non-training references: a level line at their return
            ax.axhline(res[f"{m}_return"], ls="--", lw=1, color="grey" if m != "oracle" else "k")
            ax.annotate(f"{m} {res[f'{m}_return']:.1f}", (0, res[f"{m}_return"]), fontsize=7,
                        xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("environment steps per agent")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
