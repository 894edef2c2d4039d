import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl import envs


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
    chex.assert_shape(state.obs, (n, env.observation_size))
    state = jax.jit(jax.vmap(env.step))(state, jnp.zeros((n, env.action_size)))
    chex.assert_shape(state.obs, (n, env.observation_size))
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


def test_random_reacher_splits_never_overlap(families):
    env = families["random_reacher"]
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    sector = lambda t: np.floor((np.arctan2(t[:, 1], t[:, 0]) % (2 * np.pi)) / (np.pi / 4)).astype(int)
    tr = np.asarray(jax.vmap(lambda k: env.sample_task(k, "train"))(keys)["target"])
    te = np.asarray(jax.vmap(lambda k: env.sample_task(k, "test"))(keys)["target"])
    assert set(sector(tr)) == {0, 2, 4, 6} and set(sector(te)) == {1, 3, 5, 7}


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


def test_dir_halfcheetah_reward_sign_flips(families):
    env = families["dir_halfcheetah"]
    key = jax.random.PRNGKey(0)
    step = jax.jit(env.step)

    def run(direction):
        s = env.reset(key, {"direction": jnp.float32(direction)})
        fwd, rew = 0.0, 0.0
        for i in range(20):
            s = step(s, jnp.sin(jnp.arange(6.0) + i) * 0.9)
            fwd += float(s.brax_state.metrics["reward_run"])
            rew += float(s.reward)
        return fwd, rew

    fwd_p, rew_p = run(1.0)
    fwd_m, rew_m = run(-1.0)
    assert abs(fwd_p - fwd_m) < 1e-4 and abs(fwd_p) > 1e-3
    np.testing.assert_allclose(rew_p - rew_m, 2 * fwd_p, rtol=1e-3, atol=1e-4)


def test_random_hopper_physics_changes_dynamics(families):
    env = families["random_hopper"]
    key = jax.random.PRNGKey(0)
    heavy = {"log_mass": jnp.zeros(4), "log_friction": jnp.float32(0), "log_gravity": jnp.float32(0.4)}
    light = dict(heavy, log_gravity=jnp.float32(-0.4))
    step = jax.jit(env.step)
    zs = []
    for task in (heavy, light):
        s = env.reset(key, task)
        for _ in range(10):  # free fall, before the foot touches the floor
            s = step(s, jnp.zeros(3))
        zs.append(float(s.brax_state.pipeline_state.q[1]))
    assert zs[0] < zs[1] - 1e-3  # stronger gravity: the torso falls further in the same time
    tasks = jax.vmap(lambda k: env.sample_task(k, "train"))(jax.random.split(key, 500))
    assert float(jnp.abs(tasks["log_gravity"]).max()) <= np.log(1.5) + 1e-6


def test_auto_reset_at_time_limit():
    env = envs.make("reacher", episode_length=5)
    s = env.reset(jax.random.PRNGKey(0), {})
    step = jax.jit(env.step)
    dones = []
    for _ in range(10):
        s = step(s, jnp.ones(2) * 0.3)
        dones.append(float(s.done))
    assert dones == [0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    assert float(s.truncated) == 1.0 and float(s.steps) == 0.0
    np.testing.assert_allclose(s.obs, s.first_obs)
