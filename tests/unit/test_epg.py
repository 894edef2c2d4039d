import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from brax.training.acme import running_statistics, specs

from metarl import envs
from metarl.algorithms.epg.algorithm import EPG, EPGConfig, ppo_factor
from metarl.inner.on_policy_agent import Buffer, LifetimeConfig, make_lifetime
from metarl.networks import GaussianPolicy
from metarl.objectives import registry
from metarl.objectives.epg_conv import (EPGLoss, PureConvObjective, ResidualConvObjective, init_epg_loss,
                                        make_epg_policy_loss, param_count, row_width)
from metarl.outer.es import ESConfig, make_generation, make_strategy


def test_loss_network_shapes_and_parameter_count():
    obs, act = 11, 3  # hopper-sized
    params = init_epg_loss(jax.random.PRNGKey(0), obs, act)
    w = row_width(obs, act) - 32
    out = EPGLoss().apply(params, jnp.ones((512, w)), jnp.ones(512), jnp.arange(32))
    chex.assert_shape(out, ())
    p = params["params"]
    chex.assert_shape(p["conv1"]["kernel"], (6, w + 32, 16))
    chex.assert_shape(p["conv2"]["kernel"], (4, 16, 32))
    chex.assert_shape(p["head_hidden"]["kernel"], (w + 32 + 32, 16))
    expected = (6 * (w + 32) * 16 + 16) + (4 * 16 * 32 + 32) + (32 * 32 + 32) + (32 + 32) \
        + ((w + 64) * 16 + 16) + (16 + 1)
    assert param_count(params) == expected
    assert 9_000 < expected < 11_000  # "about 10k parameters for Hopper-sized inputs"


def test_matmul_convolutions_match_nn_conv_under_a_vmap_over_members():
    """EPGLoss's StridedConv1D (the default) has nn.Conv's parameters (the same phi from the same
    key) and its values and input gradients to float rounding, also vmapped over members' phi."""
    w = row_width(2, 2) - 32
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    xla = EPGLoss(conv_impl="xla")
    phi = jax.vmap(lambda k: init_epg_loss(k, 2, 2))(keys)
    chex.assert_trees_all_equal(phi, jax.vmap(lambda k: init_epg_loss(k, 2, 2, module=xla))(keys))
    rows = jax.random.normal(jax.random.PRNGKey(4), (512, w))
    valid = jnp.zeros(512).at[100:].set(1.0)
    f = lambda m: jax.vmap(jax.value_and_grad(lambda p, r: m.apply(p, r, valid, jnp.arange(450, 482)), 1),
                           in_axes=(0, None))(phi, rows)
    (v, g), (v_x, g_x) = f(EPGLoss()), f(xla)
    np.testing.assert_allclose(v, v_x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g, g_x, rtol=1e-4, atol=1e-7)


def test_loss_ignores_padding_rows_and_scores_head_rows():
    params = init_epg_loss(jax.random.PRNGKey(1), 4, 2)
    w = row_width(4, 2) - 32
    rows = jax.random.normal(jax.random.PRNGKey(2), (512, w))
    valid = jnp.zeros(512).at[256:].set(1.0)
    f = lambda r: EPGLoss().apply(params, r, valid, jnp.arange(480, 512))
    # garbage in padded rows changes nothing; a scored row does
    assert float(f(rows)) == pytest.approx(float(f(rows.at[:256].set(99.0))), abs=1e-6)
    assert abs(float(f(rows)) - float(f(rows.at[500].add(3.0)))) > 1e-6


def test_gradients_reach_policy_only_through_its_outputs():
    obs, act, N = 5, 2, 64
    policy = GaussianPolicy(act)
    pp = policy.init(jax.random.PRNGKey(0), jnp.zeros(obs))
    lp = init_epg_loss(jax.random.PRNGKey(1), obs, act, buffer_size=N, batch=8)
    ks = jax.random.split(jax.random.PRNGKey(2), 3)
    buf = Buffer(obs=jax.random.normal(ks[0], (N, obs)), action=jax.random.normal(ks[1], (N, act)),
                 reward=jax.random.normal(ks[2], (N,)), done=jnp.zeros(N), valid=jnp.ones(N))
    stats_o = running_statistics.update(running_statistics.init_state(specs.Array((obs,), jnp.float32)), buf.obs)
    stats_a = running_statistics.update(running_statistics.init_state(specs.Array((act,), jnp.float32)), buf.action)
    idx = jnp.arange(N - 8, N)
    loss = make_epg_policy_loss(policy.apply, EPGLoss())
    g = jax.grad(loss)(pp, lp, buf, stats_o, stats_a, idx)

    # Chain rule through the outputs alone: dL/dtheta = (dL/dpi) (dpi/dtheta).
    s = running_statistics.normalize(buf.obs, stats_o)
    (mean, log_std), vjp = jax.vjp(lambda p: policy.apply(p, s), pp)

    def loss_of_outputs(mean, log_std):
        rows = jnp.concatenate([s, running_statistics.normalize(buf.action, stats_a),
                                buf.reward[:, None], buf.done[:, None], mean, log_std], -1)
        return EPGLoss().apply(lp, rows, buf.valid, idx)

    g_out = jax.grad(loss_of_outputs, argnums=(0, 1))(mean, log_std)
    (g_chain,) = vjp(g_out)
    chex.assert_trees_all_close(g, g_chain, atol=1e-6, rtol=1e-5)
    assert float(optax.global_norm(g)) > 0


def _random_buffer(obs, act, N, key=2):
    ks = jax.random.split(jax.random.PRNGKey(key), 3)
    buf = Buffer(obs=jax.random.normal(ks[0], (N, obs)), action=jax.random.normal(ks[1], (N, act)),
                 reward=jax.random.normal(ks[2], (N,)), done=jnp.zeros(N),
                 valid=jnp.zeros(N).at[N // 4:].set(1.0))
    stats_o = running_statistics.update(running_statistics.init_state(specs.Array((obs,), jnp.float32)), buf.obs)
    stats_a = running_statistics.update(running_statistics.init_state(specs.Array((act,), jnp.float32)), buf.action)
    return buf, stats_o, stats_a


def test_loss_is_head_of_context():
    params = init_epg_loss(jax.random.PRNGKey(1), 4, 2, buffer_size=64, batch=8)
    rows = jax.random.normal(jax.random.PRNGKey(2), (64, row_width(4, 2) - 32))
    valid = jnp.zeros(64).at[10:].set(1.0)
    idx = jnp.array([3, 20, 40, 63])
    m = EPGLoss()
    c = m.apply(params, rows, valid, method=EPGLoss.context)
    chex.assert_shape(c, (32,))
    via_parts = m.apply(params, rows[idx], c, valid[idx], method=EPGLoss.head)
    assert float(m.apply(params, rows, valid, idx)) == pytest.approx(float(via_parts), abs=1e-6)


def test_stop_gradient_context_gives_the_head_gradient_and_the_same_value():
    """context_gradient=False: L has the exact loss's value, and its policy gradient is the head's
    gradient with the context computed under stop_gradient (held constant)."""
    obs, act, N, B = 5, 2, 64, 8
    policy = GaussianPolicy(act)
    pp = policy.init(jax.random.PRNGKey(0), jnp.zeros(obs))
    lp = init_epg_loss(jax.random.PRNGKey(1), obs, act, buffer_size=N, batch=B)
    buf, stats_o, stats_a = _random_buffer(obs, act, N)
    idx = jnp.arange(N - B, N)
    exact = make_epg_policy_loss(policy.apply, EPGLoss())
    stop = make_epg_policy_loss(policy.apply, EPGLoss(), context_gradient=False)

    s = running_statistics.normalize(buf.obs, stats_o)
    data = jnp.concatenate([s, running_statistics.normalize(buf.action, stats_a),
                            buf.reward[:, None], buf.done[:, None]], -1)

    def rows(p):
        return jnp.concatenate([data, *policy.apply(p, s)], -1)

    def reference(p):
        c = jax.lax.stop_gradient(EPGLoss().apply(lp, rows(p), buf.valid, method=EPGLoss.context))
        return EPGLoss().apply(lp, rows(p)[idx], c, buf.valid[idx], method=EPGLoss.head)

    v_exact = exact(pp, lp, buf, stats_o, stats_a, idx)
    v_stop, g_stop = jax.value_and_grad(stop)(pp, lp, buf, stats_o, stats_a, idx)
    assert float(v_stop) == pytest.approx(float(v_exact), abs=1e-6)
    chex.assert_trees_all_close(g_stop, jax.grad(reference)(pp), atol=1e-6, rtol=1e-5)
    # the stop-gradient really drops the context's share of the exact gradient
    g_exact = jax.grad(exact)(pp, lp, buf, stats_o, stats_a, idx)
    diff = jax.tree_util.tree_map(lambda a, b: a - b, g_exact, g_stop)
    assert float(optax.global_norm(diff)) > 1e-4 * float(optax.global_norm(g_exact))


def test_lifetime_without_context_gradient_is_deterministic():
    env = envs.make("random_reacher")
    cfg = LifetimeConfig(lifetime_steps=128, buffer_size=128, eval_envs=1, hidden=(16, 16))
    life = jax.jit(make_lifetime(env, cfg, registry.make("pure", cfg, context_gradient=False)))
    phi = init_epg_loss(jax.random.PRNGKey(0), env.observation_size, env.action_size, 128)
    task = env.sample_task(jax.random.PRNGKey(1), "train")
    a = life(phi, task, jax.random.PRNGKey(2), 0.5)
    chex.assert_trees_all_equal(a, life(phi, task, jax.random.PRNGKey(2), 0.5))
    chex.assert_shape(a["curve"], (2,))
    assert np.isfinite(float(a["eval_return"]))
    b = life(phi, task, jax.random.PRNGKey(3), 0.0)
    assert not np.allclose(a["curve"], b["curve"], equal_nan=True)


@pytest.fixture(scope="module")
def small_epg():
    env = envs.make("random_reacher")
    # A large inner learning rate gives the loss a strong effect on the agent in a short lifetime.
    cfg = EPGConfig(LifetimeConfig(lifetime_steps=512, eval_envs=2, learning_rate=1e-2),
                    ESConfig(population_size=8, generations=8), tasks_per_member=2, ppo_anneal_fraction=0.0)
    return EPG(env, cfg)


def test_inner_loop_is_deterministic_for_a_fixed_key(small_epg):
    phi = small_epg.init_loss(jax.random.PRNGKey(0))
    phis = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), phi)
    tasks = small_epg.sample_tasks(jax.random.PRNGKey(1), 2)
    run = jax.jit(small_epg.train_agents)
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    a = run(phis, tasks, keys, 0.0)
    b = run(phis, tasks, keys, 0.0)
    chex.assert_trees_all_equal(a, b)
    chex.assert_shape(a["eval_return"], (2, 2))
    # the same loss and seed give the same agent for both members; another seed does not
    np.testing.assert_array_equal(a["eval_return"][0], a["eval_return"][1])
    c = run(phis, tasks, jax.random.split(jax.random.PRNGKey(3), 2), 0.0)
    assert not np.allclose(a["curve"], c["curve"], equal_nan=True)


def test_train_agents_names_its_program(small_epg):
    """The ES-fitness program needs the PPO factor f; the meta-test program (f = 0) takes none."""
    phi = small_epg.init_loss(jax.random.PRNGKey(0))
    phis = jax.tree_util.tree_map(lambda x: x[None], phi)
    tasks = small_epg.sample_tasks(jax.random.PRNGKey(1), 1)
    keys = jax.random.split(jax.random.PRNGKey(2), 1)
    with pytest.raises(ValueError, match="ppo_factor"):
        small_epg.train_agents(phis, tasks, keys)
    with pytest.raises(ValueError, match="no ppo_factor"):
        small_epg.train_agents(phis, tasks, keys, 0.5, meta_test=True)
    with pytest.raises(ValueError, match="no ppo_factor"):
        small_epg.jit_train_agents(phis, tasks, keys, 0.0, meta_test=True)


def test_es_generation_improves_toy_objective_and_ranks_nan_last():
    target = {"w": jnp.arange(6.0).reshape(2, 3) / 6, "b": jnp.array([0.5])}
    sol = jax.tree_util.tree_map(jnp.zeros_like, target)
    cfg = ESConfig(population_size=32, generations=10, sigma=0.1, learning_rate=0.1, l2_penalty=0.0)
    es, params = make_strategy(cfg, sol)
    dist = lambda p: sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(p),
                                                                 jax.tree_util.tree_leaves(target)))

    def fitness(pop, key, generation):  # higher is better; member 0 is broken
        r = -jax.vmap(dist)(pop)
        return r.at[0].set(jnp.nan)

    gen = jax.jit(make_generation(es, params, fitness, cfg))
    state = es.init(jax.random.PRNGKey(0), sol, params)
    d0 = float(dist(es.get_mean(state)))
    state, info = gen(state, jax.random.PRNGKey(1))
    d1 = float(dist(es.get_mean(state)))
    assert d1 < d0 - 0.01
    assert int(info["nonfinite"]) == 1 and np.isfinite(info["mean"])
    for i in range(2, 6):
        state, info = gen(state, jax.random.PRNGKey(i))
    assert float(dist(es.get_mean(state))) < d1


def test_ppo_factor_anneals_over_first_eighth():
    vals = [float(ppo_factor(g, 0.125, 80)) for g in (0, 5, 10, 40)]
    assert vals == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_bad_es_config_is_rejected():
    with pytest.raises(ValueError, match="unknown ES strategy 'Foo_ES'"):
        ESConfig(strategy="Foo_ES").validate()
    with pytest.raises(ValueError, match="population_size=5 must be even"):
        ESConfig(population_size=5).validate()
    with pytest.raises(ValueError, match="multiple of update_period"):
        LifetimeConfig(lifetime_steps=100, update_period=64).validate()


@pytest.mark.e2e  # (CI tier 2: learning must be shown in CI) ES generations of whole lifetimes (cold: minutes); the fast tier checks the ES
# update on a toy objective (test_es_generation_improves_toy_objective_and_ranks_nan_last)
def test_meta_training_improves_fitness_on_random_reacher(small_epg):
    """A short ES run on fixed tasks (common random numbers, fixed key) must raise the fitness of
    the ES mean; a broken outer loop (wrong sign, no update) fails this."""
    es, params, state, generation = small_epg.make_es(jax.random.PRNGKey(0))
    gen = jax.jit(generation)
    key = jax.random.PRNGKey(42)
    means = []
    for g in range(small_epg.config.es.generations):
        state, info = gen(state, key)  # same tasks and agent seeds every generation
        means.append(float(info["mean"]))
    first, last = means[0], float(np.mean(means[-2:]))
    assert last > first + 2.0, means


def test_es_learning_rate_falls_linearly_over_the_first_half():
    from metarl.outer.es import learning_rate_schedule

    lr = learning_rate_schedule(ESConfig(generations=100))
    got = [float(lr(g)) for g in (0, 25, 50, 75, 99)]
    assert got == pytest.approx([1e-2, 5.5e-3, 1e-3, 1e-3, 1e-3], rel=1e-5)


def test_l2_penalty_is_weight_decay_on_the_es_gradient():
    """openai/EPG adds -l2 * theta to the ES gradient: with a large l2 every coordinate of the mean
    moves toward zero; without it, the (rank-noise) gradient moves some coordinates away."""
    sol = {"w": jnp.ones(32)}

    def step(l2):
        cfg = ESConfig(population_size=8, generations=10, l2_penalty=l2)
        es, params = make_strategy(cfg, sol)
        state = es.init(jax.random.PRNGKey(0), sol, params)
        gen = make_generation(es, params, lambda pop, k, f: jax.random.normal(k, (8,)), cfg)
        state, _ = gen(state, jax.random.PRNGKey(1))
        return np.asarray(es.get_mean(state)["w"])

    assert np.all(step(100.0) < 1.0)
    assert np.any(step(0.0) > 1.0)


def test_strategies_without_an_optimiser_refuse_an_l2_setting():
    from metarl.outer.es import l2_penalty

    assert l2_penalty(ESConfig(strategy="CMA_ES")) == 0.0
    assert l2_penalty(ESConfig()) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="strategy CMA_ES has no optax optimiser to apply l2_penalty=0.001"):
        ESConfig(strategy="CMA_ES", l2_penalty=1e-3).validate()


def test_gaussian_kl_matches_its_closed_form_and_is_zero_for_equal_policies():
    from metarl.networks import gaussian_kl

    m = jnp.array([[0.3, -1.0]])
    ls = jnp.array([[0.1, -0.5]])
    assert float(gaussian_kl(m, ls, m, ls)[0]) == pytest.approx(0.0, abs=1e-7)
    mq, lsq = jnp.array([[0.0, 0.5]]), jnp.array([[-0.2, 0.3]])
    sp, sq = np.exp(ls), np.exp(lsq)
    ref = np.sum(np.log(sq / sp) + (sp ** 2 + (m - mq) ** 2) / (2 * sq ** 2) - 0.5)
    assert float(gaussian_kl(m, ls, mq, lsq)[0]) == pytest.approx(float(ref), rel=1e-5)


def test_meta_test_lifetime_reports_sampled_mean_action_and_no_update_returns():
    env = envs.make("goal_point")
    cfg = LifetimeConfig(lifetime_steps=128, buffer_size=128, eval_envs=2, hidden=(16, 16))
    life = jax.jit(make_lifetime(env, cfg, registry.make("pure", cfg), with_ppo=False, with_no_update_eval=True))
    phi = init_epg_loss(jax.random.PRNGKey(0), env.observation_size, env.action_size, 128)
    out = life(phi, env.sample_task(jax.random.PRNGKey(1), "test"), jax.random.PRNGKey(2))
    for k in ("eval_return", "eval_return_sampled", "eval_return_mean_action", "no_update_return",
              "no_update_return_mean_action"):
        assert np.isfinite(float(out[k])), k
    assert float(out["eval_return"]) == float(out["eval_return_sampled"])  # the paper's protocol
    # log-std 0 on a 0.1-clipped velocity: sampled actions wander, the mean action barely moves
    assert float(out["no_update_return"]) < float(out["no_update_return_mean_action"])


@pytest.mark.parametrize("progress", ["off", "head", "context"])
def test_residual_objective_starts_as_ppo_exactly(progress):
    """ResidualConvObjective (EPGLoss(zero_output=True)): L_phi = 0 at phi_0, so the residual lifetime
    L_PPO + L_phi equals the pure lifetime with f = 1 (PPO alone) for the same seeds; also with the
    lifetime progress as an input of the head (--progress-input) and of the context rows
    (--progress-context)."""
    env = envs.make("goal_point")
    base = LifetimeConfig(lifetime_steps=128, buffer_size=128, eval_envs=1, hidden=(16, 16))
    module = EPGLoss(zero_output=True, progress_head=progress != "off", progress_context=progress == "context")
    phi = init_epg_loss(jax.random.PRNGKey(0), 2, 2, 128, module=module)
    assert float(jnp.abs(phi["params"]["head_out"]["kernel"]).max()) == 0.0
    task, key = env.sample_task(jax.random.PRNGKey(1), "train"), jax.random.PRNGKey(2)
    residual = registry.make("residual", base, progress_input=progress != "off",
                             progress_context=progress == "context")
    assert isinstance(residual, ResidualConvObjective) and residual.module == module
    chex.assert_trees_all_equal(phi, residual.init(jax.random.PRNGKey(0), 2, 2))
    res = jax.jit(make_lifetime(env, base, residual))(phi, task, key)
    ppo = jax.jit(make_lifetime(env, base, PureConvObjective(module, 128, 32)))(phi, task, key, 1.0)
    chex.assert_trees_all_close(res["eval_return"], ppo["eval_return"], atol=1e-5)
    chex.assert_trees_all_close(res["curve"], ppo["curve"], atol=1e-5)
    with pytest.raises(ValueError, match="unknown objective 'mixed'"):
        EPGConfig(objective="mixed").validate()


@pytest.mark.e2e  # (CI tier 2: learning must be shown in CI) the whole EPG path: ES generations and a meta-test (cold: minutes)
def test_residual_epg_on_goal_point_beats_doing_nothing_at_meta_test():
    """The whole EPG path at a test size (ES generations, best-loss meta-test on left-half goals,
    sampled actions): the evolved residual loss must beat both do-nothing references by a wide
    margin. A learner that never updates, or that only learns to keep still, fails this."""
    from metarl.algorithms.epg.meta_test import epg_meta_test

    env = envs.make("goal_point")
    life = LifetimeConfig(lifetime_steps=4096, eval_envs=2, gamma=0.9, init_log_std=-1.0,
                          max_grad_norm=0.5)
    epg = EPG(env, EPGConfig(life, ESConfig(population_size=4, generations=2), tasks_per_member=1,
                             objective="residual"))
    es, params, state, generation = epg.make_es(jax.random.PRNGKey(0))
    phi0 = es.get_mean(state)
    gen = jax.jit(generation)
    for g in range(2):
        state, _ = gen(state, jax.random.PRNGKey(g))
    res = epg_meta_test(epg, es.get_mean(state), phi0, jax.random.PRNGKey(7), 4)
    assert list(res) == ["learned", "ppo", "no_update", "zero_action", "initial_loss", "oracle"]
    ret = {m: r["return"] for m, r in res.items()}
    learned = ret["learned"]
    assert learned > ret["zero_action"] + 10.0, ret
    assert learned > ret["no_update"] + 10.0, ret
    assert ret["oracle"] > learned  # the oracle bounds what is possible
    assert len(res["learned"]["curve"]) == len(res["learned"]["env_steps"]) == life.num_updates


def test_conv_objective_is_an_objective_and_equals_the_lifetime_loss():
    """EPG's L_phi behind metarl.protocols.Objective: same phi_0 as init_epg_loss, same value and
    policy gradient as the lifetime's loss on one buffer."""
    from metarl.inner.on_policy_agent import GaussianActor
    from metarl.objectives.on_policy import loss_inputs
    from metarl.objectives.epg_conv import ConvObjective
    from metarl.protocols import ActorCritic, Objective

    obs, act, N, B = 5, 2, 64, 8
    objective = ConvObjective(EPGLoss(), buffer_size=N, minibatch_size=B)
    assert isinstance(objective, Objective)
    policy = GaussianPolicy(act)
    pp = policy.init(jax.random.PRNGKey(0), jnp.zeros(obs))
    lp = objective.init(jax.random.PRNGKey(1), obs, act)
    chex.assert_trees_all_equal(lp, init_epg_loss(jax.random.PRNGKey(1), obs, act, buffer_size=N, batch=B))
    buf, stats_o, stats_a = _random_buffer(obs, act, N)
    idx = jnp.arange(N - B, N)
    inp = loss_inputs(buf.obs, buf.action, buf.reward, buf.done, buf.valid, stats_o, stats_a)
    batch = {"s": inp.s, "data": inp.data, "valid": inp.valid, "head_idx": idx}
    actor = GaussianActor(policy)
    assert callable(actor.pi) and not isinstance(actor, ActorCritic)  # an actor without a critic
    via_protocol = jax.value_and_grad(lambda p: objective.policy_loss(lp, p, batch, actor))(pp)
    via_lifetime = jax.value_and_grad(make_epg_policy_loss(policy.apply, EPGLoss()))(pp, lp, buf, stats_o, stats_a, idx)
    chex.assert_trees_all_close(via_protocol, via_lifetime, atol=1e-6, rtol=1e-5)
    assert float(optax.global_norm(via_protocol[1])) > 0


def test_on_policy_learner_parts_compose_to_its_lifetime():
    """make_lifetime's OnPolicyLearner: init, then learn(update), then evaluate = its lifetime."""
    from metarl import envs
    from metarl.inner.on_policy_agent import OnPolicyLearner
    from metarl.inner.lifetime import learn

    env = envs.make("goal_point")
    cfg = LifetimeConfig(lifetime_steps=128, update_period=64, buffer_size=64, minibatch_size=32, eval_envs=1)
    learner = make_lifetime(env, cfg, registry.make("pure", cfg))
    assert isinstance(learner, OnPolicyLearner)
    phi = init_epg_loss(jax.random.PRNGKey(0), env.observation_size, env.action_size, 64, 32)
    task = env.sample_task(jax.random.PRNGKey(1), "train")
    key = jax.random.PRNGKey(2)
    whole = jax.jit(learner)(phi, task, key, 0.5)
    k_init, k_updates, k_eval = jax.random.split(key, 3)

    @jax.jit
    def by_parts():
        state = learner.init(k_init, task)
        state, curve = learn(lambda a, k: learner.update(a, k, phi, jnp.float32(0.5)), state,
                             cfg.num_updates, k_updates)
        return learner.evaluate(state, task, k_eval), curve

    (sampled, mean_action), curve = by_parts()
    np.testing.assert_allclose(float(sampled), float(whole["eval_return_sampled"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(mean_action), float(whole["eval_return_mean_action"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(curve), np.asarray(whole["curve"]), rtol=1e-5, atol=1e-5)


@pytest.mark.e2e  # (CI tier 2) ES generations of whole goal_point lifetimes (cold: a minute or two)
@pytest.mark.parametrize("disable_update", [False, True])
def test_es_improves_the_main_jobs_objective_from_its_ppo_start(disable_update):
    """The README main job's objective (goal_point's cpu preset: residual, generation 0 = the agent's
    PPO term) on a tiny fixed-seed problem: ES generations on fixed tasks and seeds (common random
    numbers, one key) must raise the return of the ES mean over phi_0 = PPO on those same tasks and
    seeds. With the ES update disabled (the state handed back unchanged) the mean stays phi_0 and the
    gain is exactly 0, so the assertion fails: the test proves the update, not the start."""
    from experiments.epg_point import PRESETS

    objective = PRESETS["cpu"].epg.objective
    env = envs.make("goal_point")
    life = LifetimeConfig(lifetime_steps=512, eval_envs=2, gamma=0.9, init_log_std=-1.0, max_grad_norm=0.5,
                          hidden=(16, 16))
    epg = EPG(env, EPGConfig(life, ESConfig(population_size=8, generations=6, sigma=0.1, learning_rate=0.05,
                                            l2_penalty=0.0), tasks_per_member=4, objective=objective))
    es, params, state, generation = epg.make_es(jax.random.PRNGKey(0))
    phi0 = es.get_mean(state)
    gen = jax.jit(generation)
    key = jax.random.PRNGKey(3)
    for _ in range(6):
        new_state, _ = gen(state, key)
        state = state if disable_update else new_state
    # the fixed problem ES saw: the generation's common-random-numbers tasks and seeds come from the
    # fitness key that make_generation splits off `key`; both losses meet exactly those
    from metarl.algorithms.epg.meta_test import stack

    k_fit = jax.random.split(key, 3)[1]
    returns, _ = epg.fitness_fn(stack(es.get_mean(state), phi0), k_fit, 6)
    learned, initial = np.asarray(returns).mean(axis=1)
    gain = float(learned - initial)
    if disable_update:
        assert gain == 0.0
    else:
        assert gain > 0.5, (learned, initial)
