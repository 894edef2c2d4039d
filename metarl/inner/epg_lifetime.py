"""One EPG agent lifetime as a pure function (the inner loop of Evolved Policy Gradients).

``lifetime = make_lifetime(env, config)`` (an ``OnPolicyLearner``: ``init``, ``update``, ``evaluate``);
``lifetime(loss_params, task, key, ppo_factor)`` acts for
M steps, updates the policy by Adam on (1 - f) L_phi + f L_PPO over the newest M rows in minibatches,
repeats for the whole lifetime (one ``lax.scan``), then evaluates the final policy. It vmaps over
loss parameters (ES members) and tasks, so one compiled call runs a whole ES generation.

``LifetimeConfig.objective`` picks the learned loss and how it is mixed with PPO: "pure" and
"residual" use EPG's temporal-conv loss L_phi (``EPGLoss``); "lstm" uses MetaGenRL's backward-LSTM
objective L_alpha (``MetaGenRLObjective``, via ``metarl.objectives.lstm_on_policy``) in the pure form
(1 - f) L_alpha + f L_PPO, and trains the value net (L_alpha's V inputs) on the PPO term's GAE
targets at every update, whatever f is.

``LifetimeConfig.context_gradient`` picks how L_phi's buffer context c (``EPGLoss.context``) enters
the policy gradient. True (the paper's loss, exact): every minibatch step recomputes c from pi(s) of
the current policy on all N buffer rows and differentiates through it, so each step runs the policy
forward and backward on N rows. False (an approximation): c is computed once per update from the
policy at the update's start, held constant (stop-gradient), and each minibatch step runs the policy
and the loss head on its B rows only. The first minibatch's loss value is the same in both modes.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from brax.training.acme import running_statistics, specs
from flax import struct

from metarl.envs.core import TaskFamily
from metarl.evaluation import gaussian_policy_returns
from metarl.inner.lifetime import learn
from metarl.networks import (GaussianPolicy, ValueNet, gaussian_kl, gaussian_log_prob,
                             sample_gaussian)
from metarl.objectives.epg_loss import ConvObjective, EPGLoss
from metarl.objectives.lstm_on_policy import lstm_inputs, make_lstm_policy_loss
from metarl.objectives.metagenrl import MetaGenRLObjective
from metarl.objectives.ppo import gae, ppo_policy_loss


OBJECTIVES = ("pure", "residual", "lstm")


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
    # "pure": (1 - f) L_phi + f L_PPO, the paper's loss. "residual": L_PPO + L_phi at every
    # step (f unused), so ES starts from PPO and searches for a correction to it; with the loss's
    # output layer at zero (EPGLoss(zero_output=True)) the initial loss is PPO exactly. "lstm":
    # (1 - f) L_alpha + f L_PPO with MetaGenRL's objective L_alpha on the newest M rows (one
    # sequence), the value net trained on GAE targets at every update (metarl.objectives.lstm_on_policy)
    objective: str = "pure"
    obs_std_min: float = 0.1  # running normaliser floor for s and a (openai/EPG's running normaliser)
    # True: gradients flow through L_phi's buffer context (exact); False: the context is computed
    # once per update and held constant (cheaper: policy forward/backward on B rows, not N)
    context_gradient: bool = True

    @property
    def num_updates(self) -> int:
        return self.lifetime_steps // self.update_period

    def validate(self) -> "LifetimeConfig":
        for f in ("lifetime_steps", "update_period", "buffer_size", "minibatch_size", "eval_envs"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{f} must be a positive integer, got {getattr(self, f)}")
        if self.lifetime_steps % self.update_period:
            raise ValueError(f"lifetime_steps={self.lifetime_steps} must be a multiple of "
                             f"update_period={self.update_period}")
        if self.update_period % self.minibatch_size:
            raise ValueError(f"update_period={self.update_period} must be a multiple of "
                             f"minibatch_size={self.minibatch_size}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; expected one of {', '.join(OBJECTIVES)}")
        if self.objective == "lstm" and not self.context_gradient:
            raise ValueError("context_gradient=False (--no-context-gradient) applies to EPG's conv loss "
                             "only; objective 'lstm' has no buffer context")
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


@struct.dataclass
class LossInputs:
    """The policy-independent part of L_phi's input rows; fixed during one update."""

    s: jax.Array  # (N, obs_dim) normalised observations (the policy's input)
    data: jax.Array  # (N, obs_dim + act_dim + 2) rows' data: normalised s and a, r, d
    valid: jax.Array  # (N,) 1 for real rows, 0 for front padding


def loss_inputs(buf: Buffer, obs_stats, act_stats) -> LossInputs:
    """Normalises a buffer once (the statistics do not change within an update)."""
    s = running_statistics.normalize(buf.obs, obs_stats)
    data = jnp.concatenate([s, running_statistics.normalize(buf.action, act_stats),
                            buf.reward[:, None], buf.done[:, None]], axis=-1)
    return LossInputs(s=s, data=data, valid=buf.valid)


def make_epg_loss_parts(policy: GaussianPolicy, loss_module: EPGLoss):
    """The two ways of evaluating L_phi on a minibatch, as pure functions of the policy parameters.

    Rows hold data (normalised s and a, r, d) and the policy's outputs pi_mu(s), pi_logstd(s); the
    policy parameters enter only through those outputs. With inp a ``LossInputs`` over N rows and
    head_idx (B,) the scored rows:

    - ``exact(pp, lp, inp, head_idx) -> (loss, (mean_b, log_std_b))``: the policy on all N rows,
      context and head differentiable;
    - ``context(pp, lp, inp) -> (context_size,)``: the buffer context c (no stop-gradient applied);
    - ``head(pp, lp, inp, head_idx, c) -> (loss, (mean_b, log_std_b))``: the policy on the B rows
      only, scored against a given c.

    (mean_b, log_std_b) (B, act_dim) are the policy's outputs on the scored rows (reused by PPO).
    """

    def rows_of(pp, s, data):
        mean, log_std = policy.apply(pp, s)
        return jnp.concatenate([data, mean, log_std], axis=-1), (mean, log_std)

    def exact(pp, lp, inp, head_idx):
        rows, (mean, log_std) = rows_of(pp, inp.s, inp.data)
        return loss_module.apply(lp, rows, inp.valid, head_idx), (mean[head_idx], log_std[head_idx])

    def context(pp, lp, inp):
        rows, _ = rows_of(pp, inp.s, inp.data)
        return loss_module.apply(lp, rows, inp.valid, method=EPGLoss.context)

    def head(pp, lp, inp, head_idx, c):
        rows_b, outs_b = rows_of(pp, inp.s[head_idx], inp.data[head_idx])
        return loss_module.apply(lp, rows_b, c, inp.valid[head_idx], method=EPGLoss.head), outs_b

    return exact, context, head


def make_epg_policy_loss(policy: GaussianPolicy, loss_module: EPGLoss, context_gradient: bool = True):
    """Returns L(policy_params, loss_params, buffer, obs_stats, act_stats, head_idx) -> ().

    Rows hold data (normalised s and a, r, d) and the policy's outputs pi_mu(s), pi_logstd(s); the
    policy parameters enter only through those outputs. ``context_gradient=False``: the same value,
    but the buffer context is computed under stop-gradient (its gradient is the head's alone), as in
    a lifetime's first minibatch step with ``LifetimeConfig(context_gradient=False)``.
    """
    exact, context, head = make_epg_loss_parts(policy, loss_module)

    def loss(policy_params, loss_params, buf, obs_stats, act_stats, head_idx):
        inp = loss_inputs(buf, obs_stats, act_stats)
        if context_gradient:
            return exact(policy_params, loss_params, inp, head_idx)[0]
        c = jax.lax.stop_gradient(context(policy_params, loss_params, inp))
        return head(policy_params, loss_params, inp, head_idx, c)[0]

    return loss


def make_lifetime(env: TaskFamily, config: LifetimeConfig,
                  loss_module: EPGLoss | MetaGenRLObjective | None = None,
                  with_ppo: bool = True, with_no_update_eval: bool = False):
    """Returns the ``OnPolicyLearner``; calling it runs ``lifetime(loss_params, task, key, ppo_factor)
    -> metrics``.

    ``loss_module``: an ``EPGLoss`` (objectives "pure" and "residual"; default ``EPGLoss()``) or a
    ``MetaGenRLObjective`` (objective "lstm"; default ``MetaGenRLObjective()``); loss_params are its
    parameters.

    ``with_ppo=False`` builds the program without the PPO term and value net (ppo_factor is then
    ignored; used when f is always 0, e.g. at meta-test): a smaller program that compiles faster.
    With objective "lstm" the value net and its GAE regression stay (L_alpha reads V); only the PPO
    policy term goes.

    ``with_no_update_eval``: also evaluate the agent before its first update (the no-update
    baseline: same initialisation, same evaluation starts and noise).

    metrics: 'eval_return' () return of the final policy (fitness: sampled actions unless
    ``deterministic_eval``), 'eval_return_sampled' and 'eval_return_mean_action' (), 'curve'
    (num_updates,) mean return of episodes completed in each update's rollout (NaN where none),
    'final_log_std' (), and 'no_update_return'(_mean_action) () where asked for.
    """
    cfg = config.validate()
    residual = cfg.objective == "residual"
    lstm = cfg.objective == "lstm"
    with_ppo = with_ppo or residual
    loss_module = loss_module or (MetaGenRLObjective() if lstm else EPGLoss())
    if isinstance(loss_module, MetaGenRLObjective) != lstm:
        raise ValueError(f"objective {cfg.objective!r} needs "
                         f"{'a MetaGenRLObjective' if lstm else 'an EPGLoss'}, got {type(loss_module).__name__}")
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
    if lstm:
        lstm_loss = make_lstm_policy_loss(policy, loss_module)
    else:
        objective = ConvObjective(loss_module, N, B)
        _, epg_context, epg_head = make_epg_loss_parts(policy, loss_module)

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

    def update(agent, key, loss_params, ppo_factor):
        k_roll, k_perm = jax.random.split(key)
        (agent,), tr = jax.lax.scan(rollout_step, (agent,), jax.random.split(k_roll, M))
        obs_stats = running_statistics.update(agent.obs_stats, tr["obs"], std_min_value=cfg.obs_std_min)
        act_stats = running_statistics.update(agent.act_stats, tr["action"], std_min_value=cfg.obs_std_min)
        shift = lambda old, new: jnp.concatenate([old[M:], new], axis=0)
        buf = Buffer(obs=shift(agent.buffer.obs, tr["obs"]), action=shift(agent.buffer.action, tr["action"]),
                     reward=shift(agent.buffer.reward, tr["reward"]), done=shift(agent.buffer.done, tr["done"]),
                     valid=shift(agent.buffer.valid, jnp.ones(M)))

        # The statistics are fixed during the update: normalise the buffer once.
        inp = loss_inputs(buf, obs_stats, act_stats)
        if not cfg.context_gradient:  # one context per update, from the policy before the update
            ctx = jax.lax.stop_gradient(epg_context(agent.policy, loss_params, inp))

        # PPO term over the newest M rows, as openai/EPG: clipped surrogate + kl_coef KL(old || new)
        # + value loss, all inside the f-weighted total, advantages normalised over the M rows.
        # Only evaluated while f > 0 (f is shared by the batch, so the cond stays a real branch
        # under vmap), and always in the residual form; with "lstm" the value targets (and the value
        # net's update) are computed at every update, the policy's PPO term only while f > 0.
        s_new = inp.s[N - M:]  # = the normalised tr["obs"]
        s_next = norm(tr["next_obs"], obs_stats)  # s_{t+1} before any auto-reset (time limits)

        def ppo_targets(vp):
            v = value.apply(vp, s_new)
            nv = value.apply(vp, s_next)
            adv, target = gae(tr["reward"], v, nv, tr["done"], tr["truncated"], cfg.gamma, cfg.gae_lambda)
            old_mean, old_log_std = policy.apply(agent.policy, s_new)
            return (adv - adv.mean()) / (adv.std() + 1e-8), target, old_mean, old_log_std

        use_ppo = True if residual else ((ppo_factor > 0) if with_ppo else False)
        w_epg, w_ppo = (1.0, 1.0) if residual else (1.0 - ppo_factor, ppo_factor)
        zeros_a = jnp.zeros((M, env.action_size))
        if lstm:  # GAE targets at every update: the value net learns whatever f is (L_alpha reads V)
            adv, target, old_mean, old_log_std = ppo_targets(agent.value)
            obj_inp = lstm_inputs(s_new, tr["action"], tr["reward"], value.apply(agent.value, s_new),
                                  value.apply(agent.value, s_next), tr["done"], act_stats)
        else:
            adv, target, old_mean, old_log_std = _cond(
                use_ppo, ppo_targets, lambda vp: (jnp.zeros(M), jnp.zeros(M), zeros_a, zeros_a), agent.value)
        perm = jax.random.permutation(k_perm, M).reshape(M // B, B)

        def sgd(carry, idx):
            pp, vp, po, vo = carry

            def total_loss(params):
                pp, vp = params
                if cfg.context_gradient:  # the loss through the Objective interface
                    l_epg, outs_b = objective.policy_loss(loss_params, pp, {
                        "s": inp.s, "data": inp.data, "valid": inp.valid, "head_idx": N - M + idx}, actor), None
                else:  # the fast path: the context computed once per update, the head per minibatch
                    l_epg, outs_b = epg_head(pp, loss_params, inp, N - M + idx, ctx)

                def l_ppo(args):
                    pp, vp, outs_b = args
                    if cfg.context_gradient:
                        # a separate B-row forward: sharing the N-row one's outputs would be the
                        # same maths but not the same floats, and this mode reproduces earlier runs
                        mean, log_std = policy.apply(pp, s_new[idx])
                    else:  # the head's outputs on the minibatch rows, shared
                        mean, log_std = outs_b
                    surrogate = ppo_policy_loss(mean, log_std, tr["action"][idx], tr["log_prob"][idx],
                                                adv[idx], cfg.clip_eps, normalize_advantages=False)
                    kl = gaussian_kl(old_mean[idx], old_log_std[idx], mean, log_std).mean()
                    v_loss = jnp.mean((value.apply(vp, s_new[idx]) - target[idx]) ** 2)
                    return surrogate + cfg.kl_coef * kl + cfg.value_coef * v_loss

                lp = _cond(use_ppo, l_ppo, lambda _: 0.0, (pp, vp, outs_b))
                return w_epg * l_epg + w_ppo * lp

            g_pi, g_v = jax.grad(total_loss)((pp, vp))
            upd, po = pi_opt.update(g_pi, po, pp)
            pp = optax.apply_updates(pp, upd)

            def v_step(args):
                vp, vo = args
                u, vo = v_opt.update(g_v, vo, vp)
                return optax.apply_updates(vp, u), vo

            vp, vo = _cond(use_ppo, v_step, lambda a: a, (vp, vo))
            return (pp, vp, po, vo), None

        def sgd_lstm(carry, idx):
            """One minibatch step of (1 - f) L_alpha + f (PPO surrogate + KL) + value loss: the
            backward LSTM and the policy run over all M rows, the B rows at idx are scored."""
            pp, vp, po, vo = carry

            def total_loss(params):
                pp, vp = params
                l_obj, (mean, log_std) = lstm_loss(pp, loss_params, obj_inp, idx)

                def l_ppo(outs_b):
                    mean_b, log_std_b = outs_b
                    surrogate = ppo_policy_loss(mean_b, log_std_b, tr["action"][idx], tr["log_prob"][idx],
                                                adv[idx], cfg.clip_eps, normalize_advantages=False)
                    kl = gaussian_kl(old_mean[idx], old_log_std[idx], mean_b, log_std_b).mean()
                    return surrogate + cfg.kl_coef * kl

                lp = _cond(use_ppo, l_ppo, lambda _: 0.0, (mean[idx], log_std[idx]))
                v_loss = jnp.mean((value.apply(vp, s_new[idx]) - target[idx]) ** 2)
                return w_epg * l_obj + w_ppo * lp + cfg.value_coef * v_loss

            g_pi, g_v = jax.grad(total_loss)((pp, vp))
            upd, po = pi_opt.update(g_pi, po, pp)
            u, vo = v_opt.update(g_v, vo, vp)
            return (optax.apply_updates(pp, upd), optax.apply_updates(vp, u), po, vo), None

        (pp, vp, po, vo), _ = jax.lax.scan(
            sgd_lstm if lstm else sgd, (agent.policy, agent.value, agent.policy_opt, agent.value_opt), perm)
        n_done = tr["done"].sum()
        curve = jnp.where(n_done > 0, tr["completed"].sum() / jnp.maximum(n_done, 1), jnp.nan)
        agent = agent.replace(policy=pp, value=vp, policy_opt=po, value_opt=vo, obs_stats=obs_stats,
                              act_stats=act_stats, buffer=buf)
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
                          env_state=env.reset(k_env, task), key=k_run)

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
