"""metarl.inner.lifetime.learn: a lifetime as one scan of an update."""
import jax
import jax.numpy as jnp
import numpy as np

from metarl.inner.lifetime import learn


def test_learn_gives_each_update_its_own_subkey_and_stacks_the_metrics():
    key = jax.random.PRNGKey(3)

    def update(total, k):
        x = jax.random.normal(k)
        return total + x, x

    final, xs = jax.jit(lambda k: learn(update, jnp.float32(0.0), 5, k))(key)
    want = [float(jax.random.normal(k)) for k in jax.random.split(key, 5)]
    np.testing.assert_allclose(np.asarray(xs), want, rtol=1e-6)
    np.testing.assert_allclose(float(final), sum(want), rtol=1e-5)


def test_learn_without_a_key_passes_none_and_keeps_the_state_rng():
    def update(state, k):
        assert k is None
        key, sub = jax.random.split(state["key"])
        return {"key": key, "n": state["n"] + 1}, jax.random.uniform(sub)

    state, xs = learn(update, {"key": jax.random.PRNGKey(0), "n": jnp.int32(0)}, 4)
    assert int(state["n"]) == 4 and xs.shape == (4,) and len(set(np.asarray(xs).tolist())) == 4
