"""The frozen-objective harness (metarl.inner.frozen_objective) and its policy loss
(metarl.algorithms.metagenrl.meta_test.harness_policy_loss): the weights select L_alpha, DDPG or REINFORCE, DDPG's
weight gives TD3's own policy update, and a zero objective never moves the policy."""
import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from metarl import envs
from metarl.baselines.reinforce import reinforce_loss
from metarl.inner.frozen_objective import make_train
from metarl.inner.td3 import TD3Agent, TD3Config
from metarl.algorithms.metagenrl.meta_test import harness_policy_loss
from metarl.objectives.backward_lstm import BackwardLSTMObjective, MetaGenRLObjective

DDPG, LEARNED, REINFORCE = (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


def _setup():
    env = envs.make("goal_point", episode_length=20)
    cfg = TD3Config(hidden=(16, 16), random_steps=40, replay_size=200, batch_size=8, seq_len=4)
    return env, cfg, BackwardLSTMObjective(MetaGenRLObjective(lstm_features=8, hidden=8))


def _batch(key, B, T, obs=2, act=2):
    k = jax.random.split(key, 4)
    s = jax.random.normal(k[0], (B, T + 1, obs))  # consecutive states: next_obs[t] = obs[t + 1]
    return {"obs": s[:, :-1], "next_obs": s[:, 1:],
            "action": jax.random.uniform(k[1], (B, T, act), minval=-1, maxval=1),
            "reward": jax.random.normal(k[2], (B, T)), "done": jnp.zeros((B, T)),
            "terminal": jnp.zeros((B, T)), "mask": jnp.ones((B, T)).at[0, 3:].set(0.0)}


def _close(a, b, rtol=1e-6, atol=1e-7):
    chex.assert_trees_all_equal_structs(a, b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_weights_select_each_term_and_ddpgs_gives_td3s_policy_update():
    env, cfg, objective = _setup()
    agent = TD3Agent(env, cfg)
    s = agent.init(jax.random.PRNGKey(0), env.sample_task(jax.random.PRNGKey(1)))
    alpha = objective.init(jax.random.PRNGKey(2), agent.obs_size, agent.act_size)
    batch = _batch(jax.random.PRNGKey(3), cfg.batch_size, cfg.seq_len)
    harness = harness_policy_loss(objective, cfg.expl_noise)(agent)

    def with_weights(w):
        return lambda pol, cri, b: harness({"w": jnp.array(w), "alpha": alpha}, pol, cri, b)

    @jax.jit
    def run(s, batch):
        vg = lambda f: jax.value_and_grad(f)(s.policy, s.critic, batch)
        refs = {"learned": vg(lambda p, c, b: objective.policy_loss(alpha, p, b, agent, critic_params=c)),
                "reinforce": vg(lambda p, c, b: reinforce_loss(cfg.expl_noise)(agent)(None, p, c, b))}
        ours = {"learned": vg(with_weights(LEARNED)), "reinforce": vg(with_weights(REINFORCE))}
        # TD3's policy step (default loss: DDPG's -Q1(s, pi(s))) and the harness's with DDPG's weight
        return (refs, ours, agent.policy_update(s, None, batch),
                agent.policy_update(s, with_weights(DDPG), batch))

    refs, ours, (td3_s, td3_loss), (h_s, h_loss) = run(s, batch)
    _close(ours, refs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(h_loss), float(td3_loss), rtol=1e-6)
    _close(h_s, td3_s)  # policy, optimiser state, both targets, key: the same update
    moved = max(float(jnp.abs(a - b).max()) for a, b in
                zip(jax.tree_util.tree_leaves(td3_s.policy), jax.tree_util.tree_leaves(s.policy)))
    assert moved > 1e-5
    # the three terms are different losses: the weights really select
    vals = [float(refs["learned"][0]), float(refs["reinforce"][0]), float(td3_loss)]
    assert len({round(v, 6) for v in vals}) == 3, vals


def test_zero_learned_objective_never_moves_the_policy_and_shapes():
    """Fresh agents trained by the harness with L_alpha's weight on an all-zero objective: the
    critics learn, the policy stays exactly at its initialisation, and the state and metrics keep
    their shapes."""
    env, cfg, objective = _setup()
    zero = jax.tree_util.tree_map(jnp.zeros_like, objective.init(jax.random.PRNGKey(5), 2, 2))
    seeds, chunks = 2, 3
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    tasks = jax.vmap(lambda k: env.sample_task(k, "train"))(keys)
    params = {"w": jnp.array([LEARNED] * seeds),
              "alpha": jax.tree_util.tree_map(lambda z: jnp.stack([z] * seeds), zero)}
    train = make_train(env, cfg, total_steps=120, num_chunks=chunks,
                       policy_loss=harness_policy_loss(objective, cfg.expl_noise), eval_envs=2)
    state, m = jax.jit(jax.vmap(train))(keys, tasks, params)

    agent = TD3Agent(env, cfg)
    # make_train's own key split: the same fresh agents
    s0 = jax.jit(jax.vmap(lambda k, t: agent.init(jax.random.split(k)[0], t)))(keys, tasks)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, s0)
    chex.assert_shape(m["episode_return"], (seeds, chunks))
    chex.assert_shape(m["env_steps"], (seeds, chunks))
    chex.assert_shape(m["eval_return"], (seeds,))
    chex.assert_tree_all_finite(m["eval_return"])
    np.testing.assert_array_equal(np.asarray(m["env_steps"][0]), [40, 80, 120])
    np.testing.assert_array_equal(np.asarray(state.step), [120] * seeds)
    chex.assert_trees_all_equal(state.policy, s0.policy)
    critic_moved = max(float(jnp.abs(a - b).max()) for a, b in
                       zip(jax.tree_util.tree_leaves(state.critic), jax.tree_util.tree_leaves(s0.critic)))
    assert critic_moved > 1e-3



def test_split_harness_programs_give_the_combined_programs_results():
    """The meta-test's split TD3-harness programs (HARNESS_GROUPS: learned + initial_loss on L_alpha
    alone, td3 + reinforce without it) against the former single program over all four methods
    (every agent computing all three terms, weighted), on the same keys and tasks: the same policies
    and returns per method. The math is the same (a weight-0 term adds exactly 0 to the gradient),
    but the loss is a different XLA graph, so float32 rounding differs in the last bits: measured
    here, the learned agents' policy parameters differ by 2e-8 after 1 policy update and 2e-6 after
    10, while the L_alpha-only programs agree bit for bit among themselves whatever their batch
    (learned alone, with initial_loss, either order). Adam then amplifies the drift where a
    gradient is near 0 (1e-2 after 60 updates, returns 3-50% apart on one agent), as any change of
    XLA graph would, so the comparison stops at 12 policy updates: parameters within atol 2e-5
    (10x the drift measured at 10 updates) and returns within rtol 1e-4. A method trained by the
    wrong term or weight moves its parameters by ~1e-3 per update (Adam, lr 1e-3): 50x more after
    the first update alone."""
    from metarl.algorithms.metagenrl.meta_test import (HARNESS_GROUPS, TD3_HARNESS, MetaTestConfig,
                                                       MetaTestSizes, harness_program)

    env, cfg, objective = _setup()
    agent = TD3Agent(env, cfg)
    learned = objective.init(jax.random.PRNGKey(2), agent.obs_size, agent.act_size)
    initial = objective.init(jax.random.PRNGKey(3), agent.obs_size, agent.act_size)
    n = 3
    config = MetaTestConfig(td3=cfg, sizes=MetaTestSizes(total_steps=24, num_chunks=2, num_seeds=n, eval_envs=2))
    keys = jax.random.split(jax.random.PRNGKey(1000), n)
    tasks = jax.vmap(lambda k: env.sample_task(jax.random.fold_in(k, 7), "test"))(keys)
    out = {}
    for name, groups in {"combined": (TD3_HARNESS,), "split": HARNESS_GROUPS}.items():
        out[name] = {}
        for g in groups:
            fn, args = harness_program(env, config, objective, g, learned, initial, keys, tasks)
            state, m = jax.jit(fn)(*args)
            for i, meth in enumerate(g):
                out[name][meth] = jax.tree_util.tree_map(lambda x: np.asarray(x[i * n:(i + 1) * n]),
                                                         {**m, "policy": state.policy, "step": state.step})
    old, new = out["combined"], out["split"]
    assert sorted(old) == sorted(new) == sorted(TD3_HARNESS)
    for meth in TD3_HARNESS:
        chex.assert_trees_all_equal_shapes_and_dtypes(new[meth], old[meth])
        np.testing.assert_array_equal(new[meth]["env_steps"], old[meth]["env_steps"])
        np.testing.assert_array_equal(new[meth]["step"], [24] * n)
        _close(new[meth]["policy"], old[meth]["policy"], rtol=0.0, atol=2e-5)
        for k in ("eval_return", "episode_return"):
            np.testing.assert_allclose(new[meth][k], old[meth][k], rtol=1e-4, atol=1e-5, equal_nan=True,
                                       err_msg=f"{meth} {k}")
    # the four methods trained differently, so the comparison above tells them apart
    pol = [jax.flatten_util.ravel_pytree(old[m]["policy"])[0] for m in TD3_HARNESS]
    assert min(float(jnp.abs(pol[i] - pol[j]).max()) for i in range(4) for j in range(i + 1, 4)) > 1e-3


def test_a_run_of_one_group_builds_one_program():
    """harness_groups: the programs meta_test builds (one per non-empty group, methods in their order)."""
    from metarl.algorithms.metagenrl.meta_test import harness_groups

    assert harness_groups(("learned", "initial_loss")) == [("learned",), ("initial_loss",)]
    assert harness_groups(("learned", "initial_loss"), groups=(("learned", "initial_loss"),)) == [
        ("learned", "initial_loss")]
    assert harness_groups(("td3", "learned", "ppo")) == [("learned",), ("td3",)]
    assert harness_groups(("ppo",)) == []
    with pytest.raises(ValueError, match="exactly one harness group"):
        harness_groups(("learned", "td3"), groups=(("learned",),))


def _meta_test_setup():
    from metarl.algorithms.metagenrl.meta_test import MetaTestConfig, MetaTestSizes

    env, cfg, objective = _setup()
    agent = TD3Agent(env, cfg)
    learned = objective.init(jax.random.PRNGKey(2), agent.obs_size, agent.act_size)
    initial = objective.init(jax.random.PRNGKey(3), agent.obs_size, agent.act_size)
    config = MetaTestConfig(td3=cfg, sizes=MetaTestSizes(total_steps=48, num_chunks=2, num_seeds=2, eval_envs=2))
    return objective, learned, initial, config


def test_meta_test_baselines_on_a_background_thread_give_the_same_numbers_and_share_one_compile():
    """MetaTest: the baselines (floors, initial_loss, td3 + reinforce) trained on a background thread
    while the caller is busy, then learned, give exactly the numbers of the all-in-sequence
    ``meta_test``; learned and initial_loss run one compiled program (2 compiles for 3 harness
    groups) yet each on its own alpha (learned on alpha_0 equals initial_loss to the bit)."""
    from metarl.algorithms.metagenrl.meta_test import MetaTest, meta_test

    objective, learned, initial, config = _meta_test_setup()
    methods = ("learned", "initial_loss", "td3", "reinforce")
    logs = []
    inline = meta_test(["goal_point"], learned, initial, objective, config, seed=0, methods=methods,
                       log=logs.append)["goal_point"]
    mt = MetaTest(["goal_point"], initial, objective, config, seed=0, methods=methods, log=logs.append)
    mt.start(background=True)
    assert mt.background
    overlap = mt.finish(learned)["goal_point"]
    assert len(mt._programs) == 2  # (L_alpha, 1 method) shared by learned and initial_loss; (td3, reinforce)
    assert list(overlap) == list(inline) == ["no_update", "zero_action", *methods]
    for m in inline:
        assert overlap[m].keys() == inline[m].keys()
        np.testing.assert_equal(overlap[m], inline[m], err_msg=m)  # NaN == NaN here
    assert not np.array_equal(overlap["learned"]["returns"], overlap["initial_loss"]["returns"])
    same = MetaTest(["goal_point"], initial, objective, config, seed=0, methods=("learned", "initial_loss"),
                    log=logs.append).finish(initial)["goal_point"]
    np.testing.assert_array_equal(same["learned"]["returns"], same["initial_loss"]["returns"])


def test_an_error_on_the_background_thread_is_raised_by_finish():
    from metarl.algorithms.metagenrl.meta_test import MetaTest

    objective, learned, initial, config = _meta_test_setup()
    mt = MetaTest(["goal_point"], initial, objective, config, seed=0, methods=("learned", "td3"), log=lambda *_: None)

    def broken(name):
        raise RuntimeError(f"floors of {name} broke")

    mt._floors = broken
    mt.start(background=True)
    with pytest.raises(RuntimeError, match="floors of goal_point broke"):
        mt.finish(learned)
