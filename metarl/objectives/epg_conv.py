"""EPG's learned loss L_phi: a temporal convolution over the agent's recent experience.

Houthooft et al. (2018), "Evolved Policy Gradients". One row per transition of a buffer of the last
N transitions (zero-padded at the front while fewer exist):

    row_t = [s_t (normalised), a_t (normalised), r_t, d_t, pi_mu(s_t), pi_logstd(s_t), m]

with m = tanh(W 1 + b) a learned constant "memory" vector. A context c is computed from the whole
buffer (Conv1D(16, k6, s5) -> leaky_relu -> Conv1D(32, k4, s2) -> leaky_relu -> mean over time ->
Dense(32)) and tiled to every row; a per-row head (Dense(16) -> leaky_relu -> Dense(1)) scores the
rows of a minibatch, and L_phi is their mean. The policy enters only through pi_mu and pi_logstd, so
gradients reach the policy through its outputs only. (The original exploration-bonus input, a
constant, is dropped.)

The two parts are separate methods, ``EPGLoss.context`` (the whole buffer -> c) and ``EPGLoss.head``
(a minibatch's rows and c -> L_phi), so a caller can compute c once and score several minibatches
against it (``LifetimeConfig.context_gradient=False``); ``__call__`` composes them.

As objectives of the on-policy agent (``metarl.objectives.on_policy``): ``PureConvObjective`` is the
paper's loss, (1 - f) L_phi + f L_PPO with f annealed by the algorithm; ``ResidualConvObjective`` is
L_PPO + L_phi at every update with L_phi's output layer starting at zero, so generation 0 is PPO
exactly and ES searches for a correction to it (as learned policy optimisation does; not in the
paper). ``context_gradient`` picks how the buffer context c enters the policy gradient: True (the
paper's loss, exact): every minibatch step recomputes c from pi(s) of the current policy on all N
rows and differentiates through it; False (an approximation, 2.3x faster meta-training on the
reacher cpu preset): c is computed once per update from the policy at the update's start, held
constant, and each minibatch step runs the policy and the head on its B rows only. The first
minibatch's loss value is the same in both modes.

Options (off by default: the paper's loss):

- lifetime progress (``progress_input``, ``--progress-input``; ``progress_context``,
  ``--progress-context``): the agent's lifetime progress t/T in [0, 1) (``OnPolicyBatch.progress``,
  the update index over the number of updates) appended to every row the per-row head reads, and
  with ``progress_context`` to every buffer row the convolutions read too, so the loss can change
  over the agent's lifetime (as temporally aware LPO / LPG). The residual form's output layer still
  starts at zero: at phi_0 it is PPO exactly.
- a mean penalty (``mean_penalty``, ``--mean-penalty COEF``): ``COEF * mean(relu(|mu| - bound)^2)``
  over the scored rows' policy means mu, ``bound`` the env's action bound, added to L_phi. In the
  paper the policy mean is an unbounded MLP and the env clips the actions it is given; the pure loss
  alone (f = 0) can then push every agent's mean far outside the action box, every agent acts at the
  clip and all ES members tie. The penalty is part of the objective (it counts in learned and
  initial-loss meta-tests alike), a deviation from the paper used only when asked for.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl.objectives.on_policy import PPOMixing, loss_inputs, mean_outside_box, with_progress


def row_width(obs_size: int, action_size: int, memory_size: int = 32) -> int:
    """Width of one buffer row: obs + act + 2 + 2 * act + memory."""
    return obs_size + action_size + 2 + 2 * action_size + memory_size


class StridedConv1D(nn.Module):
    """A VALID 1-D convolution, (R, C) -> ((R - k) // s + 1, features), with ``nn.Conv``'s parameters
    (kernel (k, C, features) lecun-normal, bias zeros, created in that order: the same phi from the
    same key) computed as one matmul over the k strided row slices (im2col).

    Why not ``nn.Conv``: ES vmaps the loss over members, each with its own kernel, and XLA turns a
    convolution with batched kernels into a grouped convolution (feature_group_count = members),
    whose CPU kernels, the context gradient's transposed (lhs-dilated) ones above all, are far slower
    than the batched matmul this is (benchmarks/epg_profile.py). Same sums, another order: equal to
    ``nn.Conv`` up to float rounding."""

    features: int
    kernel_size: int
    stride: int

    @nn.compact
    def __call__(self, x):
        k, s = self.kernel_size, self.stride
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        n = (x.shape[0] - k) // s + 1
        patches = jnp.stack([x[j: j + s * (n - 1) + 1: s] for j in range(k)], axis=1)  # (n, k, C)
        return jnp.einsum("nkc,kco->no", patches, kernel) + bias


class EPGLoss(nn.Module):
    """L_phi(rows, valid, head_idx) -> scalar, = head(rows[head_idx], context(rows, valid)).

    rows: (N, W) transitions without the memory units (oldest first), W = obs + act + 2 + 2 act.
    valid: (N,) 1 for real rows, 0 for front padding. head_idx: (B,) indices of the scored rows.
    Parameters: memory, conv1, conv2, context (the buffer part) and head_hidden, head_out.
    ``progress_head`` / ``progress_context``: the lifetime progress (a scalar, the ``progress``
    argument) appended to each row the head / the convolutions read (after the memory units).
    """

    memory_size: int = 32
    context_size: int = 32
    head_hidden: int = 16
    # the output layer starts at zero (L_phi = 0 at phi_0): the residual objective L_PPO + L_phi
    zero_output: bool = False
    progress_head: bool = False  # the lifetime progress as one more input of the per-row head
    progress_context: bool = False  # ... and of the buffer rows the context convolutions read

    @property
    def reads_progress(self) -> bool:
        return self.progress_head or self.progress_context

    # "matmul": the convolutions as im2col matmuls (StridedConv1D); "xla": nn.Conv (the former path,
    # grouped convolutions under ES's vmap; kept for benchmarks/epg_profile.py). Same parameters.
    conv_impl: str = "matmul"

    def setup(self):
        self.memory_dense = nn.Dense(self.memory_size, name="memory")
        if self.conv_impl == "xla":
            self.conv1 = nn.Conv(16, (6,), strides=(5,), padding="VALID", name="conv1")
            self.conv2 = nn.Conv(32, (4,), strides=(2,), padding="VALID", name="conv2")
        elif self.conv_impl == "matmul":
            self.conv1 = StridedConv1D(16, 6, 5, name="conv1")
            self.conv2 = StridedConv1D(32, 4, 2, name="conv2")
        else:
            raise ValueError(f"unknown conv_impl {self.conv_impl!r}; expected 'matmul' or 'xla'")
        self.context_dense = nn.Dense(self.context_size, name="context")
        self.hidden_dense = nn.Dense(self.head_hidden, name="head_hidden")
        out_init = nn.initializers.zeros if self.zero_output else nn.initializers.lecun_normal()
        self.out_dense = nn.Dense(1, kernel_init=out_init, name="head_out")

    def _with_memory(self, rows, valid, progress=None):
        """(R, W), (R,) -> (R, W + memory [+ 1]): rows with the memory units (and the progress where
        given) appended, padding zeroed."""
        memory = nn.tanh(self.memory_dense(jnp.ones((1,), rows.dtype)))
        x = jnp.concatenate([rows, jnp.broadcast_to(memory, (rows.shape[0], self.memory_size))], -1)
        if progress is not None:
            x = with_progress(x, progress)
        return x * valid[:, None]

    def _progress(self, progress, used: bool):
        if not used:
            return None
        if progress is None:
            raise ValueError("this EPGLoss reads the lifetime progress: pass progress=")
        return progress

    def context(self, rows, valid, progress=None):
        """The buffer's context c: rows (N, W), valid (N,), progress () (read with
        ``progress_context``) -> (context_size,)."""
        x = self._with_memory(rows, valid, self._progress(progress, self.progress_context))
        h = nn.leaky_relu(self.conv1(x))
        h = nn.leaky_relu(self.conv2(h))
        return self.context_dense(h.mean(axis=0))

    def head(self, rows_b, context, valid_b=None, progress=None):
        """Mean head score of a minibatch: rows_b (B, W), context (context_size,),
        valid_b (B,) or None (all real rows), progress () (read with ``progress_head``) -> scalar."""
        valid_b = jnp.ones(rows_b.shape[0], rows_b.dtype) if valid_b is None else valid_b
        x = self._with_memory(rows_b, valid_b, self._progress(progress, self.progress_head))
        x = jnp.concatenate([x, jnp.broadcast_to(context, (x.shape[0], self.context_size))], -1)
        out = self.out_dense(nn.leaky_relu(self.hidden_dense(x)))
        return out.mean()

    def __call__(self, rows, valid, head_idx, progress=None):
        return self.head(rows[head_idx], self.context(rows, valid, progress), valid[head_idx], progress)


def init_epg_loss(key, obs_size: int, action_size: int, buffer_size: int = 512, batch: int = 32,
                  module: EPGLoss | None = None):
    """Initial parameters phi of the loss network for the given environment shapes."""
    module = module or EPGLoss()
    width = row_width(obs_size, action_size, module.memory_size) - module.memory_size
    progress = jnp.zeros(()) if module.reads_progress else None
    return module.init(key, jnp.zeros((buffer_size, width)), jnp.ones(buffer_size),
                       jnp.arange(batch), progress)


def param_count(params) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


@dataclasses.dataclass(frozen=True)
class ConvObjective:
    """EPG's L_phi as a ``metarl.protocols.Objective``: phi = the parameters of ``module``.

    ``batch``: one buffer of N rows and the B rows scored, ``{"s": (N, obs) normalised observations
    (the policy's input), "data": (N, obs + act + 2) normalised s and a, r, d, "valid": (N,),
    "head_idx": (B,)[, "progress": () the lifetime progress, read where the module takes it]}``
    (metarl.objectives.on_policy.loss_inputs). ``learner.pi(policy_params, s)``
    gives the Gaussian policy's outputs (mu, log_std), the only way the policy enters L_phi.
    Unlike MetaGenRL's L_alpha, phi's shapes depend on the body's sizes (and N >= 21 rows: the two
    strided convolutions need them), so a loss evolved on one body cannot train another.
    """

    module: EPGLoss = dataclasses.field(default_factory=EPGLoss)
    buffer_size: int = 512
    minibatch_size: int = 32

    def init(self, key: jax.Array, obs_size: int, act_size: int):
        """phi_0 for a body with these observation / action sizes."""
        return init_epg_loss(key, obs_size, act_size, self.buffer_size, self.minibatch_size, self.module)

    def policy_loss(self, obj_params, policy_params, batch: dict, learner, critic_params=None):
        """L_phi(pi; batch) (): the head's mean score of the B rows against the buffer's context,
        both differentiable in the policy's parameters."""
        mean, log_std = learner.pi(policy_params, batch["s"])
        rows = jnp.concatenate([batch["data"], mean, log_std], axis=-1)
        return self.module.apply(obj_params, rows, batch["valid"], batch["head_idx"], batch.get("progress"))


def make_epg_loss_parts(pi, loss_module: EPGLoss):
    """The two ways of evaluating L_phi on a minibatch, as pure functions of the policy parameters.

    ``pi(policy_params, s) -> (mu, log_std)``. Rows hold data (normalised s and a, r, d) and the
    policy's outputs; the policy parameters enter only through those outputs. With inp a
    ``LossInputs`` over N rows and head_idx (B,) the scored rows:

    - ``exact(pp, lp, inp, head_idx) -> (loss, (mean_b, log_std_b))``: the policy on all N rows,
      context and head differentiable;
    - ``context(pp, lp, inp) -> (context_size,)``: the buffer context c (no stop-gradient applied);
    - ``head(pp, lp, inp, head_idx, c) -> (loss, (mean_b, log_std_b))``: the policy on the B rows
      only, scored against a given c.

    (mean_b, log_std_b) (B, act_dim) are the policy's outputs on the scored rows (reused by PPO).
    Each takes an optional last argument ``progress`` (), the lifetime progress, for a module that
    reads it.
    """

    def rows_of(pp, s, data):
        mean, log_std = pi(pp, s)
        return jnp.concatenate([data, mean, log_std], axis=-1), (mean, log_std)

    def exact(pp, lp, inp, head_idx, progress=None):
        rows, (mean, log_std) = rows_of(pp, inp.s, inp.data)
        return (loss_module.apply(lp, rows, inp.valid, head_idx, progress),
                (mean[head_idx], log_std[head_idx]))

    def context(pp, lp, inp, progress=None):
        rows, _ = rows_of(pp, inp.s, inp.data)
        return loss_module.apply(lp, rows, inp.valid, progress, method=EPGLoss.context)

    def head(pp, lp, inp, head_idx, c, progress=None):
        rows_b, outs_b = rows_of(pp, inp.s[head_idx], inp.data[head_idx])
        return loss_module.apply(lp, rows_b, c, inp.valid[head_idx], progress, method=EPGLoss.head), outs_b

    return exact, context, head


def make_epg_policy_loss(pi, loss_module: EPGLoss, context_gradient: bool = True):
    """Returns L(policy_params, loss_params, buffer, obs_stats, act_stats, head_idx) -> ().

    ``buffer``: raw rows with fields obs, action, reward, done, valid (N, ...). ``context_gradient
    =False``: the same value, but the buffer context is computed under stop-gradient (its gradient
    is the head's alone), as in an update's first minibatch step without the context gradient.
    """
    exact, context, head = make_epg_loss_parts(pi, loss_module)

    def loss(policy_params, loss_params, buf, obs_stats, act_stats, head_idx):
        inp = loss_inputs(buf.obs, buf.action, buf.reward, buf.done, buf.valid, obs_stats, act_stats)
        if context_gradient:
            return exact(policy_params, loss_params, inp, head_idx)[0]
        c = jax.lax.stop_gradient(context(policy_params, loss_params, inp))
        return head(policy_params, loss_params, inp, head_idx, c)[0]

    return loss


@dataclasses.dataclass(frozen=True)
class PureConvObjective(PPOMixing, ConvObjective):
    """EPG's L_phi for the on-policy agent, the paper's form: (1 - f) L_phi + f L_PPO.

    ``mean_penalty`` > 0 (not the paper's): L_phi + mean_penalty * mean(relu(|mu| - action_bound)^2)
    over the scored rows' policy means mu. The paper's policy mean is an unbounded MLP and the env
    clips the actions; with the pure loss alone the means can drift far outside the action box (every
    agent then acts at the clip and ES members tie), which this term, part of the objective, resists.
    ``progress_input`` (read from ``module``): see the module docstring.
    """

    context_gradient: bool = True
    mean_penalty: float = 0.0
    action_bound: float = 1.0
    ppo_always: ClassVar[bool] = False
    value_always: ClassVar[bool] = False

    def prepare(self, phi, policy_params, batch, actor):
        """(the buffer's LossInputs, the held context c or None, offset N - M of the newest rows,
        the lifetime progress or None where the module does not read it)."""
        inp = batch.buffer
        offset = inp.s.shape[0] - batch.s.shape[0]
        progress = batch.progress if self.module.reads_progress else None
        if self.context_gradient:
            return inp, None, offset, progress
        _, context, _ = make_epg_loss_parts(actor.pi, self.module)
        return inp, jax.lax.stop_gradient(context(policy_params, phi, inp, progress)), offset, progress

    def minibatch_loss(self, phi, policy_params, inputs, idx, actor):
        """(L_phi (+ the mean penalty) of the newest rows at idx (B,), their policy outputs or None)."""
        inp, c, offset, progress = inputs
        if c is None:  # the exact loss through the Objective interface
            batch = {"s": inp.s, "data": inp.data, "valid": inp.valid, "head_idx": offset + idx}
            if progress is not None:
                batch["progress"] = progress
            loss, outs = self.policy_loss(phi, policy_params, batch, actor), None
        else:
            _, _, head = make_epg_loss_parts(actor.pi, self.module)  # the context held, the head per minibatch
            loss, outs = head(policy_params, phi, inp, offset + idx, c, progress)
        if self.mean_penalty > 0:
            mean = actor.pi(policy_params, inp.s[offset + idx])[0] if outs is None else outs[0]
            loss = loss + self.mean_penalty * mean_outside_box(mean, self.action_bound)
        return loss, outs


@dataclasses.dataclass(frozen=True)
class ResidualConvObjective(PureConvObjective):
    """EPG's L_phi added to the agent's PPO term at every update, L_PPO + L_phi, with L_phi's output
    layer at zero, so phi_0 gives PPO exactly (a deviation from the paper, kept beside it)."""

    module: EPGLoss = dataclasses.field(default_factory=lambda: EPGLoss(zero_output=True))
    ppo_always: ClassVar[bool] = True
