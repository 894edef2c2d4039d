"""The on-policy EPG agent and its lifetime as pure functions (the inner loop of Evolved Policy Gradients).

``learner = make_lifetime(env, config, objective)`` is an ``OnPolicyLearner`` (``init``, ``update``,
``evaluate``); ``learner(obj_params, task, key, ppo_factor)`` acts for M steps, updates the policy by
Adam over the newest M rows in minibatches on the objective mixed with the agent's PPO term (as the
objective's ``weights(f)`` say: ``metarl.objectives.on_policy``), repeats for the whole lifetime
(one ``lax.scan``), then evaluates the final policy. It vmaps over objective parameters (ES members)
and tasks, so one compiled call runs a whole ES generation.

The objective is any ``metarl.protocols.OnPolicyObjective``: EPG's temporal-conv loss L_phi in the
paper's pure form or the residual form (``metarl.objectives.epg_conv``), MetaGenRL's backward-LSTM
L_alpha (``metarl.objectives.lstm_on_policy``), or a user's (``metarl.objectives.registry``). This
module compares no objective names: what differs between objectives is asked of the object.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from brax.training.acme import running_statistics, specs
from flax import struct

from metarl.checks import require_positive
from metarl.envs.core import TaskFamily
from metarl.evaluation import gaussian_policy_returns
from metarl.inner.lifetime import learn
from metarl.networks import (GaussianPolicy, ValueNet, gaussian_kl, gaussian_log_prob,
                             sample_gaussian)
from metarl.objectives.on_policy import OnPolicyBatch, loss_inputs
from metarl.objectives.ppo_loss import gae, ppo_policy_loss


@dataclasses.dataclass(frozen=True)
class LifetimeConfig:
    """Inner-loop sizes (Houthooft et al. 2018, EPG, Sec. 4 / openai/EPG: 8192 steps, M = 64, N = 512, minibatch 32, Adam 1e-3)."""

    lifetime_steps: int = 8192
    update_period: int = 64  # M: steps between updates; the newest M rows are scored
    buffer_size: int = 512  # N: rows seen by the temporal convolution
    minibatch_size: int = 32
    learning_rate: float = 1e-3
    # None (the paper): plain Adam; c: gradients clipped to global norm c first (as our PPO does)
    max_grad_norm: float | None = None
    hidden: Sequence[int] = (64, 64)
    init_log_std: float = 0.0  # the policy's initial log-std (the paper: 0)
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    eval_envs: int = 4  # evaluation episodes after the lifetime (one per environment)
    # False (openai/EPG): fitness and meta-test returns use actions sampled from the policy; the
    # mean-action return is reported beside it. True: fitness uses the mean action.
    deterministic_eval: bool = False
    kl_coef: float = 1e-3  # PPO term: KL(old || new) weight (openai/EPG)
    value_coef: float = 1.0  # PPO term: value-loss weight inside the f-weighted total
    obs_std_min: float = 0.1  # running normaliser floor for s and a (openai/EPG's running normaliser)

    @property
    def num_updates(self) -> int:
        return self.lifetime_steps // self.update_period

    def validate(self) -> "LifetimeConfig":
        require_positive(self, ("lifetime_steps", "update_period", "buffer_size", "minibatch_size", "eval_envs"))
        if self.lifetime_steps % self.update_period:
            raise ValueError(f"lifetime_steps={self.lifetime_steps} must be a multiple of "
                             f"update_period={self.update_period}")
        if self.update_period % self.minibatch_size:
            raise ValueError(f"update_period={self.update_period} must be a multiple of "
                             f"minibatch_size={self.minibatch_size}")
        if self.buffer_size < self.update_period:
            raise ValueError(f"buffer_size={self.buffer_size} must be >= update_period="
                             f"{self.update_period}")
        return self


@struct.dataclass
class Buffer:
    """The last N transitions, oldest first; rows with valid == 0 are front padding."""

    obs: jax.Array  # (N, obs_dim) raw
    action: jax.Array  # (N, act_dim) raw
    reward: jax.Array  # (N,)
    done: jax.Array  # (N,)
    valid: jax.Array  # (N,)


@struct.dataclass
class AgentState:
    policy: dict
    value: dict
    policy_opt: optax.OptState
    value_opt: optax.OptState
    obs_stats: running_statistics.RunningStatisticsState
    act_stats: running_statistics.RunningStatisticsState
    buffer: Buffer
    env_state: object
    key: jax.Array
    updates: jax.Array  # () int32: updates done so far (the lifetime progress is updates / num_updates)


def _cond(pred, true_fn, false_fn, operand):
    """lax.cond, or the false branch alone when ``pred`` is the Python constant False."""
    if pred is False:
        return false_fn(operand)
    return jax.lax.cond(pred, true_fn, false_fn, operand)


@dataclasses.dataclass(frozen=True)
class GaussianActor:
    """The EPG agent's policy as an objective reads it: ``pi(params, s) -> (mu, log_std)``."""

    policy: GaussianPolicy

    def pi(self, policy_params, obs):
        return self.policy.apply(policy_params, obs)


def make_lifetime(env: TaskFamily, config: LifetimeConfig, objective,
                  with_ppo: bool = True, with_no_update_eval: bool = False, train: bool = True):
    """Returns the ``OnPolicyLearner``; calling it runs ``lifetime(obj_params, task, key, ppo_factor)
    -> metrics``.

    ``objective``: a ``metarl.protocols.OnPolicyObjective``; obj_params are its parameters.

    ``with_ppo=False`` builds the program without the PPO policy term (ppo_factor is then ignored;
    used when f is always 0, e.g. at meta-test): a smaller program that compiles faster. An
    objective with ``ppo_always`` keeps it; one with ``value_always`` keeps the value regression.

    ``with_no_update_eval``: also evaluate the agent before its first update (the no-update
    baseline: same initialisation, same evaluation starts and noise).

    ``train=False`` (profiling only, benchmarks/epg_profile.py): each update acts for M steps and
    updates the normalisers and the buffer but takes no gradient step (the rollout's cost alone).

    metrics: 'eval_return' () return of the final policy (fitness: sampled actions unless
    ``deterministic_eval``), 'eval_return_sampled' and 'eval_return_mean_action' (), 'curve'
    (num_updates,) mean return of episodes completed in each update's rollout (NaN where none),
    'final_log_std' (), and 'no_update_return'(_mean_action) () where asked for.
    """
    cfg = config.validate()
    with_ppo = with_ppo or objective.ppo_always
    policy = GaussianPolicy(env.action_size, cfg.hidden, cfg.init_log_std)
    value = ValueNet(cfg.hidden)
    def optimiser():
        adam = optax.adam(cfg.learning_rate)
        return adam if cfg.max_grad_norm is None else optax.chain(
            optax.clip_by_global_norm(cfg.max_grad_norm), adam)

    pi_opt, v_opt = optimiser(), optimiser()
    M, N, B = cfg.update_period, cfg.buffer_size, cfg.minibatch_size
    obs_spec = specs.Array((env.observation_size,), jnp.float32)
    act_spec = specs.Array((env.action_size,), jnp.float32)

    def norm(x, stats):
        return running_statistics.normalize(x, stats)

    actor = GaussianActor(policy)

    def rollout_step(carry, key):
        agent, = carry
        s = norm(agent.env_state.obs, agent.obs_stats)
        mean, log_std = policy.apply(agent.policy, s)
        action = sample_gaussian(key, mean, log_std)
        nxt = env.step(agent.env_state, action)
        tr = dict(obs=agent.env_state.obs, action=action, reward=nxt.reward, done=nxt.done,
                  truncated=nxt.truncated, log_prob=gaussian_log_prob(mean, log_std, action),
                  completed=nxt.completed_return, next_obs=nxt.final_obs)
        return (agent.replace(env_state=nxt),), tr

    def update(agent, key, obj_params, ppo_factor):
        k_roll, k_perm = jax.random.split(key)
        (agent,), tr = jax.lax.scan(rollout_step, (agent,), jax.random.split(k_roll, M))
        obs_stats = running_statistics.update(agent.obs_stats, tr["obs"], std_min_value=cfg.obs_std_min)
        act_stats = running_statistics.update(agent.act_stats, tr["action"], std_min_value=cfg.obs_std_min)
        shift = lambda old, new: jnp.concatenate([old[M:], new], axis=0)
        buf = Buffer(obs=shift(agent.buffer.obs, tr["obs"]), action=shift(agent.buffer.action, tr["action"]),
                     reward=shift(agent.buffer.reward, tr["reward"]), done=shift(agent.buffer.done, tr["done"]),
                     valid=shift(agent.buffer.valid, jnp.ones(M)))

        if not train:  # profiling: the rollout, normalisers and buffer only
            n_done = tr["done"].sum()
            curve = jnp.where(n_done > 0, tr["completed"].sum() / jnp.maximum(n_done, 1), jnp.nan)
            return agent.replace(obs_stats=obs_stats, act_stats=act_stats, buffer=buf,
                                 updates=agent.updates + 1), curve

        # The statistics are fixed during the update: normalise the buffer once.
        inp = loss_inputs(buf.obs, buf.action, buf.reward, buf.done, buf.valid, obs_stats, act_stats)
        s_new = inp.s[N - M:]  # = the normalised tr["obs"]
        s_next = norm(tr["next_obs"], obs_stats)  # s_{t+1} before any auto-reset (time limits)

        # PPO term over the newest M rows, as openai/EPG: clipped surrogate + kl_coef KL(old || new)
        # (+ the value loss, inside the f-weighted total unless the objective trains V always),
        # advantages normalised over the M rows. Only evaluated while f > 0 (f is shared by the
        # batch, so the cond stays a real branch under vmap), and always where ``ppo_always``.
        def ppo_targets(vp):
            v = value.apply(vp, s_new)
            nv = value.apply(vp, s_next)
            adv, target = gae(tr["reward"], v, nv, tr["done"], tr["truncated"], cfg.gamma, cfg.gae_lambda)
            old_mean, old_log_std = policy.apply(agent.policy, s_new)
            return (adv - adv.mean()) / (adv.std() + 1e-8), target, old_mean, old_log_std

        use_ppo = True if objective.ppo_always else ((ppo_factor > 0) if with_ppo else False)
        w_obj, w_ppo = objective.weights(ppo_factor)
        value_always = objective.value_always
        zeros_a = jnp.zeros((M, env.action_size))
        if value_always:  # GAE targets at every update: the value net learns whatever f is
            adv, target, old_mean, old_log_std = ppo_targets(agent.value)
        else:
            adv, target, old_mean, old_log_std = _cond(
                use_ppo, ppo_targets, lambda vp: (jnp.zeros(M), jnp.zeros(M), zeros_a, zeros_a), agent.value)
        perm = jax.random.permutation(k_perm, M).reshape(M // B, B)
        batch = OnPolicyBatch(buffer=inp, s=s_new, action=tr["action"], reward=tr["reward"], done=tr["done"],
                              value=value.apply(agent.value, s_new), next_value=value.apply(agent.value, s_next),
                              act_stats=act_stats, log_prob=tr["log_prob"], advantage=adv,
                              progress=agent.updates.astype(jnp.float32) / cfg.num_updates)
        obj_inputs = objective.prepare(obj_params, agent.policy, batch, actor)

        def v_loss(vp, idx):
            return jnp.mean((value.apply(vp, s_new[idx]) - target[idx]) ** 2)

        def sgd(carry, idx):
            """One minibatch step of w_L L + w_PPO L_PPO (+ the value loss) on the B rows at idx."""
            pp, vp, po, vo = carry

            def total_loss(params):
                pp, vp = params
                l_obj, outs_b = objective.minibatch_loss(obj_params, pp, obj_inputs, idx, actor)

                def l_ppo(args):
                    pp, vp, outs_b = args
                    # the objective's outputs on the rows where it has them; else a B-row forward
                    mean, log_std = policy.apply(pp, s_new[idx]) if outs_b is None else outs_b
                    surrogate = ppo_policy_loss(mean, log_std, tr["action"][idx], tr["log_prob"][idx],
                                                adv[idx], cfg.clip_eps, normalize_advantages=False)
                    kl = gaussian_kl(old_mean[idx], old_log_std[idx], mean, log_std).mean()
                    loss = surrogate + cfg.kl_coef * kl
                    return loss if value_always else loss + cfg.value_coef * v_loss(vp, idx)

                lp = _cond(use_ppo, l_ppo, lambda _: 0.0, (pp, vp, outs_b))
                total = w_obj * l_obj + w_ppo * lp
                return total + cfg.value_coef * v_loss(vp, idx) if value_always else total

            g_pi, g_v = jax.grad(total_loss)((pp, vp))
            upd, po = pi_opt.update(g_pi, po, pp)
            pp = optax.apply_updates(pp, upd)

            def v_step(args):
                vp, vo = args
                u, vo = v_opt.update(g_v, vo, vp)
                return optax.apply_updates(vp, u), vo

            vp, vo = v_step((vp, vo)) if value_always else _cond(use_ppo, v_step, lambda a: a, (vp, vo))
            return (pp, vp, po, vo), None

        (pp, vp, po, vo), _ = jax.lax.scan(
            sgd, (agent.policy, agent.value, agent.policy_opt, agent.value_opt), perm)
        n_done = tr["done"].sum()
        curve = jnp.where(n_done > 0, tr["completed"].sum() / jnp.maximum(n_done, 1), jnp.nan)
        agent = agent.replace(policy=pp, value=vp, policy_opt=po, value_opt=vo, obs_stats=obs_stats,
                              act_stats=act_stats, buffer=buf, updates=agent.updates + 1)
        return agent, curve

    def init_agent(task, key):
        k_pi, k_v, k_env, k_run = jax.random.split(key, 4)
        dummy = jnp.zeros((env.observation_size,))
        pp, vp = policy.init(k_pi, dummy), value.init(k_v, dummy)
        buf = Buffer(obs=jnp.zeros((N, env.observation_size)), action=jnp.zeros((N, env.action_size)),
                     reward=jnp.zeros(N), done=jnp.zeros(N), valid=jnp.zeros(N))
        return AgentState(policy=pp, value=vp, policy_opt=pi_opt.init(pp), value_opt=v_opt.init(vp),
                          obs_stats=running_statistics.init_state(obs_spec),
                          act_stats=running_statistics.init_state(act_spec), buffer=buf,
                          env_state=env.reset(k_env, task), key=k_run, updates=jnp.int32(0))

    def evaluate(agent, task, key):
        """(sampled-action return, mean-action return) of the agent's policy."""
        policy_fn = lambda obs: policy.apply(agent.policy, norm(obs, agent.obs_stats))
        return gaussian_policy_returns(env, policy_fn, task, key, cfg.eval_envs)

    def lifetime(loss_params, task, key, ppo_factor=0.0):
        k_init, k_updates, k_eval = jax.random.split(key, 3)
        agent = init_agent(task, k_init)
        ppo_factor = jnp.asarray(0.0 if ppo_factor is None or not with_ppo else ppo_factor, jnp.float32)
        out = {}
        if with_no_update_eval:  # the same agent before any update, evaluated the same way
            out["no_update_return"], out["no_update_return_mean_action"] = evaluate(agent, task, k_eval)
        agent, curve = learn(lambda a, k: update(a, k, loss_params, ppo_factor), agent, cfg.num_updates,
                             k_updates)
        sampled, mean_action = evaluate(agent, task, k_eval)
        out.update({"eval_return": mean_action if cfg.deterministic_eval else sampled,
                    "eval_return_sampled": sampled, "eval_return_mean_action": mean_action,
                    "curve": curve, "final_log_std": agent.policy["params"]["log_std"].mean()})
        return out

    return OnPolicyLearner(init=lambda key, task: init_agent(task, key), update=update,
                           evaluate=evaluate, lifetime=lifetime)


@dataclasses.dataclass(frozen=True)
class OnPolicyLearner:
    """The EPG agent (an on-policy learner) as ``make_lifetime`` builds it, pure functions all:

    - ``init(key, task) -> AgentState``: a fresh agent (policy, value net, optimisers, an empty
      buffer of N rows, running statistics, its env state);
    - ``update(state, key, obj_params, ppo_factor) -> (state, curve_point)``: M env steps into the
      buffer, then minibatch SGD on the learned objective (mixed with PPO by ``ppo_factor``);
    - ``evaluate(state, task, key) -> (sampled-action return, mean-action return)``;
    - ``lifetime(obj_params, task, key, ppo_factor) -> metrics``: init, ``metarl.inner.lifetime.learn``
      over ``update`` (one scan), evaluate; calling the learner runs it (what ES vmaps).
    """

    init: Callable
    update: Callable
    evaluate: Callable
    lifetime: Callable

    def __call__(self, obj_params, task, key, ppo_factor=0.0):
        return self.lifetime(obj_params, task, key, ppo_factor)
