import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl import envs
from metarl.baselines.ppo import rollout_gae
from metarl.inner.td3 import TD3Agent, TD3Config


@pytest.fixture(scope="module")
def families():
    return {name: envs.make(name) for name in envs.ENV_NAMES}


def test_unknown_name_and_backend_errors():
    with pytest.raises(ValueError, match="unknown environment 'antt'.*goal_ant"):
        envs.make("antt")
    with pytest.raises(ValueError, match="unknown backend 'warp'.*spring"):
        envs.make("ant", backend="warp")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        envs.make("reacher").sample_task(jax.random.PRNGKey(0), "val")


@pytest.mark.parametrize("name", ["goal_ant", "dir_halfcheetah", "random_hopper", "random_reacher", "hopper"])
def test_shapes_vmapped_over_tasks_and_envs(families, name):
    env = families[name]
    n = 3
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    tasks = jax.vmap(lambda k: env.sample_task(k, "train"))(keys)
    state = jax.jit(jax.vmap(env.reset))(keys, tasks)
    chex.assert_shape([state.obs, state.final_obs], [(n, env.observation_size)] * 2)
    state = jax.jit(jax.vmap(env.step))(state, jnp.zeros((n, env.action_size)))
    chex.assert_shape([state.obs, state.final_obs], [(n, env.observation_size)] * 2)
    chex.assert_shape([state.reward, state.done], [(n,), (n,)])
    chex.assert_tree_all_finite((state.obs, state.reward))


@pytest.mark.parametrize("name", list(envs.ENV_NAMES))
def test_same_key_same_task(families, name):
    env = families[name]
    a = env.sample_task(jax.random.PRNGKey(7), "train")
    b = env.sample_task(jax.random.PRNGKey(7), "train")
    chex.assert_trees_all_equal(a, b)


def test_goal_ant_splits_never_overlap(families):
    env = families["goal_ant"]
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    tr = jax.vmap(lambda k: env.sample_task(k, "train"))(keys)["target"]
    te = jax.vmap(lambda k: env.sample_task(k, "test"))(keys)["target"]
    assert float(tr[:, 0].min()) > 0 and float(te[:, 0].max()) < 0


def test_random_reacher_splits_are_upper_and_lower_half_planes(families):
    env = families["random_reacher"]
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    tr = np.asarray(jax.vmap(lambda k: env.sample_task(k, "train"))(keys)["target"])
    te = np.asarray(jax.vmap(lambda k: env.sample_task(k, "test"))(keys)["target"])
    assert tr[:, 1].min() > 0 and te[:, 1].max() < 0
    for t in (tr, te):  # the whole half-plane is used: both signs of x, radii in [0.05, 0.2]
        assert t[:, 0].min() < -0.15 and t[:, 0].max() > 0.15
        r = np.linalg.norm(t, axis=1)
        assert r.min() >= 0.05 - 1e-6 and r.max() <= 0.2 + 1e-6


def test_goal_ant_reward_rises_toward_target(families):
    env = families["goal_ant"]
    state = env.reset(jax.random.PRNGKey(0), {"target": jnp.array([3.0, 0.0])})
    torso = env.torso_xy(state.brax_state)
    # Same transition scored against a target ahead of and behind the torso's motion.
    moved = state.brax_state.replace(
        pipeline_state=state.brax_state.pipeline_state.replace(
            x=state.brax_state.pipeline_state.x.replace(
                pos=state.brax_state.pipeline_state.x.pos.at[0, 0].add(0.05))))
    toward = env.task_reward(state.brax_state, moved, {"target": torso + jnp.array([3.0, 0.0])})
    away = env.task_reward(state.brax_state, moved, {"target": torso + jnp.array([-3.0, 0.0])})
    assert float(toward) > float(away) + 1.0


def test_goal_ant_reward_is_progress_minus_control_cost(families):
    """No survival bonus by default: r_t = (d_{t-1} - d_t) / dt - 0.5 |a|^2 exactly."""
    env = families["goal_ant"]
    bonus = envs.families.GoalAnt("spring", healthy_reward=True)
    task = {"target": jnp.array([3.0, 1.0])}
    s = env.reset(jax.random.PRNGKey(0), task)
    for i in range(5):
        a = jnp.sin(jnp.arange(8.0) + i) * 0.8
        prev = s
        s = env.step(s, a)
        d0 = jnp.linalg.norm(task["target"] - env.torso_xy(prev.brax_state))
        d1 = jnp.linalg.norm(task["target"] - env.torso_xy(s.brax_state))
        expected = (d0 - d1) / env.base.dt - 0.5 * jnp.sum(a ** 2)
        np.testing.assert_allclose(s.reward, expected, rtol=1e-4, atol=1e-4)
        # the option adds brax's +1 per healthy step (the torso starts at a healthy height)
        with_bonus = bonus.task_reward(prev.brax_state, s.brax_state, task)
        np.testing.assert_allclose(with_bonus - s.reward, 1.0, atol=1e-5)


def _unhealthy(env, state, index, value):
    """``state`` with pipeline coordinate q[index] set to value (the task's physics applied)."""
    ps = state.brax_state.pipeline_state
    with env.physics(state.task):
        ps = env.base.pipeline_init(ps.q.at[index].set(value), ps.qd)
    bs = state.brax_state.replace(pipeline_state=ps, obs=env.base._get_obs(ps))
    return state.replace(brax_state=bs)


@pytest.mark.parametrize("name,index,value", [
    ("goal_ant", 2, 1.6),  # torso above brax's healthy range (0.2, 1.0)
    ("dir_hopper", 2, 0.6),  # torso pitched past brax's healthy angle range (-0.2, 0.2)
    ("random_hopper", 2, 0.6),
])
def test_no_early_termination(families, name, index, value):
    env = families[name]
    key = jax.random.PRNGKey(0)
    s = _unhealthy(env, env.reset(key, env.sample_task(key, "train")), index, value)
    s = env.step(s, jnp.zeros(env.action_size))
    assert float(s.done) == 0.0 and float(s.steps) == 1.0
    # control: brax's own environment ends the episode in that state
    plain = families["ant" if name == "goal_ant" else "hopper"]
    p = _unhealthy(plain, plain.reset(key, {}), index, value)
    assert float(plain.step(p, jnp.zeros(plain.action_size)).done) == 1.0


@pytest.mark.parametrize("name", ["dir_halfcheetah", "dir_hopper"])
def test_directional_reward_is_signed_torso_velocity(families, name):
    """r_t = direction * (x_after - x_before) / dt: no alive bonus, no control cost."""
    env = families[name]
    key = jax.random.PRNGKey(0)
    step = env.step
    rewards, xs = {}, {}
    for direction in (1.0, -1.0):
        s = env.reset(key, {"direction": jnp.float32(direction)})
        x, r = [float(s.brax_state.pipeline_state.x.pos[0, 0])], []
        for i in range(20):
            s = step(s, jnp.sin(jnp.arange(env.action_size) + i) * 0.9)
            x.append(float(s.brax_state.pipeline_state.x.pos[0, 0]))
            r.append(float(s.reward))
        rewards[direction], xs[direction] = np.array(r), np.array(x)
    np.testing.assert_array_equal(xs[1.0], xs[-1.0])  # the direction does not touch the physics
    vel = np.diff(xs[1.0]) / env.base.dt
    assert np.abs(vel).max() > 1e-2
    np.testing.assert_allclose(rewards[1.0], vel, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(rewards[-1.0], -vel, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", ["dir_halfcheetah", "dir_hopper"])
def test_directions_random_in_both_splits(families, name):
    env = families[name]
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    for split in ("train", "test"):
        d = np.asarray(jax.vmap(lambda k: env.sample_task(k, split))(keys)["direction"])
        assert set(np.unique(d)) == {-1.0, 1.0} and 0.3 < (d > 0).mean() < 0.7


def _nominal_hopper_task(env):
    n = env.base.sys.link.inertia.mass.shape[0]
    return {"mass": jnp.ones(n), "friction": jnp.float32(1), "gravity": jnp.float32(9.81),
            "thickness": jnp.float32(1)}


def _hopper_rollout(env, task, steps=60):
    """Torso (x, z) (steps, 2) and rewards (steps,) under a fixed action sequence, fixed key."""
    step = env.step
    s = env.reset(jax.random.PRNGKey(3), task)
    xz, r = [], []
    for i in range(steps):
        s = step(s, 0.8 * jnp.sin(jnp.arange(3.0) + 0.3 * i))
        xz.append(np.asarray(s.brax_state.pipeline_state.x.pos[0, [0, 2]]))
        r.append(float(s.reward))
    return np.array(xz), np.array(r)


def test_random_hopper_nominal_task_is_brax_hopper_and_reward_is_velocity(families):
    env = families["random_hopper"]
    xz, r = _hopper_rollout(env, _nominal_hopper_task(env))
    xz_ref, _ = _hopper_rollout(families["dir_hopper"], {"direction": jnp.float32(1)})
    np.testing.assert_allclose(xz, xz_ref, rtol=1e-4, atol=1e-5)
    x0 = float(env.reset(jax.random.PRNGKey(3), _nominal_hopper_task(env))
               .brax_state.pipeline_state.x.pos[0, 0])
    vel = np.diff(np.concatenate([[x0], xz[:, 0]])) / env.base.dt
    np.testing.assert_allclose(r, vel, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("field,value", [
    ("mass", np.array([2.0, 1.0, 1.0, 1.0])),  # torso twice as heavy
    ("mass", np.array([1.0, 1.0, 1.0, 0.5])),  # foot half as heavy
    ("friction", 0.5),
    ("thickness", 2.0),  # the foot, the one colliding geom
    ("gravity", 15.0),
])
def test_random_hopper_each_factor_changes_a_spring_rollout(families, field, value):
    """Same key, same actions, one physics factor changed -> a different torso trajectory (spring)."""
    env = families["random_hopper"]
    assert env.backend == "spring"
    nominal = _nominal_hopper_task(env)
    changed = dict(nominal, **{field: jnp.asarray(value, jnp.float32)})
    xz, _ = _hopper_rollout(env, nominal)
    xz_changed, _ = _hopper_rollout(env, changed)
    assert np.abs(xz - xz_changed).max() > 1e-2


def test_random_hopper_ranges(families):
    env = families["random_hopper"]
    tasks = jax.vmap(lambda k: env.sample_task(k, "train"))(jax.random.split(jax.random.PRNGKey(0), 500))
    for field in ("mass", "friction", "thickness"):
        v = np.asarray(tasks[field])
        assert v.min() >= 0.5 and v.max() <= 2.0 and v.min() < 0.6 and v.max() > 1.9
    g = np.asarray(tasks["gravity"])
    assert g.min() >= 2.0 and g.max() <= 20.0 and g.min() < 3.0 and g.max() > 19.0
    chex.assert_shape(tasks["mass"], (500, env.base.sys.link.inertia.mass.shape[0]))


def test_random_hopper_stronger_gravity_falls_faster(families):
    env = families["random_hopper"]
    key = jax.random.PRNGKey(0)
    step = env.step
    zs = []
    for g in (20.0, 2.0):
        s = env.reset(key, dict(_nominal_hopper_task(env), gravity=jnp.float32(g)))
        for _ in range(10):  # free fall, before the foot touches the floor
            s = step(s, jnp.zeros(3))
        zs.append(float(s.brax_state.pipeline_state.q[1]))
    assert zs[0] < zs[1] - 1e-3


@pytest.fixture(scope="module")
def short_reacher():
    return envs.make("reacher", episode_length=3)


def test_auto_reset_at_time_limit_keeps_final_obs(short_reacher):
    env = short_reacher
    s = env.reset(jax.random.PRNGKey(0), {})
    step = env.step
    dones = []
    for _ in range(6):
        prev = s
        s = step(s, jnp.ones(2) * 0.3)
        dones.append(float(s.done))
        if not s.done:
            np.testing.assert_array_equal(s.final_obs, s.obs)
    assert dones == [0, 0, 1, 0, 0, 1]
    assert float(s.truncated) == 1.0 and float(s.steps) == 0.0
    # final_obs is where the last step went; obs is the next episode's first observation
    reached = jax.jit(env.base.step)(prev.brax_state, jnp.ones(2) * 0.3)
    np.testing.assert_allclose(s.final_obs, reached.obs, rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(s.final_obs - s.obs)).max() > 1e-3


def test_step_no_reset_matches_step_and_keeps_the_last_state_at_the_end(short_reacher):
    """step_no_reset: the same transition as step; at the time limit the state is not replaced."""
    env = short_reacher
    s = r = env.reset(jax.random.PRNGKey(0), {})
    for t in range(3):
        s, r = env.step(s, jnp.ones(2) * 0.3), env.step_no_reset(r, jnp.ones(2) * 0.3)
        np.testing.assert_array_equal(r.reward, s.reward)
        np.testing.assert_array_equal(r.final_obs, s.final_obs)
        assert float(r.done) == float(s.done) == (1.0 if t == 2 else 0.0)
    np.testing.assert_array_equal(r.obs, s.final_obs)  # not the next episode's first observation
    assert float(r.steps) == 3.0 and float(r.completed_return) == float(s.completed_return)


def test_each_episode_starts_fresh(short_reacher):
    """Episodes in a lifetime start from new random initial states, reproducibly from the key."""
    env = short_reacher
    task = {}
    step = env.step

    def starts(key):
        s = env.reset(key, task)
        firsts = [s.obs]
        for _ in range(9):
            s = step(s, jnp.zeros(env.action_size))
            if s.done:
                firsts.append(s.obs)
        return np.array(firsts)

    firsts = starts(jax.random.PRNGKey(0))
    assert len(firsts) == 4
    for i in range(4):
        for j in range(i):
            assert np.abs(firsts[i] - firsts[j]).max() > 1e-4
    np.testing.assert_array_equal(firsts, starts(jax.random.PRNGKey(0)))


def _truncating_rollout(env, n=2, T=5):
    """A vmapped rollout (T, n) of a 3-step-episode env: time-limit ends at t = 2."""
    state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), n), {})

    def body(s, k):
        nxt = jax.vmap(env.step)(s, jax.random.uniform(k, (n, 2), minval=-1, maxval=1))
        return nxt, dict(obs=s.obs, final_obs=nxt.final_obs, next_obs=nxt.obs, reward=nxt.reward,
                         done=nxt.done, truncated=nxt.truncated)

    return jax.lax.scan(body, state, jax.random.split(jax.random.PRNGKey(1), T))[1]


def test_gae_target_at_time_limit_bootstraps_from_final_obs(short_reacher):
    traj = _truncating_rollout(short_reacher)
    t = 2
    assert np.all(traj["truncated"][t] == 1) and np.all(traj["done"][t] == 1)
    w = jax.random.normal(jax.random.PRNGKey(2), (traj["obs"].shape[-1],))
    v = lambda o: o @ w
    gamma, lam = 0.9, 0.8
    adv, target = rollout_gae(v, traj, gamma, lam)
    # the episode ends at t: target_t = r_t + gamma V(s_{t+1}), s_{t+1} the state before the reset
    np.testing.assert_allclose(target[t], traj["reward"][t] + gamma * v(traj["final_obs"][t]), rtol=1e-5)
    reset_target = traj["reward"][t] + gamma * v(traj["next_obs"][t])
    assert np.abs(np.asarray(target[t] - reset_target)).min() > 1e-3
    # within an episode, next values are those of the next observations
    np.testing.assert_allclose(traj["final_obs"][:t], traj["obs"][1:t + 1])


def test_td3_replay_stores_final_obs_at_time_limit(short_reacher):
    env = short_reacher
    agent = TD3Agent(env, TD3Config(hidden=(8, 8), replay_size=8, random_steps=100))
    s = agent.init(jax.random.PRNGKey(0), {})
    step = jax.jit(agent.env_step)
    for _ in range(3):
        s = step(s)
    assert float(s.env_state.done) == 1.0 and float(s.env_state.truncated) == 1.0
    buf = s.replay
    np.testing.assert_array_equal(buf.next_obs[2], s.env_state.final_obs)
    assert np.abs(np.asarray(buf.next_obs[2] - s.env_state.obs)).max() > 1e-3
    assert float(buf.done[2]) == 1.0 and float(buf.terminal[2]) == 0.0
    np.testing.assert_array_equal(buf.next_obs[:2], buf.obs[1:3])
