"""Meta-validation of a MetaGenRL run (``--outer metagrad``): which objective goes to the meta-test.

Every ``every`` meta-iterations (and after the last), fresh held-out agents of the frozen-objective
harness (``metarl.inner.frozen_objective.make_train``: TD3's twin critics, the policy updated by the
current L_alpha alone, frozen, no warm start: the meta-test's learner) live ``lifetime_steps`` env
steps on each meta-training body (train-split tasks; never the meta-test's bodies or split), and
``meta_val_return`` is the mean final return of their deployed policies (per body:
``meta_val_return/<env>``). The initial objective alpha_0 is validated once at iteration 0, so that
the curve starts at the start. Common random numbers: every validation point trains the same agents
(same keys, same tasks), drawn from a stream of their own (``VAL_STREAM``, neither meta-training's
keys nor the meta-test's), so that differences between points are the objective's.

The best objective so far (the highest finite ``meta_val_return``; ties: the later) lives in the run
state, so a resumed run keeps it exactly; with ``--select best`` (the default when validation is on)
the meta-test's ``learned`` is that one, as EPG's ``--eval-every`` keeps its best loss.

``every = 0`` (the ``smoke`` preset's) turns it off: the run state, the outer step and every number
of the run are then those of a run without this module.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from metarl.runs.run_dir import ConfigError

SELECT = ("best", "last")
VAL_STREAM = 0x6D657661  # fold_in(PRNGKey(seed), VAL_STREAM): the validation agents' own keys
# run-state keys (present only when validation is on); VAL_HISTORY has one row per meta-iteration
VAL_HISTORY = "val_returns"


@dataclasses.dataclass(frozen=True)
class MetaValConfig:
    """A preset's ``val``: ``every`` meta-iterations between validations (0: off), ``agents`` fresh
    agents per meta-training body, each living ``lifetime_steps`` env steps and scored on
    ``eval_envs`` envs; ``select``: the objective the meta-test gets (``best`` by meta_val_return,
    ``last``; None: best when validation is on, else last)."""

    every: int = 0
    agents: int = 2
    lifetime_steps: int = 2_000
    eval_envs: int = 2
    select: str | None = None

    @property
    def on(self) -> bool:
        return self.every > 0

    @property
    def selection(self) -> str:
        return self.select if self.select is not None else ("best" if self.on else "last")

    def validate(self) -> "MetaValConfig":
        if not isinstance(self.every, int) or self.every < 0:
            raise ConfigError(f"--val-every must be an integer >= 0 (0 turns it off), got {self.every}")
        for name in ("agents", "lifetime_steps", "eval_envs"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"--val-{name.replace('_', '-')} must be a positive integer, got {v}")
        if self.select is not None and self.select not in SELECT:
            raise ConfigError(f"--select must be one of {', '.join(SELECT)}, got {self.select!r}")
        if self.select == "best" and not self.on:
            raise ConfigError("--select best needs meta-validation (--val-every > 0)")
        return self


def add_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--val-every", type=int, default=None,
                    help="meta-iterations between meta-validations (fresh held-out agents trained by the "
                         "frozen objective on the meta-training bodies; logged as meta_val_return); "
                         "0 turns it off (default: the preset's; cpu: 2, smoke: off)")
    ap.add_argument("--val-agents", type=int, default=None,
                    help="meta-validation: fresh agents per meta-training body (default: the preset's)")
    ap.add_argument("--val-lifetime-steps", type=int, default=None,
                    help="meta-validation: env steps of each validation agent (default: the preset's)")
    ap.add_argument("--select", default=None, choices=SELECT,
                    help="the objective the meta-test gets: best (by meta_val_return; the default with "
                         "meta-validation) or last (the default without)")


VAL_FLAGS = ("val_every", "val_agents", "val_lifetime_steps", "select")


def configure(preset_val: MetaValConfig, args, outer: str) -> MetaValConfig:
    """The preset's ``val`` with the flags; raises ConfigError naming a bad value. ``--outer es``
    has no meta-validation (its flags are refused there; the preset's ``val`` is ignored)."""
    given = {f: getattr(args, f, None) for f in VAL_FLAGS if getattr(args, f, None) is not None}
    if outer != "metagrad":
        if given:
            name = "--" + next(iter(given)).replace("_", "-")
            raise ConfigError(f"{name} is not used by --outer {outer} (meta-validation is --outer metagrad's)")
        return MetaValConfig()
    fields = {"val_every": "every", "val_agents": "agents", "val_lifetime_steps": "lifetime_steps",
              "select": "select"}
    cfg = dataclasses.replace(preset_val, **{fields[f]: v for f, v in given.items()})
    cfg.validate()
    return cfg


def is_better(score: float, best: float) -> bool:
    """Whether a validation score replaces the best so far: finite and >= it (ties: the later)."""
    return bool(np.isfinite(score)) and (not np.isfinite(best) or score >= best)


def due(iteration: int, every: int, total: int) -> bool:
    """Whether meta-iteration ``iteration`` (1-based, just done) is validated."""
    return every > 0 and (iteration % every == 0 or iteration == total)


def _host_copy(tree):
    """Host numpy copies (gathered across hosts): never views of buffers that a later meta-iteration donates."""
    import jax

    from metarl import distributed

    return jax.tree_util.tree_map(lambda x: np.array(x, copy=True), distributed.to_host(tree))


class Validator:
    """``Validator(envs, names, td3, val, objective, seed, alpha0, total)``: the compiled
    validation program and the run-state pieces of meta-validation (see the module docstring)."""

    def __init__(self, envs, names, td3, val: MetaValConfig, objective, seed: int, alpha0, total: int):
        import jax
        import jax.numpy as jnp

        from metarl.inner import frozen_objective

        self.names, self.val, self.total = list(names), val, total

        def factory(agent):
            return lambda alpha, pol, cri, batch: objective.policy_loss(alpha, pol, batch, agent, critic_params=cri)

        key = jax.random.fold_in(jax.random.PRNGKey(seed), VAL_STREAM)
        A = val.agents
        per_env = []
        for i, env in enumerate(envs):
            train = frozen_objective.make_train(env, td3, val.lifetime_steps, 1, factory, eval_envs=val.eval_envs)
            k_task, k_agent = jax.random.split(jax.random.fold_in(key, i))
            tasks = jax.vmap(lambda k, env=env: env.sample_task(k, "train"))(jax.random.split(k_task, A))
            per_env.append((train, jax.random.split(k_agent, A), tasks))

        def returns(alpha):
            return jnp.stack([jax.vmap(train, in_axes=(0, 0, None))(keys, tasks, alpha)[1]["eval_return"].mean()
                              for train, keys, tasks in per_env])

        t0 = time.time()
        self.program = jax.jit(returns).lower(_host_copy(alpha0)).compile()
        self.compile_s = time.time() - t0

    def returns(self, alpha) -> np.ndarray:
        """(envs,) mean final return of the validation agents trained by the frozen ``alpha``."""
        return np.asarray(self.program(_host_copy(alpha)), dtype=np.float32)

    def fresh_state(self, alpha0) -> dict:
        """The run-state keys of meta-validation: the best objective (alpha_0 until validated), its
        meta_val_return and iteration, alpha_0's returns (iteration 0) and one row per meta-iteration."""
        E = len(self.names)
        return {"val_best_alpha": _host_copy(alpha0), "val_best_return": np.float32(-np.inf),
                "val_best_iteration": np.int32(0), "val_initial": np.full(E, np.nan, np.float32),
                VAL_HISTORY: np.full((self.total, E), np.nan, np.float32)}

    def _score(self, run: dict, iteration: int, alpha, rets: np.ndarray) -> tuple[dict, dict, str]:
        mean = float(np.nanmean(rets)) if np.isfinite(rets).any() else float("nan")
        if is_better(mean, float(run["val_best_return"])):
            run = dict(run, val_best_alpha=_host_copy(alpha), val_best_return=np.float32(mean),
                       val_best_iteration=np.int32(iteration))
        fin = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731
        rec = {"meta_val_return": fin(mean), **{f"meta_val_return/{n}": fin(r) for n, r in zip(self.names, rets)},
               "meta_val_best_iteration": int(run["val_best_iteration"])}
        progress = (f"meta_val_return {mean:.2f} ({' '.join(f'{n}={r:.2f}' for n, r in zip(self.names, rets))}) "
                    f"best {float(run['val_best_return']):.2f} @ iter {int(run['val_best_iteration'])}")
        return run, rec, progress

    def begin(self, run: dict, alpha0, counter: str) -> tuple[dict, dict, str]:
        """Iteration 0: alpha_0 validated (metrics.jsonl's record 0)."""
        t = time.time()
        rets = self.returns(alpha0)
        run = dict(run, val_initial=rets)
        run, rec, progress = self._score(run, 0, alpha0, rets)
        dt = time.time() - t
        return run, {counter: 0, **rec, "val_s": dt}, f"iter 0/{self.total} {progress} [{dt:.1f}s]"

    def after(self, run: dict, it: int, alpha) -> tuple[dict, dict, str]:
        """After meta-iteration ``it`` (0-based): validates ``alpha`` when due; returns the run, the
        record's extra keys and the progress line's tail ({}, '' when not due)."""
        if not due(it + 1, self.val.every, self.total):
            return run, {}, ""
        t = time.time()
        rets = self.returns(alpha)
        from metarl.runs.driver import record

        run = dict(run)
        record(run, it, **{VAL_HISTORY: rets})
        run, rec, progress = self._score(run, it + 1, alpha, rets)
        dt = time.time() - t
        return run, {**rec, "val_s": dt}, f" | {progress} [{dt:.1f}s]"

    def selected(self, run: dict, last_alpha) -> tuple[object, dict]:
        """(the objective the meta-test gets, summary.json's ``meta_validation``)."""
        best = float(run["val_best_return"])
        fin = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731
        hist = np.asarray(run[VAL_HISTORY])
        mean = lambda r: fin(np.nanmean(r)) if np.isfinite(r).any() else None  # noqa: E731
        history = [{"iteration": 0, "meta_val_return": mean(run["val_initial"]),
                    **{f"meta_val_return/{n}": fin(x) for n, x in zip(self.names, run["val_initial"])}}]
        history += [{"iteration": i + 1, "meta_val_return": mean(hist[i]),
                     **{f"meta_val_return/{n}": fin(x) for n, x in zip(self.names, hist[i])}}
                    for i in range(self.total)  # an extended run's old last iteration was validated too
                    if due(i + 1, self.val.every, self.total) or np.isfinite(hist[i]).any()]
        select = self.val.selection
        if select == "best":
            alpha, it, score = run["val_best_alpha"], int(run["val_best_iteration"]), fin(best)
        else:
            it = self.total
            alpha, score = last_alpha, next((h["meta_val_return"] for h in history if h["iteration"] == it), None)
        info = {"every": self.val.every, "agents_per_env": self.val.agents,
                "lifetime_steps": self.val.lifetime_steps, "eval_envs": self.val.eval_envs,
                "select": select, "selected_iteration": it, "selected_meta_val_return": score,
                "best_iteration": int(run["val_best_iteration"]), "best_meta_val_return": fin(best),
                "compile_s": self.compile_s, "history": history}
        return alpha, info
