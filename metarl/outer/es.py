"""Evolution-strategies outer loop on evosax (0.3 API).

The outer loop is agnostic of what it evolves: it needs ``solution`` (a parameter pytree, e.g. the
EPG loss phi) and ``fitness_fn(population, key, generation) -> returns`` (higher is better), either
(population_size,) or (population_size, tasks), or ``-> (returns, aux)`` with any pytree ``aux``
passed through to ``info['fitness_aux']``. ``generation`` is the ES generation counter (an algorithm
with a schedule computes it from there). How fitness is shaped is the
configuration's: per task (``task_shaping``: none, z-scores or centred ranks across members within
each task) before the mean over tasks, then across members (``fitness_shaping``: evosax's centred
ranks by default, z-scores or identity).
OpenES by default, as openai/EPG: Adam with beta1 = 0 and a learning rate falling linearly from 1e-2 to
1e-3 over the first half of the generations (then constant), sigma 0.01, centred ranks, and the L2
penalty as weight decay on the ES gradient (``optax.add_decayed_weights(0.001)`` before Adam, the
original's -0.001 theta added to the gradient). Antithetic sampling is optional. Any evosax
distribution-based algorithm by name; those without an optax optimiser refuse an L2 setting.
evosax minimises, so it is told -return; non-finite returns are ranked last and counted.
"""
from __future__ import annotations

import dataclasses
import inspect
import time
from typing import Callable

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

from metarl import distributed
from metarl.checks import require_positive


def _algorithms() -> dict:
    # Imported on first use: importing evosax initialises the XLA backend, which must wait until a
    # multi-host run has called jax.distributed.initialize.
    from evosax.algorithms import distribution_based_algorithms

    return distribution_based_algorithms


def strategies() -> tuple[str, ...]:
    """Names of evosax's distribution-based algorithms usable here (Open_ES, SNES, PGPE, CMA_ES, ...)."""
    return tuple(sorted(set(_algorithms()) - set(TRUNCATED)))


# evosax's truncated-ES strategies: they carry each member's perturbation across unrolls of one
# lifetime (state persisted between ES steps), which whole-lifetime generations do not have
TRUNCATED = ("PersistentES", "NoiseReuseES")
FITNESS_SHAPINGS = ("centered_rank", "centered_rank_tied", "z_score", "identity")
TASK_SHAPINGS = ("none", "z_score", "centered_rank")


@dataclasses.dataclass(frozen=True)
class ESConfig:
    strategy: str = "Open_ES"
    population_size: int = 16
    generations: int = 100
    sigma: float = 0.01
    learning_rate: float = 1e-2
    lr_decay_fraction: float = 0.5  # lr falls linearly to lr x lr_decay_factor over this fraction
    lr_decay_factor: float = 0.1
    # weight decay on the ES gradient; None: 1e-3 for strategies with an optax optimiser, else 0
    l2_penalty: float | None = None
    antithetic: bool = True
    # across members, applied by evosax: "centered_rank" (openai/EPG), "z_score" or "identity"
    fitness_shaping: str = "centered_rank"
    # within each task, across members, before the mean over tasks (fitness of shape (P, tasks)):
    # "none" (the raw mean), "z_score" (over the finite members) or "centered_rank"
    task_shaping: str = "none"
    # evaluate every generation's population a second time on another common-random-numbers draw
    # (twice the cost) and report fitness_noise_ratio; the ES step uses the first draw only
    noise_probe: bool = False
    # the G that the lr decay (and an algorithm's own schedules) span; None: ``generations``. A run
    # extended past its original G keeps its schedules (the recorded first G generations never change).
    schedule_generations: int | None = None

    @property
    def schedule_span(self) -> int:
        return self.generations if self.schedule_generations is None else self.schedule_generations

    def validate(self) -> "ESConfig":
        if self.strategy in TRUNCATED:
            raise ValueError(f"strategy {self.strategy} is truncated ES (a perturbation kept over unrolls of one "
                             "lifetime); here every generation runs whole lifetimes, so its accumulator would "
                             "span generations: expected a whole-lifetime strategy (Open_ES, SNES, PGPE, ...)")
        if self.strategy not in _algorithms():
            raise ValueError(f"unknown ES strategy {self.strategy!r}; expected one of "
                             f"{', '.join(strategies())}")
        require_positive(self, ("population_size", "generations"))
        if self.schedule_generations is not None and self.schedule_generations <= 0:
            raise ValueError(f"schedule_generations must be a positive integer, got {self.schedule_generations}")
        if self.sigma <= 0 or self.learning_rate <= 0:
            raise ValueError(f"sigma and learning_rate must be positive, got {self.sigma}, "
                             f"{self.learning_rate}")
        if self.l2_penalty is not None and self.l2_penalty < 0:
            raise ValueError(f"l2_penalty must be >= 0, got {self.l2_penalty}")
        if self.l2_penalty and not _takes_optimizer(self.strategy):
            raise ValueError(f"strategy {self.strategy} has no optax optimiser to apply "
                             f"l2_penalty={self.l2_penalty} to; expected l2_penalty 0 or an "
                             "optimiser-based strategy (Open_ES, PGPE, ...)")
        if self.fitness_shaping not in FITNESS_SHAPINGS:
            raise ValueError(f"unknown fitness_shaping {self.fitness_shaping!r}; expected one of "
                             f"{', '.join(FITNESS_SHAPINGS)}")
        if self.task_shaping not in TASK_SHAPINGS:
            raise ValueError(f"unknown task_shaping {self.task_shaping!r}; expected one of "
                             f"{', '.join(TASK_SHAPINGS)}")
        if (self.antithetic or self.strategy == "Open_ES") and self.population_size % 2:
            raise ValueError(f"population_size={self.population_size} must be even for antithetic "
                             "sampling")
        return self


def _takes_optimizer(strategy: str) -> bool:
    return "optimizer" in inspect.signature(_algorithms()[strategy].__init__).parameters


def l2_penalty(cfg: ESConfig) -> float:
    """The weight decay in force: the configured one, else 1e-3 where an optimiser can apply it."""
    if cfg.l2_penalty is not None:
        return float(cfg.l2_penalty)
    return 1e-3 if _takes_optimizer(cfg.strategy) else 0.0


def learning_rate_schedule(cfg: ESConfig):
    """lr(g): linear from lr to lr x decay_factor over the first decay_fraction of G, then constant."""
    steps = max(1, int(cfg.lr_decay_fraction * cfg.schedule_span))
    return optax.linear_schedule(cfg.learning_rate, cfg.learning_rate * cfg.lr_decay_factor, steps)


def _fitness_shaping_fn(name: str):
    from evosax.core import fitness_shaping as fs  # on first use, as in _algorithms


    return {"centered_rank": fs.centered_rank_fitness_shaping_fn,
            "z_score": fs.standardize_fitness_shaping_fn,
            "identity": fs.identity_fitness_shaping_fn,
            "centered_rank_tied": tie_averaged_rank_shaping_fn}[name]


def shape_per_task(returns: jax.Array, how: str) -> jax.Array:
    """(P, tasks) -> (P,): each task's returns shaped across the finite members (``how``: "none",
    "z_score", "centered_rank"), then the mean over tasks; a member non-finite on any task gets NaN."""
    if how == "none":
        return returns.mean(axis=1)
    finite = jnp.isfinite(returns)
    r = jnp.where(finite, returns, jnp.nan)
    if how == "z_score":
        z = (r - jnp.nanmean(r, axis=0)) / (jnp.nanstd(r, axis=0) + 1e-8)
    else:  # centred ranks in [-0.5, 0.5] among the finite members of each task, ties sharing their average
        n = finite.sum(axis=0)
        diff = r[:, None, :] - r[None, :, :]  # (P, P, tasks); NaN where either is non-finite
        equal = jnp.abs(diff) <= 1e-6
        ranks = ((diff > 1e-6).sum(axis=1) + (equal.sum(axis=1) - 1) / 2.0)
        z = jnp.where(finite, ranks / jnp.maximum(n - 1, 1) - 0.5, jnp.nan)
    return z.mean(axis=1)


def make_strategy(cfg: ESConfig, solution):
    """Builds the evosax algorithm and its params for ``solution``'s shape."""
    cfg.validate()
    cls = _algorithms()[cfg.strategy]
    accepted = inspect.signature(cls.__init__).parameters
    # evosax hands the optimiser its gradient estimate of the (minimised) shaped fitness; decayed
    # weights add l2 * theta to it, which pulls theta toward 0 as openai/EPG's L2 term does.
    optimizer = optax.chain(optax.add_decayed_weights(l2_penalty(cfg)),
                            optax.adam(learning_rate_schedule(cfg), b1=0.0))
    kwargs = dict(
        optimizer=optimizer,
        std_schedule=optax.constant_schedule(cfg.sigma),
        use_antithetic_sampling=cfg.antithetic,
        fitness_shaping_fn=_fitness_shaping_fn(cfg.fitness_shaping),
    )
    es = cls(cfg.population_size, solution, **{k: v for k, v in kwargs.items() if k in accepted})
    params = es.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=cfg.sigma)
    return es, params


def tie_averaged_centered_ranks(fitness: jax.Array, tol: float = 1e-6) -> jax.Array:
    """(P,) -> (P,) centred ranks in [-0.5, 0.5], higher for higher fitness, members within ``tol`` of
    each other sharing their average rank (all tied: all 0, no direction); non-finite lowest.

    evosax's centred ranks order ties by index, and evosax pairs antithetic members i and i + P/2, so a
    fully tied population gets ranks -0.5 .. 0.5 by position and the ES gradient becomes a random
    direction, -(P/2)/(P-1) sum_{i < P/2} eps_i: the mean then walks where there is no signal."""
    f = jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf)
    diff = f[:, None] - f[None, :]
    equal = (jnp.abs(diff) <= tol) | (jnp.isneginf(f)[:, None] & jnp.isneginf(f)[None, :])
    below = (diff > 0) & ~equal
    ranks = below.sum(axis=1) + (equal.sum(axis=1) - 1) / 2.0
    return ranks / (fitness.shape[0] - 1) - 0.5


def tie_averaged_rank_shaping_fn(population, fitness, state, params):
    """evosax fitness-shaping signature (minimised fitness in, shaped fitness out) with tie-averaged
    centred ranks: see tie_averaged_centered_ranks."""
    del population, state, params
    return -tie_averaged_centered_ranks(-fitness)


_centered_ranks = tie_averaged_centered_ranks


def es_gradient_cosine(population, mean, task_returns: jax.Array, task_shaping: str = "none") -> jax.Array:
    """cos(g_A, g_B) of the ES gradient estimates g = sum_i rank_i (x_i - mean) built from the members'
    returns on one half of the tasks (A) and on the other half (B), same perturbations: whether
    members' differences repeat across tasks (about 1 when they do, about 0 for task-independent
    noise). task_returns (P, tasks >= 2); NaN with fewer than 2 tasks."""
    T = task_returns.shape[1]
    if T < 2:
        return jnp.float32(jnp.nan)
    flat = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(population)
    eps = flat - jax.flatten_util.ravel_pytree(mean)[0]
    ga = _centered_ranks(shape_per_task(task_returns[:, : T // 2], task_shaping)) @ eps
    gb = _centered_ranks(shape_per_task(task_returns[:, T // 2:], task_shaping)) @ eps
    return (ga @ gb) / (jnp.linalg.norm(ga) * jnp.linalg.norm(gb) + 1e-12)


def fitness_ties(fitness: jax.Array, tol: float = 1e-6) -> jax.Array:
    """The fraction of members whose fitness equals another member's (to ``tol``): (P,) -> ()."""
    close = jnp.abs(fitness[:, None] - fitness[None, :]) <= tol
    close = close & ~jnp.eye(fitness.shape[0], dtype=bool)
    return close.any(axis=1).mean()


def fitness_noise_ratio(first: jax.Array, second: jax.Array) -> jax.Array:
    """Signal over noise of members' fitness from two draws of tasks and keys, (P,), (P,) -> ():
    s / sigma, the std of the members' true differences over a member's draw-to-draw noise std. With
    sigma estimated as std(first - second) / sqrt 2, the std of the two draws' mean has variance
    s^2 + sigma^2 / 2, so s / sigma = sqrt(max(var(mean) / sigma^2 - 1/2, 0)): 0 where members'
    differences are all noise (the naive ratio std(mean) / sigma would read 1/sqrt 2 there)."""
    ok = jnp.isfinite(first) & jnp.isfinite(second)
    mean, diff = jnp.where(ok, (first + second) / 2, jnp.nan), jnp.where(ok, first - second, jnp.nan)
    sigma2 = jnp.nanvar(diff) / 2.0
    return jnp.sqrt(jnp.maximum(jnp.nanvar(mean) / (sigma2 + 1e-24) - 0.5, 0.0))


def make_generation(es, es_params, fitness_fn: Callable, cfg: ESConfig):
    """Returns ``generation(es_state, key) -> (es_state, info)``: ask, evaluate, tell — pure.

    info: 'returns' (population_size,) (per task shaped by ``cfg.task_shaping`` and averaged where
    the fitness has a task axis; 'task_returns' (population_size, tasks) then holds it as given),
    'mean'/'max'/'min' of the finite returns, 'nonfinite' count, 'best_member' (the generation's best
    parameters), the signal diagnostics 'fitness_ties' (``fitness_ties``) and 'es_grad_cosine'
    (``es_gradient_cosine``; NaN without >= 2 tasks), and 'fitness_aux' when ``fitness_fn`` returns
    (returns, aux).
    """

    def generation(es_state, key):
        k_ask, k_fit, k_tell = jax.random.split(key, 3)
        reduce = lambda r: shape_per_task(r, cfg.task_shaping) if r.ndim == 2 else r  # noqa: E731
        g = es_state.generation_counter  # this generation's index (tell advances it)
        mean = es.get_mean(es_state)
        population, es_state = es.ask(k_ask, es_state, es_params)
        returns = fitness_fn(population, k_fit, g)
        aux = None
        if isinstance(returns, tuple):
            returns, aux = returns
        task_returns = returns if returns.ndim == 2 else None
        returns = reduce(returns)
        finite = jnp.isfinite(returns)
        # evosax's centred ranks put NaN last; +-inf are mapped to NaN so that they do too.
        es_state, _ = es.tell(k_tell, population, jnp.where(finite, -returns, jnp.nan), es_state, es_params)
        safe = jnp.where(finite, returns, jnp.nan)
        best = jnp.nanargmax(jnp.where(finite, returns, -jnp.inf))
        info = {"returns": returns, "mean": jnp.nanmean(safe), "max": jnp.nanmax(safe),
                "min": jnp.nanmin(safe), "nonfinite": (~finite).sum(),
                "best_member": jax.tree_util.tree_map(lambda x: x[best], population),
                "fitness_ties": fitness_ties(returns),
                "es_grad_cosine": jnp.float32(jnp.nan) if task_returns is None else es_gradient_cosine(
                    population, mean, task_returns, cfg.task_shaping)}
        if task_returns is not None:
            info["task_returns"] = task_returns
        if cfg.noise_probe:  # the same members on a second draw (a key this generation uses nowhere else)
            second = fitness_fn(population, jax.random.fold_in(k_fit, 1), g)
            second = second[0] if isinstance(second, tuple) else second
            info["fitness_noise_ratio"] = fitness_noise_ratio(returns, reduce(second))
        if aux is not None:
            info["fitness_aux"] = aux
        return es_state, info

    return generation


def make_es(cfg: ESConfig, solution, fitness_fn: Callable, key, mesh=None):
    """(es, es_params, es_state, generation_fn) with the ES mean at ``solution`` (its initial point).
    ``mesh``: the population mesh the fitness function splits members over (checked here, once for
    every ES-driven algorithm: the population must split evenly over its devices)."""
    if mesh is not None:
        distributed.check_population(cfg.population_size, mesh)
    es, params = make_strategy(cfg, solution)
    state = es.init(key, solution, params)
    return es, params, state, make_generation(es, params, fitness_fn, cfg)


def compile_generation(generation: Callable, es_state, key, mesh=None):
    """AOT-compiles one ES generation ``generation(es_state, key) -> (es_state, info)``.

    Returns (compiled, compile seconds, es_state with the dtypes the generation returns): a fresh
    state and one restored from a checkpoint then take the compiled program without a re-trace.
    ``mesh``: outputs replicated over it (a population sharded over devices)."""
    jit_kwargs = {} if mesh is None else {"out_shardings": distributed.replicated(mesh)}
    t0 = time.time()
    compiled = jax.jit(generation, **jit_kwargs).lower(es_state, key).compile()
    compile_s = time.time() - t0
    out_state = jax.eval_shape(generation, es_state, key)[0]
    es_state = jax.tree_util.tree_map(lambda x, s: np.asarray(x, dtype=s.dtype), es_state, out_state)
    return compiled, compile_s, es_state
