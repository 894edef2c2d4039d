"""Objective options (metarl.objectives.registry.OPTIONS): the lifetime progress as an input of every
learned objective (--progress-input, --progress-context) and the conv loss's penalty on policy means
outside the action box (--mean-penalty)."""
import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.training.acme import running_statistics, specs

from metarl.algorithms.epg.algorithm import EPGConfig
from metarl.inner.on_policy_agent import GaussianActor, LifetimeConfig
from metarl.networks import GaussianPolicy
from metarl.objectives import registry
from metarl.objectives.on_policy import OnPolicyBatch, loss_inputs

OBS, ACT, N, M, B = 3, 2, 64, 32, 8
LIFE = LifetimeConfig(buffer_size=N, update_period=M, minibatch_size=B)


def _batch(progress, key=0):
    """An OnPolicyBatch of random rows (N buffer rows, the newest M scored)."""
    ks = jax.random.split(jax.random.PRNGKey(key), 6)
    obs, action = jax.random.normal(ks[0], (N, OBS)), jax.random.normal(ks[1], (N, ACT))
    reward, done = jax.random.normal(ks[2], (N,)), jnp.zeros(N).at[20].set(1.0)
    stats_o = running_statistics.update(running_statistics.init_state(specs.Array((OBS,), jnp.float32)), obs)
    stats_a = running_statistics.update(running_statistics.init_state(specs.Array((ACT,), jnp.float32)), action)
    inp = loss_inputs(obs, action, reward, done, jnp.ones(N), stats_o, stats_a)
    new = slice(N - M, N)
    return OnPolicyBatch(buffer=inp, s=inp.s[new], action=action[new], reward=reward[new], done=done[new],
                         value=jax.random.normal(ks[3], (M,)), next_value=jax.random.normal(ks[4], (M,)),
                         act_stats=stats_a, log_prob=-jnp.ones(M), advantage=jax.random.normal(ks[5], (M,)),
                         progress=jnp.float32(progress))


def _loss(objective, params, batch, policy_params, actor, idx=jnp.arange(B)):
    inputs = objective.prepare(params, policy_params, batch, actor)
    return objective.minibatch_loss(params, policy_params, inputs, idx, actor)[0]


def _moved(params, key=5, scale=0.3):
    """Non-initial parameters: every leaf moved by Gaussian noise (zero output layers too)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(key), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


@pytest.mark.parametrize("name,options", [
    ("pure", {}), ("residual", {}), ("pure", {"progress_context": True}), ("lstm", {}), ("drift", {}),
])
def test_progress_input_makes_the_objective_depend_on_progress(name, options):
    """On: a different lifetime progress gives a different loss (at non-initial parameters); off:
    the same loss to the bit, whatever the progress; the parameters grow by the progress weights."""
    policy = GaussianPolicy(ACT, (16, 16))
    actor = GaussianActor(policy)
    pp = policy.init(jax.random.PRNGKey(1), jnp.zeros(OBS))
    off = registry.make(name, LIFE)
    on = registry.make(name, LIFE, progress_input=True, **options)
    key = jax.random.PRNGKey(0)
    p_off, p_on = _moved(off.init(key, OBS, ACT)), _moved(on.init(key, OBS, ACT))
    n = lambda p: sum(x.size for x in jax.tree_util.tree_leaves(p))  # noqa: E731
    assert n(p_on) > n(p_off)
    early, late = _batch(0.1), _batch(0.9)
    assert float(_loss(off, p_off, early, pp, actor)) == float(_loss(off, p_off, late, pp, actor))
    a, b = float(_loss(on, p_on, early, pp, actor)), float(_loss(on, p_on, late, pp, actor))
    assert np.isfinite(a) and np.isfinite(b) and abs(a - b) > 1e-6, (a, b)


def test_progress_context_reaches_the_context_and_conv_without_context_gradient():
    """progress_context: the progress changes the buffer context c (not only the head); with
    --no-context-gradient the held context and the head both read it."""
    from metarl.objectives.epg_conv import EPGLoss

    policy = GaussianPolicy(ACT, (16, 16))
    actor = GaussianActor(policy)
    pp = policy.init(jax.random.PRNGKey(1), jnp.zeros(OBS))
    obj = registry.make("pure", LIFE, progress_input=True, progress_context=True)
    phi = obj.init(jax.random.PRNGKey(0), OBS, ACT)
    inp = _batch(0.0).buffer
    rows = jnp.concatenate([inp.data, *policy.apply(pp, inp.s)], axis=-1)
    c = lambda t: obj.module.apply(phi, rows, inp.valid, jnp.float32(t), method=EPGLoss.context)  # noqa: E731
    assert not np.allclose(c(0.1), c(0.9))
    held = dataclasses.replace(obj, context_gradient=False)
    early, late = _batch(0.1), _batch(0.9)
    assert float(_loss(held, phi, early, pp, actor)) == pytest.approx(float(_loss(obj, phi, early, pp, actor)),
                                                                     rel=1e-5)
    assert float(_loss(held, phi, early, pp, actor)) != float(_loss(held, phi, late, pp, actor))


def test_residual_with_progress_input_is_zero_at_phi0_for_any_progress():
    """The residual conv loss (output layer at zero) with progress input: L_phi = 0 and no gradient
    to the policy at phi_0, whatever the progress (so the agent's PPO term alone)."""
    policy = GaussianPolicy(ACT, (16, 16))
    actor = GaussianActor(policy)
    pp = policy.init(jax.random.PRNGKey(1), jnp.zeros(OBS))
    for options in ({"progress_input": True}, {"progress_input": True, "progress_context": True}):
        obj = registry.make("residual", LIFE, **options)
        phi = obj.init(jax.random.PRNGKey(0), OBS, ACT)
        for t in (0.0, 0.5, 0.99):
            loss, grad = jax.value_and_grad(lambda p: _loss(obj, phi, _batch(t), p, actor))(pp)
            assert float(loss) == 0.0
            assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grad))


@dataclasses.dataclass(frozen=True)
class _ConstantMeanActor:
    """A policy whose mean is the parameter vector mu on every row (log-std 0)."""

    def pi(self, params, s):
        mu = jnp.broadcast_to(params["mu"], s.shape[:-1] + params["mu"].shape)
        return mu, jnp.zeros_like(mu)


@pytest.mark.parametrize("context_gradient", [True, False])
def test_mean_penalty_pulls_means_back_into_the_action_box(context_gradient):
    """--mean-penalty: means far outside the box get a larger loss (by coef * mean(relu(|mu| - bound)^2))
    and a gradient that moves them back; inside the box nothing changes; off, the loss is the
    paper's to the bit."""
    actor, bound, coef = _ConstantMeanActor(), 0.1, 1.0
    off = registry.make("pure", LIFE, context_gradient=context_gradient)
    pen = registry.make("pure", LIFE, context_gradient=context_gradient, mean_penalty=coef, action_bound=bound)
    assert (pen.mean_penalty, pen.action_bound) == (coef, bound) and off.mean_penalty == 0.0
    phi = off.init(jax.random.PRNGKey(0), OBS, ACT)
    batch = _batch(0.5)
    far = {"mu": jnp.array([3.0, -2.0])}
    l_off, g_off = jax.value_and_grad(lambda p: _loss(off, phi, batch, p, actor))(far)
    l_pen, g_pen = jax.value_and_grad(lambda p: _loss(pen, phi, batch, p, actor))(far)
    expected = coef * np.mean((np.abs([3.0, -2.0]) - bound) ** 2)
    assert float(l_pen) - float(l_off) == pytest.approx(expected, rel=1e-5)
    # the penalty's gradient points away from the box: a descent step moves the means back toward it
    extra = np.asarray(g_pen["mu"] - g_off["mu"])
    np.testing.assert_allclose(extra, coef * 2 * (np.abs([3.0, -2.0]) - bound) * np.sign([3.0, -2.0]) / ACT,
                               rtol=1e-4)
    assert np.all(np.asarray(g_pen["mu"]) * np.sign([3.0, -2.0]) > 0)
    inside = {"mu": jnp.array([0.05, -0.02])}
    assert float(_loss(pen, phi, batch, inside, actor)) == float(_loss(off, phi, batch, inside, actor))
    # off: the same objective and value as before (the ConvObjective interface's L_phi)
    idx = jnp.arange(B)
    plain = {"s": batch.buffer.s, "data": batch.buffer.data, "valid": batch.buffer.valid, "head_idx": N - M + idx}
    if context_gradient:
        assert float(l_off) == float(off.policy_loss(phi, far, plain, actor))
    assert registry.make("pure", LIFE, mean_penalty=0.0, action_bound=bound) == registry.make("pure", LIFE)


def test_option_validation():
    with pytest.raises(ValueError, match="mean_penalty .* >= 0"):
        registry.make("pure", LIFE, mean_penalty=-1.0)
    with pytest.raises(ValueError, match="mean_penalty .* >= 0"):
        EPGConfig(mean_penalty=float("nan")).validate()
    with pytest.raises(ValueError, match="objective 'lstm' does not take mean_penalty"):
        EPGConfig(objective="lstm", mean_penalty=1.0).validate()
    with pytest.raises(ValueError, match="needs progress_input"):
        registry.make("residual", LIFE, progress_context=True)
    with pytest.raises(ValueError, match="does not take progress_context"):
        registry.make("drift", LIFE, progress_input=True, progress_context=True)
    # drift_t is drift with the progress input, one mechanism
    assert registry.make("drift_t", LIFE) == registry.make("drift", LIFE, progress_input=True)
    assert registry.make("drift_t", LIFE, progress_input=True) == registry.make("drift_t", LIFE)
    # a registered factory without options keeps working, and refuses an option by name
    registry.register("plain_test", lambda lifetime, context_gradient=True: registry.make("drift", lifetime))
    try:
        assert registry.make("plain_test", LIFE).progress_input is False
        with pytest.raises(ValueError, match="objective 'plain_test' does not take progress_input"):
            registry.make("plain_test", LIFE, progress_input=True)
    finally:
        registry.unregister("plain_test")
    # EPG passes the env's action bound (goal_point: 0.1) to the penalty
    from metarl import envs
    from metarl.algorithms.epg.algorithm import EPG

    env = envs.make("goal_point")
    assert env.action_bound == 0.1
    epg = EPG(env, EPGConfig(LifetimeConfig(lifetime_steps=128, buffer_size=64, eval_envs=1, hidden=(16, 16)),
                             mean_penalty=0.5, progress_input=True))
    assert (epg.objective.mean_penalty, epg.objective.action_bound) == (0.5, 0.1)
    assert epg.objective.module.progress_head and not epg.objective.module.progress_context
