"""Meta-test of MetaGenRL objectives: fresh TD3-harness agents trained only by a frozen L_alpha
(no objective updates, no DDPG warm start) on seen and unseen environments, against a random-init
objective, TD3/DDPG (critic-only), off-policy REINFORCE with GAE and PPO at equal env steps, and two
do-nothing floors: ``no_update`` (the same fresh agents' initial policies, never updated) and
``zero_action`` (a policy that always outputs 0).

Evaluation is the policy as deployed: the TD3-harness policies are deterministic (pi_phi(s), no
exploration noise); PPO's is its Gaussian, sampled unless ``PPOConfig.deterministic_eval``. Every
figure is the mean return of the first episode of ``eval_envs`` envs per agent (full horizon unless
the body terminates). On locomotion bodies each one also has a forward return: the forward-velocity
part of brax's reward alone (``reward_forward`` / ``reward_run``), so that an objective that only
teaches standing still (brax's hopper pays +1 per step for staying up) cannot pass for locomotion.
All of it is ``metarl.evaluation``'s.

``meta_test(env_names, learned, initial, objective, MetaTestConfig(...), seed)`` returns
{env: {method: entry}} in metarl.runs.meta_test_schema's schema, which
``meta_test_io.write_meta_test`` writes to meta_test.json, meta_test.csv and meta_test.png.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metarl import envs as envs_lib
from metarl.checks import require_positive
from metarl import evaluation
from metarl.baselines import ppo as ppo_lib
from metarl.baselines.reinforce import reinforce_loss
from metarl.envs.core import TaskFamily
from metarl.evaluation import forward_metric
from metarl.inner import frozen_objective
from metarl.inner.td3 import TD3Agent, TD3Config
from metarl.runs.meta_test_schema import mean_curve, method_result
from metarl.protocols import Objective

METHODS = ("learned", "initial_loss", "td3", "reinforce", "ppo")
FLOORS = ("no_update", "zero_action")  # do-nothing baselines, reported for every env
TD3_HARNESS = ("learned", "initial_loss", "td3", "reinforce")
# The harness's policy-loss terms (harness_policy_loss) and the one each TD3-harness method trains by.
TERMS = ("alpha", "ddpg", "reinforce")
METHOD_TERM = {"learned": "alpha", "initial_loss": "alpha", "td3": "ddpg", "reinforce": "reinforce"}
# One compiled program per group (vmapped over method x seed), each with only its methods' terms:
# L_alpha (its backward LSTM) only where a method trains by it, so the baselines no longer run it
# under vmap with weight 0. On the cpu preset's hopper meta-test this takes 0.70-0.76 of the single
# program's run time, for one more compile (RESULTS.md "metagenrl_meta_test_split").
# ((TD3_HARNESS,): the former single program.)
# learned and initial_loss are two groups of one program (MetaTest: one compile, each run on its own
# alpha), so that initial_loss can train before the learned objective exists.
HARNESS_GROUPS = (("learned",), ("initial_loss",), ("td3", "reinforce"))


def _prefix(d: dict) -> dict:
    return {f"eval_{k}": v for k, v in d.items()}


def _summ(metrics: dict) -> dict:
    """One method's meta-test schema entry from per-seed metrics: eval_return (seeds,),
    eval_forward_return (seeds,) on locomotion bodies, episode_return and env_steps (seeds, chunks)."""
    fwd, curve = metrics.get("eval_forward_return"), metrics.get("episode_return")
    return method_result(np.asarray(metrics["eval_return"], dtype=np.float64),
                         None if curve is None else mean_curve(curve),
                         None if curve is None else np.asarray(metrics["env_steps"])[0],
                         forward=None if fwd is None else np.asarray(fwd, dtype=np.float64))


def harness_policy_loss(objective: Objective, sigma: float, terms: Sequence[str] = TERMS):
    """The frozen-objective harness's policy loss (a ``policy_loss`` factory for
    ``metarl.inner.frozen_objective.make_train``), a weighted mix of ``terms`` (names from TERMS:
    L_alpha, DDPG's -Q1, REINFORCE) with params {'w': (len(terms),), 'alpha' (if 'alpha' in terms)}:
    loss = sum_i w_i term_i, in ``terms``' order (all three: w0 L_alpha + w1 (-Q1) + w2 REINFORCE).
    One compiled program then trains several methods side by side (vmap over method x seed), which
    saves a compile per method; a term not in ``terms`` is not computed at all."""
    bad = [t for t in terms if t not in TERMS]
    if bad or not terms:
        raise ValueError(f"harness terms must be names from {TERMS}, got {tuple(terms)}")

    def factory(agent):
        rf = reinforce_loss(sigma)(agent) if "reinforce" in terms else None
        fns = {"alpha": lambda p, pol, cri, b: objective.policy_loss(p["alpha"], pol, b, agent, critic_params=cri),
               "ddpg": lambda p, pol, cri, b: agent.ddpg_loss(pol, cri, b),
               "reinforce": lambda p, pol, cri, b: rf(None, pol, cri, b)}

        def loss(p, pol, cri, batch):
            w = p["w"]
            total = w[0] * fns[terms[0]](p, pol, cri, batch)
            for i, t in enumerate(terms[1:], start=1):
                total = total + w[i] * fns[t](p, pol, cri, batch)
            return total

        return loss

    return factory


def harness_groups(methods: Sequence[str], groups: Sequence[Sequence[str]] = HARNESS_GROUPS) -> list[tuple]:
    """The TD3-harness programs a meta-test of ``methods`` builds: ``groups`` restricted to
    ``methods`` (their order), empty ones dropped. A TD3-harness method of ``methods`` in no
    group, or in two, is an error."""
    harness = [m for m in methods if m in TD3_HARNESS]
    grouped = [m for g in groups for m in g]
    missing = [m for m in harness if grouped.count(m) != 1]
    if missing:
        raise ValueError(f"TD3-harness methods {missing} must each be in exactly one harness group, "
                         f"got {tuple(map(tuple, groups))}")
    out = [tuple(m for m in harness if m in g) for g in groups]
    return [g for g in out if g]


@dataclasses.dataclass(frozen=True)
class MetaTestSizes:
    """A meta-test's budget (a preset's ``test``, recorded as config.json's ``"test"``):
    ``total_steps`` env steps per agent in ``num_chunks`` chunks (the curve's points),
    ``num_seeds`` agents per (env, method), each evaluated on ``eval_envs`` envs."""

    total_steps: int
    num_chunks: int
    num_seeds: int
    eval_envs: int = 8

    def validate(self) -> "MetaTestSizes":
        require_positive(self, ("total_steps", "num_chunks", "num_seeds", "eval_envs"), prefix="meta-test ")
        return self


@dataclasses.dataclass(frozen=True)
class MetaTestConfig:
    """Everything ``meta_test`` trains with: the TD3 harness's agents (``td3``), PPO's settings
    (``ppo``; its ``total_steps`` is replaced by the budget's), the budget and the task split."""

    td3: TD3Config
    sizes: MetaTestSizes
    ppo: ppo_lib.PPOConfig = ppo_lib.PPOConfig()
    split: str = "test"

    def validate(self) -> "MetaTestConfig":
        from metarl.envs.core import check_split

        self.td3.validate()
        self.sizes.validate()
        self.ppo_config.validate()
        check_split(self.split)
        return self

    @property
    def ppo_config(self) -> ppo_lib.PPOConfig:
        """PPO at the meta-test's budget."""
        return dataclasses.replace(self.ppo, total_steps=self.sizes.total_steps)


def _ppo_program(env: TaskFamily, cfg: ppo_lib.PPOConfig, eval_envs: int, forward: str | None):
    """train(key, task) -> metrics: PPO, then its deployed policy's first-episode returns."""
    # PPO's own evaluation is replaced by the one below (same protocol, with the forward part)
    train = ppo_lib.make_train(env, dataclasses.replace(cfg, eval_envs=1))
    policy_of = ppo_lib.deployed_policy(env, cfg)

    def run(key, task):
        state, m = train(key, task)
        act = evaluation.gaussian(policy_of(state), sampled=not cfg.deterministic_eval)
        ev = evaluation.first_episode_returns(env, act, task, jax.random.fold_in(key, 11), eval_envs, forward)
        return {"episode_return": m["episode_return"], "env_steps": m["env_steps"], **_prefix(ev)}

    return run


def group_terms(group: Sequence[str]) -> tuple:
    """The policy-loss terms (TERMS' order) the methods of ``group`` train by."""
    return tuple(t for t in TERMS if any(METHOD_TERM[m] == t for m in group))


def harness_program(env: TaskFamily, config: MetaTestConfig, objective: Objective, group: Sequence[str],
                    learned_alpha, initial_alpha, keys, tasks, forward: str | None = None):
    """(fn, args): one TD3-harness program for the methods ``group`` (len M), ``fn(*args) ->
    (states, metrics)`` over M x num_seeds agents, method-major (agent i * num_seeds + j: method i,
    seed j, key ``keys[j]``, task ``tasks[j]``), each trained by its METHOD_TERM; the loss holds only
    the terms ``group`` uses (in TERMS' order). ``jax.jit(fn)(*args)`` runs it."""
    terms = group_terms(group)
    sz, td3_config = config.sizes, config.td3
    train = frozen_objective.make_train(env, td3_config, sz.total_steps, sz.num_chunks,
                                        harness_policy_loss(objective, td3_config.expl_noise, terms),
                                        eval_envs=sz.eval_envs, forward=forward)
    n, M = sz.num_seeds, len(group)
    rep = lambda *xs: jnp.repeat(jnp.stack(xs), n, axis=0)  # noqa: E731
    params = {"w": rep(*[jnp.array([float(METHOD_TERM[m] == t) for t in terms]) for m in group])}
    if "alpha" in terms:  # methods not trained by L_alpha carry the learned one at weight 0
        alphas = {"initial_loss": initial_alpha}
        params["alpha"] = jax.tree_util.tree_map(rep, *[alphas.get(m, learned_alpha) for m in group])
    tile = lambda x: jnp.tile(x, (M,) + (1,) * (x.ndim - 1))  # noqa: E731
    return jax.vmap(train), (tile(keys), jax.tree_util.tree_map(tile, tasks), params)


class MetaTest:
    """One meta-test in two parts, so that the methods that do not read the learned objective can
    train while it is still being meta-trained:

    ``start(background)``: per env, the do-nothing floors, every TD3-harness group without
    ``learned`` (initial_loss, td3 + reinforce) and PPO, on a background thread with
    ``background=True`` (a daemon: a stopped run does not wait for it), else inline; the program
    of ``learned``'s group is compiled there first. ``finish(learned_alpha)``: trains ``learned``'s
    agents, waits for the rest and returns {env: {method: entry}} as ``meta_test`` does.

    Groups of the same terms and size are one compiled program (the learned and the initial
    objective differ only in alpha's values): with HARNESS_GROUPS, ``learned`` and
    ``initial_loss`` run the same executable on their own alphas, and every method keeps its keys
    and tasks, so the schedule (background or inline) changes no number. Against the former
    program of both (one vmap over 2 x num_seeds agents) the math is the same, but a vmap over
    half the agents is another XLA graph: float32 rounding differs in the last bits and drifts over
    a long run, as for any change of graph (the numeric guard's metagenrl records were re-recorded).

    Why a thread and not a second process: the programs are independent, XLA runs each on the
    thread that calls it and releases the GIL, so on 2 CPU cores the meta-training (one core in
    effect: its ops are small and sequential) and the baselines (the other) run side by side
    (measured: two independent programs 0.10 s threaded vs 0.20 s in sequence)."""

    def __init__(self, env_names: Sequence[str], initial_alpha, objective: Objective, config: MetaTestConfig,
                 seed: int, methods: Sequence[str] = METHODS, log=print, backends: dict | None = None,
                 groups: Sequence[Sequence[str]] = HARNESS_GROUPS):
        config.validate()
        bad = [m for m in methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown meta-test method {bad[0]!r}; expected names from {', '.join(METHODS)}")
        self.groups = harness_groups(methods, groups)  # refuses bad groups before anything is trained
        self.env_names, self.initial_alpha, self.objective = list(env_names), initial_alpha, objective
        self.config, self.seed, self.methods, self.log = config, seed, tuple(methods), log
        self.backends = backends or {}
        self._envs = {}        # env name -> (env, forward metric, keys, tasks)
        self._results = {name: {} for name in self.env_names}
        self._programs = {}    # (env, terms, methods per program) -> Future of its compiled program
        self._lock = threading.Lock()
        self._thread, self._error = None, None
        self.background = False  # whether start() put the baselines on a background thread

    # ---- the pieces ----

    def _env(self, name: str):
        with self._lock:
            if name not in self._envs:
                env = envs_lib.make(name, backend=self.backends.get(name))
                keys = jax.random.split(jax.random.PRNGKey(self.seed + 1000), self.config.sizes.num_seeds)
                tasks = jax.vmap(lambda k: env.sample_task(jax.random.fold_in(k, 7), self.config.split))(keys)
                self._envs[name] = (env, forward_metric(env), keys, tasks)
            return self._envs[name]

    def _program(self, name: str, group: Sequence[str], learned_alpha=None):
        """(compiled, args) of ``group``'s harness program on env ``name``; one compile per
        (env, terms, len(group)), shared by the groups that match (``learned_alpha``: the
        objective ``learned`` trains by; None: the initial one, for compiling only)."""
        env, fwd, keys, tasks = self._env(name)
        alpha = self.initial_alpha if learned_alpha is None else learned_alpha
        fn, args = harness_program(env, self.config, self.objective, group, alpha, self.initial_alpha,
                                   keys, tasks, fwd)
        key = (name, group_terms(group), len(group))
        with self._lock:  # the first caller compiles; a second one waits for it, never compiles twice
            future, mine = self._programs.get(key), False
            if future is None:
                future, mine = self._programs.setdefault(key, concurrent.futures.Future()), True
        if mine:
            try:
                future.set_result(jax.jit(fn).lower(*args).compile())
            except BaseException as e:  # noqa: BLE001 - raised to every caller of this program
                future.set_exception(e)
        return future.result(), args

    def _run_group(self, name: str, group: Sequence[str], learned_alpha=None):
        t0 = time.time()
        compiled, args = self._program(name, group, learned_alpha)
        _, metrics = compiled(*args)
        n = self.config.sizes.num_seeds
        out = {m: _summ(jax.tree_util.tree_map(lambda x: x[i * n:(i + 1) * n], metrics))
               for i, m in enumerate(group)}
        self.log(f"meta-test {name}: TD3 harness ({', '.join(group)}) [{time.time() - t0:.0f}s]")
        return out

    def _floors(self, name: str):
        env, fwd, keys, tasks = self._env(name)
        td3_config, eval_envs = self.config.td3, self.config.sizes.eval_envs

        def floors(key, task):
            """no_update: the harness's fresh agents (same init and eval keys), never updated."""
            agent = TD3Agent(env, td3_config)
            k_init, k_eval = jax.random.split(key)
            s0 = agent.init(k_init, task)
            zero = evaluation.first_episode_returns(env, evaluation.zero_action(env), task, k_eval,
                                                    eval_envs, fwd)
            return {"no_update": frozen_objective.deployed_returns(agent, s0, task, k_eval, eval_envs, fwd),
                    "zero_action": _prefix(zero)}

        t0 = time.time()
        fl = jax.jit(jax.vmap(floors))(keys, tasks)
        self.log(f"meta-test {name}: do-nothing floors [{time.time() - t0:.0f}s]")
        return {f: _summ(fl[f]) for f in FLOORS}

    def _ppo(self, name: str):
        env, fwd, keys, tasks = self._env(name)
        t0 = time.time()
        prog = _ppo_program(env, self.config.ppo_config, self.config.sizes.eval_envs, fwd)
        metrics = jax.jit(jax.vmap(prog))(keys, tasks)
        self.log(f"meta-test {name}: ppo [{time.time() - t0:.0f}s]")
        return {"ppo": _summ(metrics)}

    def _baselines(self):
        """Everything but ``learned``'s groups, env by env (its program compiled first)."""
        for name in self.env_names:
            learned_groups = [g for g in self.groups if "learned" in g]
            for g in learned_groups:
                self._program(name, g)
            parts = [self._floors(name)]
            parts += [self._run_group(name, g) for g in self.groups if "learned" not in g]
            if "ppo" in self.methods:
                parts.append(self._ppo(name))
            for part in parts:
                with self._lock:
                    self._results[name].update(part)

    @staticmethod
    def background_running() -> bool:
        """Whether a ``start(background=True)`` thread of this process is still training."""
        return any(t.name == "meta-test-baselines" and t.is_alive() for t in threading.enumerate())

    def _guarded_baselines(self):
        try:
            self._baselines()
        except BaseException as e:  # noqa: BLE001 - re-raised by finish() on the caller's thread
            self._error = e

    # ---- the two parts ----

    def start(self, background: bool = False) -> "MetaTest":
        """Trains the methods that do not read the learned objective (see the class docstring)."""
        if self._thread is not None:
            raise RuntimeError("MetaTest.start() was already called")
        self.background = background
        if background:
            self._thread = threading.Thread(target=self._guarded_baselines, name="meta-test-baselines",
                                            daemon=True)
            self._thread.start()
        else:
            self._thread = threading.current_thread()
            self._baselines()
        return self

    def finish(self, learned_alpha) -> dict:
        """Trains ``learned`` (alpha = ``learned_alpha``) on every test env, waits for ``start``'s
        methods; returns {env: {method: entry}} (``meta_test``'s)."""
        if self._thread is None:
            self.start()
        for name in self.env_names:
            for g in self.groups:
                if "learned" in g:
                    part = self._run_group(name, g, learned_alpha)
                    with self._lock:
                        self._results[name].update(part)
        if self._thread is not threading.current_thread():
            self._thread.join()
        if self._error is not None:
            raise self._error
        out = {}
        methods = self.methods
        order = [*FLOORS, *(m for m in methods if m != "ppo"), *(["ppo"] if "ppo" in methods else [])]
        for name in self.env_names:
            res = {m: self._results[name][m] for m in order}
            for m in [*methods, *FLOORS]:
                fwd_txt = (f", forward {res[m]['forward_return']:.2f}" if "forward_return" in res[m] else "")
                self.log(f"meta-test {name} {m:>12s}: eval return {res[m]['return']:.2f}{fwd_txt} "
                         f"(seeds {np.round(res[m]['returns'], 2).tolist()})")
            out[name] = res
        return out


def meta_test(env_names: Sequence[str], learned_alpha, initial_alpha, objective: Objective,
              config: MetaTestConfig, seed: int, methods: Sequence[str] = METHODS, log=print,
              backends: dict | None = None, groups: Sequence[Sequence[str]] = HARNESS_GROUPS) -> dict:
    """Trains ``config.sizes.num_seeds`` fresh agents per (env, method) on tasks of
    ``config.split``; every method sees the same seeds and tasks. Returns {env: {method: entry}}
    (metarl.runs.meta_test_schema's schema) for the methods and the FLOORS (return(s): the deployed policy
    after ``total_steps`` env steps; forward_return(s) on locomotion bodies; curve: training-episode
    returns per chunk, for the methods). ``backends``: {env: brax backend}; envs not in it use the
    registry's default. ``groups``: the TD3-harness methods' programs (``harness_groups``; each
    logged with its time; groups of the same terms and size share one compile). All in sequence on
    the calling thread: ``MetaTest`` runs the baselines beside meta-training instead."""
    return MetaTest(env_names, initial_alpha, objective, config, seed, methods, log, backends,
                    groups).start().finish(learned_alpha)


EVALUATION = ("deployed policy, first episode per eval env: TD3-harness policies deterministic (no "
              "exploration noise), PPO sampled from its Gaussian")


def meta_test_summary(results: dict, train_names, test_names, sizes: MetaTestSizes, methods) -> dict:
    """``summary.json["meta_test"]`` of a MetaGenRL run (either outer loop): the first test env's
    ``<method>_return`` flat, every env's returns under ``per_env``; ``sizes`` the preset's test budget."""
    first = results[test_names[0]]
    return {
        "env": test_names[0], "test_env_steps": sizes.total_steps, "seeds": sizes.num_seeds,
        "eval_envs": sizes.eval_envs, "methods": list(methods), "evaluation": EVALUATION,
        "seen_envs": [e for e in test_names if e in train_names],
        "unseen_envs": [e for e in test_names if e not in train_names],
        **{f"{m}_return": (first[m]["return"] if m in first else None) for m in (*METHODS, *FLOORS)},
        "per_env": per_env_summary(results),
    }


def per_env_summary(results: dict) -> dict:
    """{env: {'<method>_return': ..., '<method>_forward_return': ... (locomotion)}} for summary.json."""
    per = {}
    for env, res in results.items():
        d = {}
        for m, r in res.items():
            d[f"{m}_return"] = r["return"]
            if "forward_return" in r:
                d[f"{m}_forward_return"] = r["forward_return"]
        per[env] = d
    return per


def results_table(results: dict, seen: Sequence[str] = ()) -> str:
    """The printout: one line per (env, method), return and forward return, seen/unseen marked."""
    lines = []
    for env, res in results.items():
        lines.append(f"meta-test {env} ({'seen in meta-training' if env in seen else 'unseen'}):")
        for m, r in res.items():
            fwd = f"  forward {r['forward_return']:9.2f}" if "forward_return" in r else ""
            lines.append(f"  {m:>12s}  return {r['return']:9.2f}{fwd}")
    return "\n".join(lines)
