"""The ES signal diagnostics (metarl.outer.es): gradient agreement across task halves and ties."""
import jax
import jax.numpy as jnp
import numpy as np

from metarl.outer.es import ESConfig, es_gradient_cosine, fitness_ties, make_generation, make_strategy


def _population(key, P=16, D=50):
    mean = {"w": jnp.zeros(D)}
    eps = jax.random.normal(key, (P // 2, D))
    return mean, {"w": jnp.concatenate([eps, -eps]) * 0.1}  # antithetic, as evosax draws them


def test_gradient_cosine_is_high_for_a_shared_fitness_and_near_zero_for_task_noise():
    mean, pop = _population(jax.random.PRNGKey(0))
    target = jax.random.normal(jax.random.PRNGKey(1), (50,))
    shared = jnp.tile((pop["w"] @ target)[:, None], (1, 8))  # the same function on every task
    assert float(es_gradient_cosine(pop, mean, shared)) > 0.99
    cos = [float(es_gradient_cosine(pop, mean, jax.random.normal(jax.random.PRNGKey(k), (16, 8))))
           for k in range(40)]  # each task's fitness independent noise
    assert abs(np.mean(cos)) < 0.1 and np.std(cos) < 0.5
    assert np.isnan(float(es_gradient_cosine(pop, mean, shared[:, :1])))  # one task: no halves


def test_fitness_ties_counts_members_equal_to_another():
    assert float(fitness_ties(jnp.array([1.0, 2.0, 3.0, 4.0]))) == 0.0
    assert float(fitness_ties(jnp.array([1.0, 1.0, 3.0, 3.0 + 1e-7]))) == 1.0
    assert float(fitness_ties(jnp.array([-722.0, -722.0, 5.0, jnp.nan]))) == 0.5


def test_generation_reports_the_diagnostics_per_task_fitness():
    target = {"w": jnp.linspace(-1.0, 1.0, 6)}
    sol = jax.tree_util.tree_map(jnp.zeros_like, target)
    cfg = ESConfig(population_size=16, generations=2, sigma=0.1, l2_penalty=0.0)
    es, params = make_strategy(cfg, sol)

    def fitness(pop, key, g):  # (P, 4 tasks): the same function plus small task noise
        r = -jnp.sum((pop["w"] - target["w"]) ** 2, axis=1)
        return r[:, None] + 1e-3 * jax.random.normal(key, (16, 4))

    state = es.init(jax.random.PRNGKey(0), sol, params)
    _, info = jax.jit(make_generation(es, params, fitness, cfg))(state, jax.random.PRNGKey(1))
    assert info["task_returns"].shape == (16, 4) and info["returns"].shape == (16,)
    assert float(info["es_grad_cosine"]) > 0.9 and float(info["fitness_ties"]) == 0.0


def test_antithetic_pairs_share_tasks_agent_and_evaluation_keys_under_common_random_numbers():
    """evosax pairs member i with i + P/2 (mirrored perturbations); with common random numbers both
    get the same tasks, agent seeds and evaluation episodes, so equal parameters score equally; with
    independent draws (--no-crn) they do not."""
    import dataclasses

    from metarl import envs
    from metarl.algorithms.epg.algorithm import EPG, EPGConfig
    from metarl.inner.on_policy_agent import LifetimeConfig

    cfg = EPGConfig(LifetimeConfig(lifetime_steps=64, buffer_size=64, eval_envs=1, hidden=(8, 8)),
                    ESConfig(population_size=4, generations=1), tasks_per_member=2, objective="residual")
    epg = EPG(envs.make("goal_point"), cfg)
    es, _, state, _ = epg.make_es(jax.random.PRNGKey(0))
    pop, _ = es.ask(jax.random.PRNGKey(1), state, es.default_params.replace(std_init=0.01)
                    if hasattr(es.default_params, "std_init") else es.default_params)
    mean = es.get_mean(state)
    d = jax.tree_util.tree_map(lambda p, m: p - m, pop, mean)
    for leaf in jax.tree_util.tree_leaves(d):  # i and i + P/2 are mirrored
        np.testing.assert_allclose(leaf[:2], -leaf[2:], atol=1e-6)
    same = jax.tree_util.tree_map(lambda p: jnp.concatenate([p[:2], p[:2]]), pop)  # pair members equal
    crn, _ = jax.jit(epg.fitness_fn)(same, jax.random.PRNGKey(2), 0)
    np.testing.assert_array_equal(crn[:2], crn[2:])
    no_crn = EPG(envs.make("goal_point"), dataclasses.replace(cfg, common_random_numbers=False))
    ind, _ = jax.jit(no_crn.fitness_fn)(same, jax.random.PRNGKey(2), 0)
    assert not np.allclose(ind[:2], ind[2:])


def test_truncated_es_strategies_are_refused_in_one_line():
    import pytest

    for name in ("PersistentES", "NoiseReuseES"):
        with pytest.raises(ValueError, match=f"strategy {name} is truncated ES"):
            ESConfig(strategy=name).validate()


def test_lifetime_fitness_final_or_area_under_the_curve():
    from metarl.algorithms.epg.algorithm import EPGConfig, lifetime_fitness

    nan = jnp.nan
    m = {"eval_return": jnp.array([[5.0, 7.0]]), "curve": jnp.array([[[1.0, nan, 3.0], [nan, nan, nan]]])}
    np.testing.assert_allclose(lifetime_fitness(m, "final"), [[5.0, 7.0]])
    np.testing.assert_allclose(lifetime_fitness(m, "auc"), [[2.0, 7.0]])  # no episode: the final return
    late = {"eval_return": jnp.array([5.0]), "curve": jnp.array([[1.0, 2.0, nan, 4.0, nan, 6.0, 7.0, 9.0]])}
    np.testing.assert_allclose(lifetime_fitness(late, "late_auc"), [8.0])  # the last quarter: 7, 9
    np.testing.assert_allclose(lifetime_fitness(m, "late_auc"), [[3.0, 7.0]])  # at least one update
    import pytest

    with pytest.raises(ValueError, match="unknown fitness 'best'"):
        EPGConfig(fitness="best").validate()


def test_fitness_noise_ratio_separates_signal_from_noise():
    from metarl.outer.es import fitness_noise_ratio

    signal = jnp.linspace(-1.0, 1.0, 16)
    noise = lambda k: 0.01 * jax.random.normal(jax.random.PRNGKey(k), (16,))  # noqa: E731
    assert float(fitness_noise_ratio(signal + noise(0), signal + noise(1))) > 10
    pure_noise = [float(fitness_noise_ratio(noise(2 * k), noise(2 * k + 1))) for k in range(40)]
    assert np.mean(pure_noise) < 0.3  # the naive std(mean) / sigma would read about 0.71 here
    # a known ratio: true member differences with std 1, draw noise with std 1
    rng = np.random.default_rng(0)
    true = rng.normal(size=4096)
    r = float(fitness_noise_ratio(jnp.asarray(true + rng.normal(size=4096)), jnp.asarray(true + rng.normal(size=4096))))
    assert abs(r - 1.0) < 0.1


def test_a_tied_population_has_no_gradient_agreement_and_takes_no_ranked_step():
    """Every member returning the same fitness (the pure form's agents all at the action clip) is no
    signal: the cosine is 0, not evosax's index-ordered ranks' spurious 1, and the tie-averaged
    shaping gives every member rank 0 (evosax's gives -0.5..0.5 by position: a random step)."""
    from metarl.outer.es import shape_per_task, tie_averaged_centered_ranks, tie_averaged_rank_shaping_fn

    mean, pop = _population(jax.random.PRNGKey(0))
    tied = jnp.full((16, 4), -722.0)
    assert float(es_gradient_cosine(pop, mean, tied)) == 0.0
    assert np.all(np.asarray(tie_averaged_centered_ranks(tied[:, 0])) == 0.0)
    assert np.all(np.asarray(shape_per_task(tied, "centered_rank")) == 0.0)
    f = jnp.array([3.0, 1.0, 1.0, 2.0, jnp.nan])
    np.testing.assert_allclose(tie_averaged_centered_ranks(f), [0.5, -0.125, -0.125, 0.25, -0.5])
    # as an evosax shaping of minimised fitness: the lowest gets the lowest shaped value, NaN the highest
    np.testing.assert_allclose(tie_averaged_rank_shaping_fn(None, f, None, None), [0.25, -0.375, -0.375, 0.0, 0.5])
