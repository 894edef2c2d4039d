"""PPO (Schulman et al., 2017): the whole training run is one pure function of (key, task).

``train = make_train(env, config)``; ``jax.jit(jax.vmap(train))(keys, tasks)`` trains one agent per
(seed, task) in one compiled program. Gaussian policy, GAE, clipped surrogate, running observation
normalisation (brax's acme running statistics), Adam with global-norm clipping.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import optax
from brax.training.acme import running_statistics, specs
from flax import struct

from metarl.checks import require_positive
from metarl.envs.core import TaskFamily, repeat_task
from metarl.evaluation import gaussian_policy_returns
from metarl.inner.lifetime import learn
from metarl.networks import GaussianPolicy, ValueNet, gaussian_log_prob, sample_gaussian
from metarl.objectives.ppo_loss import gae, ppo_policy_loss


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    total_steps: int = 200_000
    num_envs: int = 16
    unroll_length: int = 32
    num_minibatches: int = 4
    update_epochs: int = 4
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    entropy_coef: float = 0.0
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    reward_scale: float = 1.0
    hidden: Sequence[int] = (64, 64)
    init_log_std: float = 0.0
    normalize_observations: bool = True
    obs_std_min: float = 1e-6  # floor of the normaliser's std (brax's default; EPG agents use 0.1)
    eval_envs: int = 16
    # False: 'eval_return' is the sampled-action return (EPG's protocol); True: the mean action's
    deterministic_eval: bool = False

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.unroll_length

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.steps_per_update)

    def validate(self) -> "PPOConfig":
        require_positive(self, ("total_steps", "num_envs", "unroll_length", "num_minibatches", "update_epochs"), prefix="PPO ")
        if self.steps_per_update % self.num_minibatches:
            raise ValueError(f"PPO num_envs * unroll_length = {self.steps_per_update} must be divisible"
                             f" by num_minibatches = {self.num_minibatches}")
        return self


def rollout_gae(value_fn, traj: dict, gamma: float, lam: float):
    """(advantages, value targets) (T, n) of a rollout.

    traj: 'obs', 'final_obs' (T, n, obs_dim) (the state each step reached before any auto-reset,
    ``EnvState.final_obs``), 'reward', 'done', 'truncated' (T, n); value_fn(obs (..., obs_dim)) -> (...).
    V(s_{t+1}) is value_fn(final_obs): at a time-limit end the target bootstraps from the episode's
    true last state, not from the next episode's first observation.
    """
    values, next_values = value_fn(traj["obs"]), value_fn(traj["final_obs"])
    return gae(traj["reward"], values, next_values, traj["done"], traj["truncated"], gamma, lam)


@struct.dataclass
class PPOState:
    params: dict  # {'policy': ..., 'value': ...}
    opt_state: optax.OptState
    obs_stats: running_statistics.RunningStatisticsState
    env_state: object  # EnvState batched over num_envs
    key: jax.Array


def deployed_policy(env: TaskFamily, config: PPOConfig):
    """policy_of(PPOState) -> policy_fn(obs (n, obs_dim)) -> (mean, log_std) (n, act_dim): the
    trained Gaussian policy with its observation normalisation (metarl.evaluation.gaussian)."""
    policy = GaussianPolicy(env.action_size, config.hidden, config.init_log_std)

    def policy_of(state: PPOState):
        def policy_fn(obs):
            o = running_statistics.normalize(obs, state.obs_stats) if config.normalize_observations else obs
            return policy.apply(state.params["policy"], o)
        return policy_fn

    return policy_of


def make_train(env: TaskFamily, config: PPOConfig):
    """Returns ``train(key, task) -> (PPOState, metrics)``; metrics arrays have shape (num_updates,).

    metrics: 'episode_return' (mean return of episodes completed in each update's rollouts, NaN when
    none completed), 'env_steps', and after training 'eval_return_sampled' and
    'eval_return_mean_action' () on the same starts, 'eval_return' () the one ``deterministic_eval`` picks.
    """
    cfg = config.validate()
    policy = GaussianPolicy(env.action_size, cfg.hidden, cfg.init_log_std)
    value = ValueNet(cfg.hidden)
    optimizer = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.learning_rate))
    mb_size = cfg.steps_per_update // cfg.num_minibatches
    policy_of = deployed_policy(env, cfg)

    def normalize(obs, stats):
        return running_statistics.normalize(obs, stats) if cfg.normalize_observations else obs

    def loss_fn(params, batch):
        mean, log_std = policy.apply(params["policy"], batch["obs"])
        pl = ppo_policy_loss(mean, log_std, batch["action"], batch["log_prob"], batch["adv"],
                             cfg.clip_eps, cfg.entropy_coef)
        v = value.apply(params["value"], batch["obs"])
        return pl + cfg.value_coef * jnp.mean((v - batch["target"]) ** 2)

    def rollout_step(carry, key):
        params, stats, env_state = carry
        obs = normalize(env_state.obs, stats)
        mean, log_std = policy.apply(params["policy"], obs)
        action = sample_gaussian(key, mean, log_std)
        next_state = jax.vmap(env.step)(env_state, action)
        tr = dict(obs=obs, action=action, log_prob=gaussian_log_prob(mean, log_std, action),
                  reward=next_state.reward * cfg.reward_scale, done=next_state.done,
                  truncated=next_state.truncated, completed=next_state.completed_return,
                  final_obs=normalize(next_state.final_obs, stats), raw_next_obs=next_state.obs)
        return (params, stats, next_state), tr

    def update(state: PPOState, _):
        key, k_roll, k_perm = jax.random.split(state.key, 3)
        (_, _, env_state), traj = jax.lax.scan(
            rollout_step, (state.params, state.obs_stats, state.env_state),
            jax.random.split(k_roll, cfg.unroll_length))
        adv, target = rollout_gae(lambda o: value.apply(state.params["value"], o), traj,
                                  cfg.gamma, cfg.gae_lambda)
        batch = dict(obs=traj["obs"], action=traj["action"], log_prob=traj["log_prob"], adv=adv,
                     target=target)
        batch = jax.tree_util.tree_map(lambda x: x.reshape((-1, *x.shape[2:])), batch)

        def epoch(carry, k):
            params, opt_state = carry
            perm = jax.random.permutation(k, cfg.steps_per_update)
            mbs = jax.tree_util.tree_map(
                lambda x: x[perm].reshape((cfg.num_minibatches, mb_size, *x.shape[1:])), batch)

            def sgd(carry, mb):
                params, opt_state = carry
                grads = jax.grad(loss_fn)(params, mb)
                upd, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, upd), opt_state), None

            return jax.lax.scan(sgd, (params, opt_state), mbs)[0], None

        (params, opt_state), _ = jax.lax.scan(epoch, (state.params, state.opt_state),
                                              jax.random.split(k_perm, cfg.update_epochs))
        stats = state.obs_stats
        if cfg.normalize_observations:
            stats = running_statistics.update(stats, traj["raw_next_obs"], std_min_value=cfg.obs_std_min)
        n_done = traj["done"].sum()
        ep_ret = jnp.where(n_done > 0, traj["completed"].sum() / jnp.maximum(n_done, 1), jnp.nan)
        new = PPOState(params, opt_state, stats, env_state, key)
        return new, ep_ret

    def train(key, task):
        k_pi, k_v, k_env, k_run, k_eval = jax.random.split(key, 5)
        dummy = jnp.zeros((env.observation_size,))
        params = {"policy": policy.init(k_pi, dummy), "value": value.init(k_v, dummy)}
        tasks = repeat_task(task, cfg.num_envs)
        env_state = jax.vmap(env.reset)(jax.random.split(k_env, cfg.num_envs), tasks)
        stats = running_statistics.init_state(specs.Array((env.observation_size,), jnp.float32))
        if cfg.normalize_observations:
            stats = running_statistics.update(stats, env_state.obs, std_min_value=cfg.obs_std_min)
        state = PPOState(params, optimizer.init(params), stats, env_state, k_run)
        state, returns = learn(update, state, cfg.num_updates)

        sampled, mean_action = gaussian_policy_returns(env, policy_of(state), task, k_eval, cfg.eval_envs)
        metrics = {
            "episode_return": returns,
            "env_steps": (jnp.arange(cfg.num_updates) + 1) * cfg.steps_per_update,
            "eval_return": mean_action if cfg.deterministic_eval else sampled,
            "eval_return_sampled": sampled, "eval_return_mean_action": mean_action,
        }
        return state, metrics

    return train
