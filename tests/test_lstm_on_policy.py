"""MetaGenRL's L_alpha on EPG's on-policy learner (objective "lstm", metarl.objectives.lstm_on_policy)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.training.acme import running_statistics, specs

from metarl import envs
from metarl.inner.on_policy_agent import LifetimeConfig, make_lifetime
from metarl.networks import GaussianPolicy
from metarl.objectives.lstm_on_policy import LSTMOnPolicyObjective, lstm_inputs, make_lstm_policy_loss
from metarl.objectives.backward_lstm import MetaGenRLObjective, init_objective
from cli_checks import assert_refused


def _inputs(key, T=16, obs=3, act=2):
    """Random one-update inputs with two episode ends inside the sequence."""
    ks = jax.random.split(key, 6)
    action = jax.random.normal(ks[0], (T, act)) * 0.5
    stats = running_statistics.update(running_statistics.init_state(specs.Array((act,), jnp.float32)),
                                      action, std_min_value=0.1)
    done = jnp.zeros(T).at[jnp.array([5, 11])].set(1.0)
    return lstm_inputs(jax.random.normal(ks[1], (T, obs)), action, jax.random.normal(ks[2], (T,)),
                       jax.random.normal(ks[3], (T,)), jax.random.normal(ks[4], (T,)), done, stats)


def test_loss_is_finite_and_reaches_the_policy_only_through_its_mean():
    module = MetaGenRLObjective()
    policy = GaussianPolicy(2, (16, 16))
    inp = _inputs(jax.random.PRNGKey(0))
    pp = policy.init(jax.random.PRNGKey(1), inp.s[0])
    alpha = init_objective(jax.random.PRNGKey(2), module)
    idx = jnp.array([0, 4, 7, 13])
    loss = make_lstm_policy_loss(policy.apply, module)
    value, (mean, log_std) = loss(pp, alpha, inp, idx)
    assert np.isfinite(float(value)) and mean.shape == log_std.shape == (16, 2)
    g = jax.grad(lambda p: loss(p, alpha, inp, idx)[0])(pp)
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(g))
    assert float(jnp.abs(g["params"]["log_std"]).max()) == 0.0  # the log-std is not an input
    assert sum(float(jnp.abs(x).sum()) for x in jax.tree_util.tree_leaves(g)) > 0.0

    # the chain rule through pi(s) alone: dL/dpi_a (from the objective) pulled back through the
    # normalised policy mean gives the whole policy gradient
    def objective_of(pi_a):
        one = lambda x: x[None]
        per = module.apply(alpha, one(inp.action), one(pi_a), one(inp.reward), one(inp.value),
                           one(inp.next_value), one(inp.done), one(inp.mask),
                           method=MetaGenRLObjective.per_step)[0]
        return per[idx].mean()

    pi_of = lambda p: running_statistics.normalize(policy.apply(p, inp.s)[0], inp.act_stats)
    pi_a, vjp = jax.vjp(pi_of, pp)
    g_chain, = vjp(jax.grad(objective_of)(pi_a))
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_chain)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # the backward LSTM: a scored row's output reads the later rows of its episode (7 reads 8..11;
    # episodes end at 5 and 11), never earlier rows or other episodes (6 and 12 precede every
    # scored row of theirs)
    d_pi = jax.grad(objective_of)(pi_a)
    assert float(jnp.abs(d_pi[8:12]).min()) > 0.0
    assert float(jnp.abs(d_pi[jnp.array([6, 12])]).max()) == 0.0

    # output weights at zero: L_alpha = 0 and no gradient reaches the policy
    zero = jax.tree_util.tree_map(lambda x: x, alpha)
    zero["params"]["Dense_1"] = jax.tree_util.tree_map(jnp.zeros_like, alpha["params"]["Dense_1"])
    g0 = jax.grad(lambda p: loss(p, zero, inp, idx)[0])(pp)
    assert float(loss(pp, zero, inp, idx)[0]) == 0.0
    assert max(float(jnp.abs(x).max()) for x in jax.tree_util.tree_leaves(g0)) == 0.0


@pytest.mark.e2e  # (CI tier 2) two lifetimes, one on a brax body (cold: minutes); the fast tier checks the
# per-dimension branch in tests/unit/test_metagenrl_objective.py::test_objective_accepts_any_action_dimension
def test_one_alpha_trains_agents_on_bodies_of_different_sizes():
    """The per-action-dimension branch: one alpha, goal_point (obs 2, act 2) and dir_hopper
    (obs 11, act 3); the meta-test program (f = 0, no PPO policy term) moves the policy."""
    alpha = init_objective(jax.random.PRNGKey(0))
    cfg = LifetimeConfig(lifetime_steps=64, buffer_size=64, eval_envs=1, hidden=(16, 16))
    sizes = set()
    for name in ("goal_point", "dir_hopper"):
        env = envs.make(name, episode_length=20)
        sizes.add((env.observation_size, env.action_size))
        life = jax.jit(make_lifetime(env, cfg, LSTMOnPolicyObjective(), with_ppo=False, with_no_update_eval=True))
        out = life(alpha, env.sample_task(jax.random.PRNGKey(1), "train"), jax.random.PRNGKey(2))
        for k in ("eval_return", "eval_return_mean_action", "no_update_return"):
            assert np.isfinite(float(out[k])), (name, k)
        assert float(out["final_log_std"]) == 0.0  # f = 0: L_alpha does not move the log-std
    assert len(sizes) == 2


def test_value_net_learns_at_f_zero():
    """L_alpha reads V(s) and V(s'), so the value net must learn even without the PPO term: with its
    regression weighted 0 the same seeds give another lifetime."""
    import dataclasses

    env = envs.make("goal_point")
    alpha = init_objective(jax.random.PRNGKey(0))
    cfg = LifetimeConfig(lifetime_steps=128, buffer_size=64, eval_envs=1, hidden=(16, 16))
    task, key = env.sample_task(jax.random.PRNGKey(1), "train"), jax.random.PRNGKey(2)
    curves = [np.asarray(jax.jit(make_lifetime(env, dataclasses.replace(cfg, value_coef=c), LSTMOnPolicyObjective(), with_ppo=False))(
        alpha, task, key)["eval_return_mean_action"]) for c in (1.0, 0.0)]
    assert np.isfinite(curves).all() and curves[0] != curves[1]


def test_lstm_has_no_buffer_context_to_hold():
    from metarl.algorithms.epg.algorithm import EPGConfig

    with pytest.raises(ValueError, match="objective 'lstm' has no buffer context"):
        EPGConfig(objective="lstm", context_gradient=False).validate()


def _point_main(argv):
    from experiments.epg_common import main
    from experiments.epg_point import ENV, PRESETS

    return main("epg_point", ENV, PRESETS, argv)


def test_no_context_gradient_with_lstm_exits_2(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert_refused(_point_main, ["--preset", "smoke", "--objective", "lstm", "--no-context-gradient",
                                 "--run-dir", str(run_dir)], "objective 'lstm' has no buffer context",
                   run_dir, capsys)


@pytest.mark.e2e  # a whole experiment run (cold: minutes of compiling); not in the fast tier
def test_epg_point_smoke_run_with_the_lstm_objective(tmp_path):
    run_dir = tmp_path / "run"
    summary = _point_main(["--preset", "smoke", "--objective", "lstm", "--generations", "1",
                           "--population", "2", "--lifetime-steps", "128", "--test-agents", "1",
                           "--run-dir", str(run_dir)])
    written = json.loads((run_dir / "summary.json").read_text())
    assert written["objective"] == summary["objective"] == "lstm"
    assert np.isfinite(written["meta_test"]["learned_return"])
    assert np.isfinite(written["meta_test"]["initial_loss_return"])
    assert written["loss_parameters"] == sum(
        x.size for x in jax.tree_util.tree_leaves(init_objective(jax.random.PRNGKey(0))))
