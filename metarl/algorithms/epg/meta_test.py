"""EPG meta-test: freeze a learned objective, train fresh agents on held-out tasks, compare with
baselines. Results follow metarl.runs.meta_test_schema's schema (written by its ``write_meta_test``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metarl.baselines.ppo import PPOConfig
from metarl.baselines.ppo import make_train as make_ppo_train
from metarl.evaluation import episode_return, zero_action_return
from metarl.runs.meta_test_schema import mean_curve, method_result


def stack(*trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def epg_compare_losses(epg, loss_a, loss_b, key, num_agents: int, split: str = "train"):
    """Paired held-out comparison of two losses: each trains ``num_agents`` fresh agents (f = 0) on
    the same freshly drawn tasks of ``split`` with the same seeds. Returns the two mean final
    evaluation returns (floats). Compiles the same program as ``epg_meta_test``'s learned/initial pair.
    """
    k_tasks, k_agents = jax.random.split(key)
    tasks = epg.sample_tasks(k_tasks, num_agents, split)
    out = epg.jit_train_agents(stack(loss_a, loss_b), tasks, jax.random.split(k_agents, num_agents),
                               meta_test=True)
    r = np.asarray(jax.device_get(out["eval_return_sampled"])).mean(axis=1)
    return float(r[0]), float(r[1])


# Methods of an EPG meta-test, in table order; oracle only where the family has a scripted optimum.
EPG_METHODS = ("learned", "ppo", "no_update", "zero_action", "initial_loss", "oracle")
EVALUATION = "sampled actions"  # how every method's 'return' is measured


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
                  ppo_config: PPOConfig | None = None) -> dict:
    """Meta-test on ``num_agents`` fresh tasks of ``split``; every method is evaluated the same way
    (``eval_envs`` episodes per agent, actions sampled from the policy; mean-action beside it).

    - learned / initial_loss: fresh agents trained by the frozen loss (f = 0), same tasks and seeds;
    - ppo: PPO (metarl.baselines.ppo) for the same environment steps on the same tasks;
    - no_update: the learned loss's agents before their first update (same initialisation);
    - zero_action: a policy that always outputs zero, the floor that shows a task was learned;
    - oracle: the family's scripted optimum, where it has one (goal_point).

    Returns {method: entry} of metarl.runs.meta_test_schema's schema, in EPG_METHODS order: 'return'
    (sampled actions, mean over agents), 'returns' (agents,), 'return_mean_action', and for the
    methods that train 'curve' (mean training-episode return per update) and 'env_steps'.
    """
    lc = epg.config.lifetime
    k_tasks, k_agents, k_ppo, k_fixed = jax.random.split(key, 4)
    tasks = epg.sample_tasks(k_tasks, num_agents, split)
    agent_keys = jax.random.split(k_agents, num_agents)
    # Both losses in one compiled call: leading axis 2 = (learned, initial); same tasks and seeds.
    out = jax.device_get(epg.jit_train_agents(stack(learned_params, initial_params), tasks,
                                              agent_keys, meta_test=True))
    ppo_cfg = ppo_config or meta_test_ppo_config(lc)
    ppo = jax.device_get(jax.jit(jax.vmap(make_ppo_train(epg.env, ppo_cfg)))(
        jax.random.split(k_ppo, num_agents), tasks)[1])
    env = epg.env
    fixed_keys = jax.random.split(k_fixed, num_agents)
    zero = np.asarray(jax.jit(jax.vmap(lambda t, k: zero_action_return(env, t, k, lc.eval_envs)))(
        tasks, fixed_keys))
    steps = (np.arange(lc.num_updates) + 1) * lc.update_period
    res = {}
    for i, name in enumerate(("learned", "initial_loss")):
        res[name] = method_result(out["eval_return_sampled"][i], mean_curve(out["curve"][i]), steps,
                                  mean_action=out["eval_return_mean_action"][i])
    res["ppo"] = method_result(ppo["eval_return_sampled"], mean_curve(ppo["episode_return"]),
                               ppo["env_steps"][0], mean_action=ppo["eval_return_mean_action"])
    res["no_update"] = method_result(out["no_update_return"][0],
                                     mean_action=out["no_update_return_mean_action"][0])
    res["zero_action"] = method_result(zero, mean_action=zero)
    if hasattr(env, "oracle_policy"):
        oracle = np.asarray(jax.jit(jax.vmap(lambda t, k: episode_return(
            env, env.oracle_policy(t), t, k, lc.eval_envs)))(tasks, fixed_keys))
        res["oracle"] = method_result(oracle, mean_action=oracle)
    return {m: res[m] for m in EPG_METHODS if m in res}
