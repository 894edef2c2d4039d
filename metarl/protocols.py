"""The two interfaces of learned-objective meta-training: an ``Objective`` (the learned loss L_alpha)
and a ``Learner`` (an agent with a critic that a second-order outer loop can meta-train through,
``metarl.outer.metagrad``). Structural (``typing.Protocol``): implementations do not inherit them.

Shapes: a *batch* is a pytree whose leaves all lead with the batch axis n (MetaGenRL: n
sub-trajectories of T steps, ``{"obs": (n, T, obs_size), "action": (n, T, act_size), "reward",
"done", "mask": (n, T), ...}``, metarl.inner.replay); params and states are pytrees; a *state* is
one agent's (the outer loop ``jax.vmap``-s learners into populations). Every method is pure.
``runtime_checkable``: ``isinstance(x, Learner)`` checks that the members exist (not signatures).

An ``OnPolicyObjective`` is a learned loss of the on-policy EPG agent together with how it is mixed
with the agent's PPO term (EPG's pure and residual conv losses, MetaGenRL's L_alpha on that agent).

Implementations: ``metarl.objectives.metagenrl.BackwardLSTMObjective`` (MetaGenRL's L_alpha) and
``metarl.objectives.epg_loss.ConvObjective`` (EPG's L_phi; its learner view is
``metarl.inner.epg_lifetime.GaussianActor``, whose ``pi`` gives the Gaussian's (mu, log_std));
``metarl.inner.td3.TD3Agent`` (Learner); the on-policy EPG agent,
``metarl.inner.epg_lifetime.OnPolicyLearner`` (``init(key, task)``, ``update``, ``evaluate``: what ES
needs of a learner, no critic to meta-train through). Every learner's lifetime is
``metarl.inner.lifetime.learn``, one ``scan`` of its update.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

Params = Any   # a pytree of arrays
State = Any    # a pytree of arrays: one learner's whole state
Batch = Any    # a pytree of arrays, every leaf (n, ...)


@runtime_checkable
class Objective(Protocol):
    """A learned policy loss L_alpha with parameters alpha (``obj_params``)."""

    def init(self, key: jax.Array, obs_size: int, act_size: int) -> Params:
        """alpha_0, the initial parameters for a learner with these observation / action sizes."""
        ...

    def policy_loss(self, obj_params: Params, policy_params: Params, batch: Batch, learner: Any,
                    critic_params: Params | None = None) -> jax.Array:
        """L_alpha(phi; batch): a scalar (), differentiable in ``policy_params`` phi (and in
        ``obj_params`` alpha through phi' = phi - eta grad_phi L_alpha). It reads the policy through
        ``learner.pi``; an objective that reads values (MetaGenRL's V(s) = Q1(s, pi(s))) reads them
        through ``learner.q1(critic_params, ...)``: learners with a critic pass ``critic_params``."""
        ...


@runtime_checkable
class OnPolicyObjective(Protocol):
    """A learned loss of the on-policy (EPG) agent and how it is mixed with the agent's PPO term
    (``metarl.objectives.on_policy``; implementations in ``metarl.objectives.registry``)."""

    ppo_always: bool  # True: L_PPO + L at every update; False: (1 - f) L + f L_PPO
    value_always: bool  # True: the value net is regressed at every update (the objective reads V)

    def init(self, key: jax.Array, obs_size: int, act_size: int) -> Params:
        """The initial parameters for a body with these observation / action sizes."""
        ...

    def weights(self, ppo_factor: jax.Array) -> tuple:
        """(w_L, w_PPO) at PPO share f."""
        ...

    def prepare(self, obj_params: Params, policy_params: Params, batch: Any, actor: Any) -> Any:
        """The objective's inputs for one update, fixed during it, from the update's
        ``OnPolicyBatch`` (computed once per update, before the minibatch steps)."""
        ...

    def minibatch_loss(self, obj_params: Params, policy_params: Params, inputs: Any, idx: jax.Array,
                       actor: Any) -> tuple:
        """(L (), the policy's (mean, log_std) on the scored rows or None): the loss of the newest
        rows at ``idx`` (B,), differentiable in ``policy_params``; ``actor.pi(params, s)`` gives the
        policy's (mean, log_std)."""
        ...


@runtime_checkable
class ActorCritic(Protocol):
    """The policy pi_phi and the critic Q1 of a learner, as an objective reads them."""

    def pi(self, policy_params: Params, obs: jax.Array) -> jax.Array:
        """pi_phi(s): (..., obs_size) -> (..., act_size)."""
        ...

    def q1(self, critic_params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Q1(s, a): (..., obs_size), (..., act_size) -> (...,)."""
        ...


@runtime_checkable
class Learner(ActorCritic, Protocol):
    """An off-policy agent with a critic, trained by an objective's policy loss; what
    ``metarl.outer.metagrad.MetaTrainer`` needs of it (one instance per env group)."""

    obs_size: int
    act_size: int
    steps_per_block: int  # env steps (and critic updates) of one ``interact_and_fit_critic``

    def sample_task(self, key: jax.Array, split: str) -> Any:
        """A task of its environment family's ``split`` ("train" | "test")."""
        ...

    def init(self, key: jax.Array, task: Any) -> State:
        """A fresh agent on ``task``: parameters, optimisers, empty replay, its own RNG key."""
        ...

    def interact_and_fit_critic(self, state: State) -> State:
        """``steps_per_block`` env steps into the replay, a critic update after each."""
        ...

    def draw_batch(self, state: State, n: int) -> tuple[State, Batch]:
        """n samples (leaves (n, ...)) from the replay, drawn with the state's key (advanced)."""
        ...

    def policy_params(self, state: State) -> Params:
        """phi."""
        ...

    def critic_params(self, state: State) -> Params:
        """The critic's parameters (held fixed by the meta-gradient)."""
        ...

    def meta_loss(self, policy_params: Params, critic_params: Params, batch: Batch) -> jax.Array:
        """J(phi) (): the learner's own policy objective under its critic, minimised by the outer
        loop through phi' and blended into the policy step during warm start (TD3: DDPG's
        -mean Q1(s, pi_phi(s)) over valid steps)."""
        ...

    def apply_policy_grad(self, state: State, grad: Params) -> State:
        """One policy optimiser step on gradient ``grad`` (a pytree like phi), plus whatever the
        learner does after it (TD3: Polyak averaging of its targets)."""
        ...

    def env_steps(self, state: State) -> jax.Array:
        """Env steps taken, () int."""
        ...

    def reset_stats(self, state: State) -> State:
        """Forget the completed-episode statistics."""
        ...

    def mean_completed_return(self, state: State) -> jax.Array:
        """() mean return of the episodes completed since ``reset_stats``, NaN if none."""
        ...
