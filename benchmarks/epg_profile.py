"""Where one EPG generation's time goes: goal_point, experiments/epg_point.py's ``cpu`` preset.

One generation trains P x T fresh agents (population x tasks_per_member), vmapped in one compiled
call: a lifetime of L env steps (an update every M steps: a rollout of M steps into the N-row buffer,
then minibatch Adam steps) and evaluation episodes at the end. This script builds, with the
project's own code paths (``make_lifetime`` and objectives from ``metarl.objectives.registry``), the
same P x T agents' lifetimes with one piece added at a time, and times them side by side:

- ``rollout``: env + policy sampling, normalisers and buffer, no gradient steps
  (``make_lifetime(..., train=False)``);
- ``+ PPO``: + the agent's PPO term (GAE, value and policy gradients, Adam), with a null objective
  (L = 0, the PPO term at every update: the residual form's PPO part alone);
- ``+ L_phi exact``: the cpu preset's objective, residual L_PPO + L_phi with the exact context
  gradient (the policy on all N buffer rows at every minibatch step);
- ``+ L_phi stop``: the same with ``--no-context-gradient`` (context once per update, held);
- ``evaluation``: the eval_envs sampled-action and mean-action episodes after the lifetime (a
  separate cost: ``learner.evaluate``);
- ``generation``: one whole ES generation (ask, the P x T lifetimes with evaluation, tell), as
  ``experiments.epg_point --preset cpu`` runs it, as the cross-check of the sum;
- ``..., nn.Conv (before)`` (unless ``--no-before``): the exact lifetimes and the generation with
  L_phi's convolutions as ``nn.Conv`` (``EPGLoss(conv_impl="xla")``, the path before the im2col
  ``StridedConv1D``; same parameters), side by side: the before/after of that change.

What the profile found (RESULTS.md, section ``epg_profile``): the learned loss with the exact context
gradient is nearly the whole generation; with ``nn.Conv`` most of it was XLA's grouped convolutions
(ES vmaps members' kernels: feature_group_count = members) and their lhs-dilated transposes. With
matmuls the exact minibatch step is bound by the policy's forward/backward on all N rows (a
microbenchmark, 32 agents: 13.8 of 15.9 ms per step), which the exact gradient needs.

Each program is compiled once (compile time reported apart); the programs are then timed in
alternating rounds, best round kept, so that load from other jobs hits them alike. The share of a
piece is the difference of consecutive variants over the generation's time (exact context gradient,
with evaluation). env-steps/s counts lifetime steps (evaluation: its episode steps).

    python -m benchmarks.epg_profile --quick   # lifetime 1024, population 4 x 2 tasks (minutes on 2 cores)
    python -m benchmarks.epg_profile           # the cpu preset's sizes: lifetime 8192, 16 x 2
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from typing import ClassVar

import jax
import jax.numpy as jnp

from benchmarks.common import compile_jit, markdown_table, section_preamble, write_section
from metarl import envs
from metarl.algorithms.epg.algorithm import EPG
from metarl.inner.lifetime import learn
from metarl.inner.on_policy_agent import make_lifetime
from metarl.objectives import registry
from metarl.objectives.on_policy import PPOMixing

QUICK = dict(lifetime=1024, population=4)


@dataclasses.dataclass(frozen=True)
class NullObjective(PPOMixing):
    """L = 0 with the PPO term at every update: the agent's PPO update alone (profiling)."""

    ppo_always: ClassVar[bool] = True
    value_always: ClassVar[bool] = False

    def init(self, key, obs_size, act_size):
        return {"unused": jnp.zeros(())}

    def prepare(self, obj_params, policy_params, batch, actor):
        return None

    def minibatch_loss(self, obj_params, policy_params, inputs, idx, actor):
        return jnp.zeros(()), None


def preset_config(quick: bool, lifetime: int | None, population: int | None):
    from experiments.epg_point import PRESETS

    cfg = PRESETS["cpu"].epg
    life = dataclasses.replace(cfg.lifetime, lifetime_steps=lifetime or (QUICK["lifetime"] if quick
                                                                         else cfg.lifetime.lifetime_steps))
    es = dataclasses.replace(cfg.es, population_size=population or (QUICK["population"] if quick
                                                                     else cfg.es.population_size))
    return dataclasses.replace(cfg, lifetime=life, es=es)


def lifetimes_program(learner, num_updates: int, evaluate: bool):
    """f(obj_params (P, ...), tasks (T, ...), keys (T, 2)) -> a scalar depending on every agent:
    the P x T agents' updates (``learn`` over ``learner.update``, as ``lifetime`` runs them), or with
    ``evaluate`` only their evaluation episodes (fresh agents: the cost does not depend on them)."""

    def one(obj_params, task, key):
        k_init, k_updates, k_eval = jax.random.split(key, 3)
        agent = learner.init(k_init, task)
        if evaluate:
            sampled, mean_action = learner.evaluate(agent, task, k_eval)
            return sampled + mean_action
        agent, curve = learn(lambda a, k: learner.update(a, k, obj_params, jnp.float32(1.0)), agent,
                             num_updates, k_updates)
        leaves = jax.tree_util.tree_leaves((agent.policy, agent.value, agent.obs_stats.mean))
        return jnp.nansum(curve) + sum(x.sum() for x in leaves)

    def f(obj_params, tasks, keys):
        per_member = jax.vmap(one, in_axes=(None, 0, 0))
        return jax.vmap(per_member, in_axes=(0, None, None))(obj_params, tasks, keys).sum()

    return f


def population(obj, env, P, key):
    """P members around phi_0 (noise 0.01), as ES's ask draws them."""
    phi = obj.init(jax.random.PRNGKey(0), env.observation_size, env.action_size)
    leaves, tree = jax.tree_util.tree_flatten(phi)
    ks = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [x + 0.01 * jax.random.normal(k, (P, *x.shape))
                                               for x, k in zip(leaves, ks)])


def xla_conv(obj):
    """The same objective with L_phi's convolutions as nn.Conv (the path before StridedConv1D)."""
    return dataclasses.replace(obj, module=dataclasses.replace(obj.module, conv_impl="xla"))


def build(cfg, env, before: bool):
    """{name: (compile s, compiled fn, args, env steps per call)}; ``before``: also the exact
    lifetimes and the generation with nn.Conv convolutions (the former path), side by side."""
    life, P, T = cfg.lifetime, cfg.es.population_size, cfg.tasks_per_member
    epg = EPG(env, cfg)
    tasks = epg.sample_tasks(jax.random.PRNGKey(1), T)
    keys = jax.random.split(jax.random.PRNGKey(2), T)
    residual = registry.make(cfg.objective, life, context_gradient=True)
    stop = registry.make(cfg.objective, life, context_gradient=False)
    null = NullObjective()
    variants = {"rollout": (residual, dict(train=False), False),
                "+ PPO": (null, {}, False),
                "+ L_phi exact": (residual, {}, False),
                "+ L_phi stop": (stop, {}, False),
                "evaluation": (residual, {}, True)}
    if before:
        variants["+ L_phi exact, nn.Conv (before)"] = (xla_conv(residual), {}, False)
    lifetime_steps = P * T * life.lifetime_steps
    eval_steps = P * T * 2 * life.eval_envs * env.episode_length  # sampled + mean-action episodes
    progs = {}
    for name, (obj, kw, ev) in variants.items():
        learner = make_lifetime(env, life, obj, **kw)
        args = (population(obj, env, P, jax.random.PRNGKey(3)), tasks, keys)
        c_s, f = compile_jit(lifetimes_program(learner, life.num_updates, ev), *args)
        progs[name] = (c_s, f, args, eval_steps if ev else lifetime_steps)
        print(f"compiled {name}: {c_s:.1f} s", flush=True)
    gens = {"generation": epg}
    if before:
        gens["generation, nn.Conv (before)"] = EPG(env, cfg, objective=xla_conv(epg.objective))
    for name, e in gens.items():
        es, params, state, gen = e.make_es(jax.random.PRNGKey(0))
        c_s, g = compile_jit(gen, state, jax.random.PRNGKey(1))
        out_state = jax.eval_shape(gen, state, jax.random.PRNGKey(1))[0]
        state = jax.tree_util.tree_map(lambda x, o: jnp.asarray(x, o.dtype), state, out_state)
        progs[name] = (c_s, lambda st, k, g=g: g(st, k)[1], (state, jax.random.PRNGKey(5)),
                       lifetime_steps + P * T * life.eval_envs * env.episode_length)
        print(f"compiled {name}: {c_s:.1f} s", flush=True)
    return progs


def alternate(progs: dict, rounds: int) -> dict:
    """Best seconds per call of each program over ``rounds`` rounds, programs alternated (one
    warm-up call each first)."""
    for _, f, args, _ in progs.values():
        jax.block_until_ready(f(*args))
    best = {k: float("inf") for k in progs}
    for r in range(rounds):
        for k, (_, f, args, _) in progs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            best[k] = min(best[k], time.perf_counter() - t0)
        print(f"round {r}: " + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()), flush=True)
    return best


def report(cfg, env, progs, best, rounds, quick) -> tuple[str, list[str]]:
    life, P, T = cfg.lifetime, cfg.es.population_size, cfg.tasks_per_member
    total = best["+ L_phi exact"] + best["evaluation"]
    prev = {"rollout": 0.0, "+ PPO": best["rollout"], "+ L_phi exact": best["+ PPO"],
            "+ L_phi stop": best["+ PPO"], "evaluation": 0.0, "generation": None,
            "+ L_phi exact, nn.Conv (before)": best["+ PPO"], "generation, nn.Conv (before)": None}
    rows = []
    for k, (c_s, _, _, steps) in progs.items():
        t = best[k]
        piece = None if prev[k] is None else t - prev[k]
        share = ("" if piece is None or k in ("+ L_phi stop", "+ L_phi exact, nn.Conv (before)")
                 else f"{100 * piece / total:.0f} %")
        rows.append([k, f"{t:.3f}", "" if piece is None else f"{piece:.3f}", share,
                     f"{steps / t:,.0f}", f"{c_s:.1f}"])
    ratios = [f"L_phi exact / PPO update: {(best['+ L_phi exact'] - best['rollout']) / (best['+ PPO'] - best['rollout']):.2f}",
              f"lifetime exact / stop: {best['+ L_phi exact'] / best['+ L_phi stop']:.2f}",
              f"generation / (exact + evaluation): {best['generation'] / total:.2f} (1 up to the ES "
              "step; far from 1 reads the load of other jobs on the machine: trust the side-by-side "
              "ratios, not the absolute figures)",
              f"generation env-steps/s: {progs['generation'][3] / best['generation']:,.0f}"]
    if "generation, nn.Conv (before)" in best:
        b = "generation, nn.Conv (before)"
        ratios += [f"speed-up of the exact lifetimes, StridedConv1D over nn.Conv: "
                   f"{best['+ L_phi exact, nn.Conv (before)'] / best['+ L_phi exact']:.2f}x",
                   f"speed-up of the generation: {best[b] / best['generation']:.2f}x "
                   f"({progs[b][3] / best[b]:,.0f} -> {progs['generation'][3] / best['generation']:,.0f} env-steps/s)"]
    body = section_preamble("EPG generation profile: goal_point cpu preset (`epg_profile.py`)") + (
        f"- sizes: {'quick' if quick else 'the cpu preset'}: population {P} x {T} tasks = {P * T} agents, "
        f"lifetime {life.lifetime_steps} steps (M = {life.update_period}, N = {life.buffer_size}, "
        f"minibatch {life.minibatch_size}, {life.num_updates} updates), eval_envs {life.eval_envs} x "
        f"{env.episode_length}-step episodes, objective {cfg.objective}\n"
        f"- timing: best of {rounds} rounds, programs alternated; each program compiled once (compile "
        "column). Each row adds one piece to the one above (`+ L_phi stop` replaces `+ L_phi exact`); "
        "piece = row - the row it adds to; share = piece / (`+ L_phi exact` + `evaluation`), the "
        "generation's lifetimes and evaluation; env-steps/s: lifetime steps (evaluation: its "
        "sampled- and mean-action episode steps; generation: lifetime + sampled-action eval steps as "
        "inner_loop_overhead counts them).\n\n"
        + markdown_table(["program", "s / call", "piece (s)", "share", "env-steps/s", "compile (s)"], rows)
        + "\n\n" + "\n".join(f"- {r}" for r in ratios) + "\n")
    return body, ratios


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help=f"lifetime {QUICK['lifetime']}, population {QUICK['population']} (x 2 tasks)")
    ap.add_argument("--lifetime", type=int, default=None)
    ap.add_argument("--population", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-before", action="store_true",
                    help="skip the nn.Conv rows (L_phi's former convolutions, timed side by side)")
    ap.add_argument("--no-write", action="store_true", help="print only (RESULTS.md untouched)")
    args = ap.parse_args()
    cfg = preset_config(args.quick, args.lifetime, args.population).validate()
    env = envs.make("goal_point")
    progs = build(cfg, env, before=not args.no_before)
    best = alternate(progs, args.rounds)
    body, ratios = report(cfg, env, progs, best, args.rounds, args.quick)
    print(body)
    if not args.no_write:
        write_section("epg_profile", body)


if __name__ == "__main__":
    main()
