"""Evolution-strategies outer loop on evosax (0.3 API).

The outer loop is agnostic of what it evolves: it needs ``solution`` (a parameter pytree, e.g. the
EPG loss phi) and ``fitness_fn(population, key, ppo_factor) -> returns (population_size,)`` (higher
is better), or ``-> (returns, aux)`` with any pytree ``aux`` passed through to ``info['fitness_aux']``.
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
from typing import Callable

import jax
import jax.numpy as jnp
import optax


def _algorithms() -> dict:
    # Imported on first use: importing evosax initialises the XLA backend, which must wait until a
    # multi-host run has called jax.distributed.initialize.
    from evosax.algorithms import distribution_based_algorithms

    return distribution_based_algorithms


def strategies() -> tuple[str, ...]:
    """Names of evosax's distribution-based algorithms (Open_ES, SNES, PGPE, CMA_ES, ...)."""
    return tuple(sorted(_algorithms()))


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
    ppo_anneal_fraction: float = 0.125  # f: 1 -> 0 linearly over this fraction, then 0
    # the G that the lr decay and the f anneal span; None: ``generations``. A run extended past its
    # original G keeps its schedules (the recorded series of the first G generations never change).
    schedule_generations: int | None = None

    @property
    def schedule_span(self) -> int:
        return self.generations if self.schedule_generations is None else self.schedule_generations

    def validate(self) -> "ESConfig":
        if self.strategy not in _algorithms():
            raise ValueError(f"unknown ES strategy {self.strategy!r}; expected one of "
                             f"{', '.join(strategies())}")
        for f in ("population_size", "generations"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{f} must be a positive integer, got {getattr(self, f)}")
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


def ppo_factor(generation, cfg: ESConfig):
    """f(g) = max(0, 1 - g / (anneal_fraction * G)): PPO mixing factor of the inner loss."""
    span = cfg.ppo_anneal_fraction * cfg.schedule_span
    if span <= 0:
        return jnp.float32(0.0)
    return jnp.clip(1.0 - generation / span, 0.0, 1.0).astype(jnp.float32)


def make_strategy(cfg: ESConfig, solution):
    """Builds the evosax algorithm and its params for ``solution``'s shape."""
    cfg.validate()
    from evosax.core.fitness_shaping import centered_rank_fitness_shaping_fn

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
        fitness_shaping_fn=centered_rank_fitness_shaping_fn,
    )
    es = cls(cfg.population_size, solution, **{k: v for k, v in kwargs.items() if k in accepted})
    params = es.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=cfg.sigma)
    return es, params


def make_generation(es, es_params, fitness_fn: Callable, cfg: ESConfig):
    """Returns ``generation(es_state, key) -> (es_state, info)``: ask, evaluate, tell — pure.

    info: 'returns' (population_size,), 'mean'/'max'/'min' of finite returns, 'nonfinite' count,
    'ppo_factor', 'best_member' (the generation's best parameters as a flat vector), and
    'fitness_aux' when ``fitness_fn`` returns (returns, aux).
    """

    def generation(es_state, key):
        k_ask, k_fit, k_tell = jax.random.split(key, 3)
        f = ppo_factor(es_state.generation_counter, cfg)
        population, es_state = es.ask(k_ask, es_state, es_params)
        returns = fitness_fn(population, k_fit, f)
        aux = None
        if isinstance(returns, tuple):
            returns, aux = returns
        finite = jnp.isfinite(returns)
        # evosax's centred ranks put NaN last; +-inf are mapped to NaN so that they do too.
        es_state, _ = es.tell(k_tell, population, jnp.where(finite, -returns, jnp.nan), es_state, es_params)
        safe = jnp.where(finite, returns, jnp.nan)
        best = jnp.nanargmax(jnp.where(finite, returns, -jnp.inf))
        info = {"returns": returns, "mean": jnp.nanmean(safe), "max": jnp.nanmax(safe),
                "min": jnp.nanmin(safe), "nonfinite": (~finite).sum(), "ppo_factor": f,
                "best_member": jax.tree_util.tree_map(lambda x: x[best], population)}
        if aux is not None:
            info["fitness_aux"] = aux
        return es_state, info

    return generation


def compile_generation(generation: Callable, es_state, key, mesh=None):
    """AOT-compiles one ES generation ``generation(es_state, key) -> (es_state, info)``.

    Returns (compiled, compile seconds, es_state with the dtypes the generation returns): a fresh
    state and one restored from a checkpoint then take the compiled program without a re-trace.
    ``mesh``: outputs replicated over it (a population sharded over devices)."""
    import time

    import numpy as np

    from metarl import distributed

    jit_kwargs = {} if mesh is None else {"out_shardings": distributed.replicated(mesh)}
    t0 = time.time()
    compiled = jax.jit(generation, **jit_kwargs).lower(es_state, key).compile()
    compile_s = time.time() - t0
    out_state = jax.eval_shape(generation, es_state, key)[0]
    es_state = jax.tree_util.tree_map(lambda x, s: np.asarray(x, dtype=s.dtype), es_state, out_state)
    return compiled, compile_s, es_state
