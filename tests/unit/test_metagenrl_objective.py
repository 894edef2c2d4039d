"""MetaGenRL library: replay buffer, backward-LSTM objective, meta-gradient, TD3 learner, meta-test
evaluation. The CLI test and the slow meta-training test are in tests/test_metagenrl.py."""
from types import SimpleNamespace

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from metarl.inner import replay as rb
from metarl.inner.td3 import TD3Agent, TD3Config
from metarl.algorithms.metagenrl.algorithm import MetaGenRLConfig
from metarl.objectives.backward_lstm import (BackwardLSTMObjective, MetaGenRLObjective, MixedUnit, init_objective,
                                         mixed_activation, objective_inputs)
from metarl.outer.metagrad import lookahead, meta_objective


def _fill(capacity, n, done_at):
    buf = rb.init(capacity, 1, 1)
    for t in range(n):
        d = 1.0 if t in done_at else 0.0
        buf = rb.add(buf, jnp.array([t + 1.0]), jnp.array([0.5]), 1.0, jnp.array([t + 2.0]), d, d)
    return buf


@pytest.mark.parametrize("n", [7, 29])  # partly filled; wrapped twice (oldest slot is not slot 0)
def test_replay_never_samples_across_episode_ends_or_unwritten_slots(n):
    done_at = {3, 4, 11, 17, 24}
    buf = _fill(16, n, done_at)
    batch = rb.sample(buf, jax.random.PRNGKey(0), 512, 6)
    obs, mask, done = np.asarray(batch["obs"][..., 0]), np.asarray(batch["mask"]), np.asarray(batch["done"])
    oldest = max(1, n - 16 + 1)
    assert mask[:, 0].all() and not mask.all()
    for o, m, d in zip(obs, mask, done):
        valid = o[m > 0]
        # valid steps are consecutive transitions that really were written (obs = t + 1)
        assert valid.min() >= oldest and valid.max() <= n
        np.testing.assert_array_equal(np.diff(valid), 1.0)
        # mask stays 1 up to and including the first episode end, then 0 for good
        k = int(m.sum())
        assert (m[:k] == 1).all() and (m[k:] == 0).all()
        ends = [i for i in range(k) if (valid[i] - 1) in done_at]
        assert ends in ([], [k - 1])
        if k < len(m):  # cut short: by an episode end or by the newest transition
            assert ends == [k - 1] or valid[-1] == n
        assert (o[m == 0] == 0).all() and (d[m == 0] == 0).all()


def _obj_inputs(key, B, T, A):
    ks = jax.random.split(key, 5)
    a = jax.random.uniform(ks[0], (B, T, A), minval=-1, maxval=1)
    pa = jax.random.uniform(ks[1], (B, T, A), minval=-1, maxval=1)
    r, v, vn = (jax.random.normal(k, (B, T)) for k in ks[2:])
    return a, pa, r, v, vn


def test_backward_lstm_respects_episode_ends():
    m = MetaGenRLObjective()
    alpha = init_objective(jax.random.PRNGKey(0), m)
    B, T, A = 3, 8, 2
    a, pa, r, v, vn = _obj_inputs(jax.random.PRNGKey(1), B, T, A)
    done = jnp.zeros((B, T)).at[:, 3].set(1.0)  # episode ends at t = 3
    mask = jnp.ones((B, T))
    f = jax.jit(lambda a, pa: m.apply(alpha, a, pa, r, v, vn, done, mask,
                                      method=MetaGenRLObjective.per_step))
    base = f(a, pa)
    # change the (un-normalised) action inputs of steps after the end
    a2, pa2 = a.at[:, 4:].add(0.7), pa.at[:, 4:].add(-0.5)
    out = f(a2, pa2)
    np.testing.assert_allclose(out[:, :4], base[:, :4], rtol=0, atol=1e-6)
    assert np.abs(np.asarray(out[:, 4:] - base[:, 4:])).max() > 1e-3
    # within an episode information does flow backwards: step 0 depends on step 3
    out3 = f(a.at[:, 3].add(0.7), pa)
    assert np.abs(np.asarray(out3[:, 0] - base[:, 0])).max() > 1e-4
    # ... and never forwards: step 1 does not depend on step 0
    out0 = f(a.at[:, 0].add(0.7), pa)
    np.testing.assert_allclose(out0[:, 1:], base[:, 1:], rtol=0, atol=1e-6)


def test_objective_accepts_any_action_dimension():
    m = MetaGenRLObjective()
    alpha = init_objective(jax.random.PRNGKey(0), m, act_dim=2)
    for A in (2, 6):
        a, pa, r, v, vn = _obj_inputs(jax.random.PRNGKey(A), 4, 5, A)
        z, one = jnp.zeros((4, 5)), jnp.ones((4, 5))
        loss, g = jax.value_and_grad(lambda pa: m.apply(alpha, a, pa, r, v, vn, z, one))(pa)
        assert np.isfinite(float(loss)) and g.shape == (4, 5, A)
        assert np.abs(np.asarray(g)).max() > 0
        # gradient reaches the policy only through pi(s): no gradient w.r.t. buffer actions
        ga = jax.grad(lambda a: m.apply(alpha, a, pa, r, v, vn, z, one))(a)
        assert np.abs(np.asarray(ga)).max() == 0


def test_meta_gradient_is_nonzero_and_matches_finite_differences():
    with jax.enable_x64(True):
        env = SimpleNamespace(observation_size=3, action_size=2)
        agent = TD3Agent(env, TD3Config(hidden=(8,)))
        module = MetaGenRLObjective(lstm_features=4, hidden=4)
        k = jax.random.split(jax.random.PRNGKey(0), 8)
        f64 = lambda t: jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), t)
        pol = f64(agent.policy_net.init(k[0], jnp.zeros(3)))
        cri = f64(agent.critic_net.init(k[1], jnp.zeros(3), jnp.zeros(2)))
        alpha = f64(init_objective(k[2], module))
        B, T = 4, 5
        batch = {"obs": jax.random.normal(k[3], (B, T, 3), jnp.float64),
                 "next_obs": jax.random.normal(k[4], (B, T, 3), jnp.float64),
                 "action": jax.random.uniform(k[5], (B, T, 2), jnp.float64, -1, 1),
                 "reward": jax.random.normal(k[6], (B, T), jnp.float64),
                 "done": jnp.zeros((B, T), jnp.float64).at[:, 2].set(1.0),
                 "terminal": jnp.zeros((B, T), jnp.float64).at[0, 2].set(1.0),
                 "mask": jnp.ones((B, T), jnp.float64).at[3, 4].set(0.0)}
        J = jax.jit(meta_objective(BackwardLSTMObjective(module), agent, lookahead_step=0.5))
        g = jax.jit(jax.grad(J))(alpha, pol, cri, batch)
        flat, unravel = jax.flatten_util.ravel_pytree(g)
        assert flat.dtype == jnp.float64 and np.abs(np.asarray(flat)).max() > 1e-6
        for i in range(3):
            d = jax.random.normal(jax.random.PRNGKey(10 + i), flat.shape, jnp.float64)
            d = unravel(d / jnp.linalg.norm(d))
            eps = 1e-5
            shift = lambda s: jax.tree_util.tree_map(lambda a, b: a + s * b, alpha, d)
            fd = (J(shift(eps), pol, cri, batch) - J(shift(-eps), pol, cri, batch)) / (2 * eps)
            an = sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(g),
                                                    jax.tree_util.tree_leaves(d)))
            np.testing.assert_allclose(float(fd), float(an), rtol=1e-4, atol=1e-9)
        # the inner step matters: with lr 0 the meta-loss no longer depends on alpha
        g0 = jax.jit(jax.grad(meta_objective(BackwardLSTMObjective(module), agent, lookahead_step=0.0)))(
            alpha, pol, cri, batch)
        assert np.abs(np.asarray(jax.flatten_util.ravel_pytree(g0)[0])).max() == 0


def _tiny_agent(obs=3, act=2, hidden=(8,)):
    return TD3Agent(SimpleNamespace(observation_size=obs, action_size=act), TD3Config(hidden=hidden))


def _params(agent, module, key):
    k = jax.random.split(key, 3)
    pol = agent.policy_net.init(k[0], jnp.zeros(agent.obs_dim))
    cri = agent.critic_net.init(k[1], jnp.zeros(agent.obs_dim), jnp.zeros(agent.act_dim))
    return pol, cri, init_objective(k[2], module)


def _batch(key, B, T, obs=3, act=2):
    k = jax.random.split(key, 4)
    obs_ = jax.random.normal(k[0], (B, T + 1, obs))  # consecutive states: next_obs[t] = obs[t + 1]
    return {"obs": obs_[:, :-1], "next_obs": obs_[:, 1:],
            "action": jax.random.uniform(k[1], (B, T, act), minval=-1, maxval=1),
            "reward": jax.random.normal(k[2], (B, T)), "done": jnp.zeros((B, T)),
            "terminal": jnp.zeros((B, T)), "mask": jnp.ones((B, T))}


def test_lookahead_step_is_the_originals_sum_formulation_at_its_batch_size():
    """At the original's 100 x 20 batch, all steps valid, the default eta = 2.0 on the mean equals
    phi - 1e-3 grad_phi sum_{b,t} L_alpha (its tf.gradients(obj * mask) with lr 1e-3)."""
    cfg = MetaGenRLConfig()
    assert cfg.lookahead_step == 2.0 and (cfg.td3.batch_size, cfg.td3.seq_len) == (100, 20)
    agent, module = _tiny_agent(), MetaGenRLObjective(lstm_features=8, hidden=8)
    pol, cri, alpha = _params(agent, module, jax.random.PRNGKey(0))
    batch = _batch(jax.random.PRNGKey(1), 100, 20)
    objective = BackwardLSTMObjective(module)
    ours, g_mean = jax.jit(lookahead(objective, agent, cfg.lookahead_step))(alpha, pol, cri, batch)

    def summed(p):
        a, pi_a, r, v, vn, d, m = objective_inputs(agent, p, cri, batch)
        per = module.apply(alpha, a, pi_a, r, v, vn, d, m, method=MetaGenRLObjective.per_step)
        return (per * m).sum()

    g = jax.jit(jax.grad(summed))(pol)
    theirs = jax.tree_util.tree_map(lambda p, gi: p - 1e-3 * gi, pol, g)
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), ours, pol)
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-4  # the step is not negligible
    for x, y in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    # a config value on the mean: a smaller batch keeps eta, so it no longer equals lr 1e-3 on the sum
    assert MetaGenRLConfig(meta_batch=16).lookahead_step == 2.0
    # the policy step reuses the lookahead's gradient: grad_phi L_alpha on the meta batch's first half
    J = jax.jit(meta_objective(objective, agent, 2.0, with_policy_grad=True))
    two = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, x[::-1]]), batch)
    _, g_aux = J(alpha, pol, cri, two)
    g_ref = jax.grad(objective.policy_loss, argnums=1)(alpha, pol, batch, agent, critic_params=cri)
    for x, y in zip(jax.tree_util.tree_leaves(g_aux), jax.tree_util.tree_leaves(g_ref)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-7)


def test_objective_units_mix_relu_and_square_and_normalise_after_the_activation():
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    unit = MixedUnit(6)
    p = unit.init(jax.random.PRNGKey(1), x)
    d = p["params"]["Dense_0"]
    h = mixed_activation(x @ d["kernel"] + d["bias"])
    np.testing.assert_allclose(h[:, :3], np.maximum(x @ d["kernel"] + d["bias"], 0)[:, :3], rtol=1e-6)
    np.testing.assert_allclose(h[:, 3:], np.square(x @ d["kernel"] + d["bias"])[:, 3:], rtol=1e-6)
    want = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(unit.apply(p, x), want, rtol=1e-4, atol=1e-5)
    # every branch is built of them: 3 in the action branch, 2 in the other branch, 2 in the head
    alpha = init_objective(jax.random.PRNGKey(2), MetaGenRLObjective())["params"]
    units = sorted(k for k in alpha if k.startswith("MixedUnit"))
    assert len(units) == 7
    assert all(set(alpha[u]) == {"Dense_0", "LayerNorm_0"} for u in units)
    assert not [k for k in alpha if k.startswith("LayerNorm")]  # no other layer norm


def test_value_inputs_are_masked_at_every_episode_end_time_limits_included():
    agent, module = _tiny_agent(), MetaGenRLObjective(lstm_features=4, hidden=4)
    pol, cri, alpha = _params(agent, module, jax.random.PRNGKey(0))
    batch = _batch(jax.random.PRNGKey(1), 4, 6)
    # step 2 ends an episode by the time limit (done, not terminal); later steps are masked out
    batch.update(done=batch["done"].at[:, 2].set(1.0), mask=batch["mask"].at[:, 3:].set(0.0))
    lf = jax.jit(lambda alpha, pol, cri, b: BackwardLSTMObjective(module).policy_loss(
        alpha, pol, b, agent, critic_params=cri))
    base = lf(alpha, pol, cri, batch)
    # s_{t+1} of the time-limit step (next_obs[2]) does not reach L_alpha ...
    moved = dict(batch, next_obs=batch["next_obs"].at[:, 2].add(3.0))
    np.testing.assert_allclose(lf(alpha, pol, cri, moved), base, rtol=1e-6)
    # ... while without the episode end it does
    open_ = dict(batch, done=jnp.zeros((4, 6)), mask=batch["mask"].at[:, 3].set(1.0))
    moved_open = dict(open_, obs=open_["obs"].at[:, 3].add(3.0))
    assert abs(float(lf(alpha, pol, cri, moved_open) - lf(alpha, pol, cri, open_))) > 1e-5


def test_objective_inputs_reuse_values_and_match_a_direct_computation_on_replayed_data():
    """V(s_t) and V(s_{t+1}) from one pass over [s_0 .. s_T] equal Q1(s, pi(s)) computed on obs and
    next_obs at every valid step, on a buffer with terminals, time limits and a partial fill."""
    agent = _tiny_agent(obs=1, act=1)
    module = MetaGenRLObjective(lstm_features=4, hidden=4)
    pol, cri, _ = _params(agent, module, jax.random.PRNGKey(0))
    buf = rb.init(64, 1, 1)
    for t in range(40):  # truncations at 9 and 30, a terminal at 21; next_obs = final observation
        d, term = float(t in (9, 21, 30)), float(t == 21)
        buf = rb.add(buf, jnp.array([t + 1.0]), jnp.array([0.1]), 1.0, jnp.array([t + 1.5]), d, term)
    batch = rb.sample(buf, jax.random.PRNGKey(1), 256, 8)
    a, pi_a, r, v, vn, d, m = objective_inputs(agent, pol, cri, batch)
    V = lambda o: agent.q(cri, o, agent.pi(pol, o))[0]
    valid = np.asarray(m) > 0
    cont = valid & (np.asarray(d) == 0)  # V(s_{t+1}) is masked by the objective at episode ends
    np.testing.assert_allclose(np.asarray(v)[valid], np.asarray(V(batch["obs"]))[valid], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(pi_a)[valid], np.asarray(agent.pi(pol, batch["obs"]))[valid],
                               rtol=1e-5)
    # where the next step is valid, obs[t + 1] = t + 2 = next_obs[t] + 0.5 by construction: so the
    # match below uses next_obs only at the ends of the window
    last = valid & ~np.concatenate([valid[:, 1:], np.zeros_like(valid[:, :1])], axis=1)
    np.testing.assert_allclose(np.asarray(vn)[last & cont], np.asarray(V(batch["next_obs"]))[last & cont],
                               rtol=1e-5)
    inner = (cont & ~last)[:, :-1]  # elsewhere V(s_{t+1}) is V(obs[t + 1]), the value of step t + 1
    np.testing.assert_allclose(np.asarray(vn)[:, :-1][inner], np.asarray(V(batch["obs"]))[:, 1:][inner],
                               rtol=1e-5)
    assert (last & cont).any() and inner.any()


def test_only_the_policy_gradient_is_clipped():
    import optax

    agent = _tiny_agent()
    pol, cri, _ = _params(agent, MetaGenRLObjective(lstm_features=4, hidden=4), jax.random.PRNGKey(0))

    def two_steps(tx, params):  # a huge gradient, then a small one: a clip changes Adam's moments
        g1 = jax.tree_util.tree_map(lambda x: 1e3 * jnp.ones_like(x), params)
        g2 = jax.tree_util.tree_map(lambda x: 1e-3 * jnp.ones_like(x), params)
        st = tx.init(params)
        _, st = tx.update(g1, st, params)
        return tx.update(g2, st, params)[0]

    same = lambda a, b: all(np.allclose(x, y, rtol=1e-6) for x, y in
                            zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    adam = optax.adam(agent.cfg.critic_lr)
    assert same(two_steps(agent.critic_tx, cri), two_steps(adam, cri))
    clipped = optax.chain(optax.clip_by_global_norm(agent.cfg.max_grad_norm), optax.adam(agent.cfg.policy_lr))
    assert same(two_steps(agent.policy_tx, pol), two_steps(clipped, pol))
    assert not same(two_steps(agent.policy_tx, pol), two_steps(optax.adam(agent.cfg.policy_lr), pol))


def test_meta_test_evaluation_matches_an_auto_reset_rollout_and_reads_the_forward_reward():
    """metarl.evaluation.first_episode_returns (env.step_no_reset, so the last step keeps its
    metrics) gives the figure of a rollout with the auto-resetting env.step on the same starts; on
    hopper its forward part is brax's reward_forward summed, which a do-nothing policy keeps near 0
    while it collects the +1/step survival bonus. Non-locomotion bodies have no forward return."""
    from metarl import envs
    from metarl.envs.core import repeat_task
    from metarl.evaluation import first_episode_returns, forward_metric, zero_action
    from metarl.algorithms.metagenrl.meta_test import per_env_summary

    hopper = envs.make("hopper", episode_length=60)
    assert forward_metric(hopper) == "reward_forward"
    assert forward_metric(envs.make("halfcheetah")) == "reward_run"
    assert forward_metric(envs.make("reacher")) is None and forward_metric(envs.make("dir_hopper")) is None
    act = lambda o, k: jax.random.uniform(k, (o.shape[0], hopper.action_size), minval=-1, maxval=1)

    def auto_reset_return(key, n=4):  # the same keys, stepped with auto-reset, masked after done
        k_reset, k_act = jax.random.split(key)
        state = jax.vmap(hopper.reset)(jax.random.split(k_reset, n), repeat_task({}, n))

        def body(carry, k):
            state, alive, total = carry
            state = jax.vmap(hopper.step)(state, act(state.obs, k))
            return (state, alive * (1.0 - state.done), total + alive * state.reward), None

        init = (state, jnp.ones(n), jnp.zeros(n))
        return jax.lax.scan(body, init, jax.random.split(k_act, hopper.episode_length))[0][2].mean()

    key = jax.random.PRNGKey(3)
    ours = jax.jit(lambda k: first_episode_returns(hopper, act, {}, k, 4, "reward_forward"))(key)
    np.testing.assert_allclose(float(ours["return"]), float(jax.jit(auto_reset_return)(key)), rtol=1e-5)
    zero = jax.jit(lambda k: first_episode_returns(hopper, zero_action(hopper), {}, k, 2, "reward_forward"))(key)
    assert float(zero["return"]) > 50.0 and abs(float(zero["forward_return"])) < 10.0
    res = {"hopper": {"td3": {"return": 1.0, "forward_return": 0.5}, "no_update": {"return": 2.0}}}
    assert per_env_summary(res) == {"hopper": {"td3_return": 1.0, "td3_forward_return": 0.5,
                                               "no_update_return": 2.0}}


@pytest.mark.e2e  # (CI tier 2: learning must be shown in CI) 1,500 TD3 steps on two agents (cold: minutes)
def test_td3_learns_random_reacher_above_random():
    from metarl import envs
    from metarl.inner.frozen_objective import make_train
    from metarl.evaluation import episode_return

    env = envs.make("random_reacher")
    cfg = TD3Config(hidden=(32, 32), random_steps=300, replay_size=2_000, batch_size=8, polyak=0.99)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    tasks = jax.vmap(lambda k: env.sample_task(k, "train"))(keys)
    _, m = jax.jit(jax.vmap(make_train(env, cfg, total_steps=1_500, num_chunks=1)))(keys, tasks)
    rand = jax.vmap(lambda k, t: episode_return(
        env, lambda o, kk: jax.random.uniform(kk, (o.shape[0], env.action_size), minval=-1, maxval=1),
        t, k, 8))(keys, tasks)
    trained, random = float(m["eval_return"].mean()), float(rand.mean())
    # uniform random actions pay ~0.67 per step in control cost (~ -33 per episode with distance)
    assert trained > random + 10.0, (trained, random)
