"""MetaGenRL: replay buffer, backward-LSTM objective, meta-gradient, TD3 learner, CLI errors."""
import subprocess
import sys
from types import SimpleNamespace

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from metarl.inner import replay as rb
from metarl.inner.td3 import TD3Agent, TD3Config
from metarl.objectives.metagenrl import MetaGenRLObjective, init_objective
from metarl.outer.metagrad import meta_objective


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
        J = jax.jit(meta_objective(module, agent, inner_lr=0.5))
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
        g0 = jax.jit(jax.grad(meta_objective(module, agent, inner_lr=0.0)))(alpha, pol, cri, batch)
        assert np.abs(np.asarray(jax.flatten_util.ravel_pytree(g0)[0])).max() == 0


def test_td3_learns_random_reacher_above_random():
    from metarl import envs
    from metarl.baselines.td3 import make_train
    from metarl.evaluate_policy import episode_return

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


def test_cli_rejects_unknown_env_with_exit_code_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "experiments.metagenrl", "--preset", "smoke",
                        "--train-envs", "nope", "--run-dir", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "nope" in r.stderr and len([l for l in r.stderr.splitlines() if l.startswith("error")]) == 1


@pytest.mark.slow
def test_meta_training_moves_the_objective():
    from metarl import envs
    from metarl.outer.metagrad import MetaGenRLConfig, MetaTrainer

    cfg = MetaGenRLConfig(td3=TD3Config(hidden=(16,), random_steps=20, replay_size=500, batch_size=4),
                          agents_per_env=2, steps_per_iteration=40, meta_batch=4, warm_start_steps=40)
    mt = MetaTrainer([envs.make("random_reacher"), envs.make("hopper")], cfg)
    ms = mt.init(jax.random.PRNGKey(0))
    a0 = jax.flatten_util.ravel_pytree(ms.alpha)[0]
    ms, metrics = jax.jit(mt.iteration)(ms)
    a1 = jax.flatten_util.ravel_pytree(ms.alpha)[0]
    assert np.isfinite(np.asarray(metrics["meta_loss"])).all()
    assert float(jnp.abs(a1 - a0).max()) > 1e-4
    assert int(ms.groups[1].step[0]) == 40 and ms.groups[1].replay.action.shape[-1] == 3
