"""The frozen-objective harness: fresh TD3-style agents trained by a fixed policy loss.

This is MetaGenRL's meta-test learner (Kirsch et al., 2020): each agent is a fresh TD3 agent (twin
critics learned by TD3 as usual) whose policy is updated only by a given, never-changing policy
loss: a frozen learned objective L_alpha, the initial (random) objective, DDPG's -Q1(s, pi(s)) (then
it is plain TD3) or off-policy REINFORCE (``metarl.baselines.reinforce``), or any weighted mix of
them (``metarl.algorithms.metagenrl.meta_test.harness_policy_loss``). It lives in ``metarl/inner/`` beside the other
agent lifetimes (``on_policy_agent.py``: an EPG agent's lifetime under a given objective) because it is not a
baseline of its own but the inner loop every MetaGenRL meta-test method runs in; the baselines it
runs are losses plugged into it.

Standard TD3 in the agent's updates: the policy's gradient is clipped, the critics' is not. The
deployed (evaluated) policy is the deterministic actor pi_phi(s), without exploration noise.

``train = make_train(env, td3_config, total_steps, num_chunks, policy_loss)``;
``train(key, task, loss_params) -> (TD3State, metrics)`` is pure and vmaps over seeds and tasks.
``deployed_returns`` is its evaluation (metarl.evaluation), also of agents never updated.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from metarl import evaluation
from metarl.envs.core import TaskFamily
from metarl.inner.lifetime import learn
from metarl.inner.td3 import TD3Agent, TD3Config, TD3State, mean_completed_return


def deployed_returns(agent: TD3Agent, s: TD3State, task, key, num_envs: int,
                     forward: str | None = None) -> dict:
    """{'eval_return': (), 'eval_forward_return': () if ``forward``}: first-episode returns of the
    deployed policy, the deterministic actor pi_phi(s) without exploration noise, on ``num_envs``
    envs (metarl.evaluation.first_episode_returns; ``forward``: the brax metric of forward progress)."""
    act = evaluation.deterministic(lambda o: agent.pi(s.policy, o))
    ev = evaluation.first_episode_returns(agent.env, act, task, key, num_envs, forward)
    return {f"eval_{k}": v for k, v in ev.items()}


def make_train(env: TaskFamily, config: TD3Config, total_steps: int, num_chunks: int = 10,
               policy_loss: Callable | None = None, eval_envs: int = 8, forward: str | None = None):
    """policy_loss(agent) -> loss(loss_params, policy_params, critic_params, batch), or None for
    DDPG/TD3. metrics: 'episode_return' (num_chunks,) mean return of training episodes completed in
    each chunk (NaN if none), 'env_steps' (num_chunks,), and the final evaluation of the trained
    agent, ``deployed_returns`` on ``eval_envs`` envs: 'eval_return' () and, where ``forward`` names
    a brax metric (metarl.evaluation.forward_metric), 'eval_forward_return' ()."""
    agent = TD3Agent(env, config)
    blocks = max(1, total_steps // (config.policy_delay * num_chunks))
    loss = None if policy_loss is None else policy_loss(agent)

    def train(key, task, loss_params=None):
        k_init, k_eval = jax.random.split(key)
        s = agent.init(k_init, task)
        fn = None if loss is None else (lambda p, c, b: loss(loss_params, p, c, b))

        def chunk(s):
            s = TD3Agent.reset_stats(s)
            s = jax.lax.scan(lambda s, _: (agent.block(s, fn), None), s, None, length=blocks)[0]
            return s, mean_completed_return(s)

        s, curve = learn(lambda s, _: chunk(s), s, num_chunks)
        metrics = {"episode_return": curve,
                   "env_steps": (jnp.arange(num_chunks) + 1) * blocks * config.policy_delay}
        metrics.update(deployed_returns(agent, s, task, k_eval, eval_envs, forward))
        return s, metrics

    return train
