"""Our PPO and TD3 against their peers in rejax, side by side in one process, on brax envs.

- PPO: ``metarl.baselines.ppo.make_train`` vs ``rejax.PPO`` on brax reacher (``--full``: and hopper).
  brax's own PPO trainer is not run: it calls ``jax.device_put_replicated``, which jax 0.10 removed
  (its last figure, on jax 0.9.2, stays in RESULTS.md's ``ppo_vs_brax`` section).
- TD3: the ``TD3Agent`` lifetime (metarl/inner/td3.py, the code path of MetaGenRL, as
  ``metarl.inner.frozen_objective.make_train`` runs it minus its metrics) with the default DDPG
  policy loss and B x 1 transitions (seq_len=1) vs ``rejax.TD3`` on brax reacher, 1 env, one critic
  update per env step, batch 100, 64-64 networks without layer norm (as rejax's). A diagnostic third
  trainer, ``ours, layer norm``, is the same agent with MetaGenRL's layer-normed networks: what they
  cost.

Each library trains with the settings of the parity table (``parity_rows``): what can be matched is,
what cannot is listed there. Timing: each training function is jit-compiled once (warm-up, reported
as compile), then run once per seed in alternating rounds (ours, peer, ours, peer, ...) with
``block_until_ready``; no evaluation runs inside the timed call (rejax's eval callback is a no-op,
and our train's evaluation output is dropped, so XLA removes it). Evaluation runs afterwards, the
same for both: the deterministic policy on ``eval_envs`` fresh episodes of the same metarl env from
the same reset keys.

    python -m benchmarks.peers --quick     # CPU sizes, 2 seeds
    python -m benchmarks.peers --full      # GPU/TPU sizes, 3 seeds

The script needs rejax (``pip install -e '.[bench]'``); it exits 2 without it. Target: ours/peer
steady wall <= 0.8 for PPO and TD3, at an evaluation return not worse (mean over seeds).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from metarl.networks import DeterministicPolicy, TwinCritic

try:
    from benchmarks import common
except ImportError:  # run as a plain script from benchmarks/
    import common  # type: ignore

SECTION = "peers"
BRAX_PPO_REASON = ("brax's own PPO trainer calls jax.device_put_replicated, which jax 0.10 removed; "
                   f"this is jax {jax.__version__}")

PPO_QUICK = dict(num_envs=128, unroll_length=16, num_minibatches=4, update_epochs=4,
                 learning_rate=3e-4, total_steps=128 * 16 * 120)
PPO_FULL = dict(num_envs=2048, unroll_length=16, num_minibatches=32, update_epochs=4,
                learning_rate=3e-4, total_steps=2048 * 16 * 300)
TD3_QUICK = dict(total_steps=20_000, random_steps=1_000, batch_size=100, hidden=(64, 64))
TD3_FULL = dict(total_steps=50_000, random_steps=5_000, batch_size=100, hidden=(64, 64))
QUICK = dict(seeds=(0, 1), ppo_envs=("reacher",), eval_envs=128, ppo=PPO_QUICK, td3=TD3_QUICK)
FULL = dict(seeds=(0, 1, 2), ppo_envs=("reacher", "hopper"), eval_envs=256, ppo=PPO_FULL,
            td3=TD3_FULL)
BACKEND = "spring"
EPISODE_LENGTH = {"reacher": 50, "hopper": 1000}


def require_rejax():
    """Imports rejax (the optional ``bench`` extra) or exits 2 with one line."""
    try:
        import rejax
    except ImportError:
        print("benchmarks.peers needs rejax: pip install -e '.[bench]'", file=sys.stderr)
        sys.exit(2)
    return rejax


@dataclasses.dataclass
class Trainer:
    """One library's training run: ``train(key) -> policy`` (compiled) and ``act(policy, obs)``."""
    label: str
    train: Callable
    act: Callable
    compile_s: float


def compiled(label: str, train: Callable, act: Callable) -> Trainer:
    compile_s, fn = common.compile_jit(train, jax.random.PRNGKey(0))
    return Trainer(label, fn, jax.jit(act), compile_s)


# ---- our trainers ---------------------------------------------------------------------------------
def make_env(env_name: str):
    import metarl.envs as menvs
    return menvs.make(env_name, backend=BACKEND, episode_length=EPISODE_LENGTH[env_name])


def ours_ppo(env_name: str, p: dict) -> Trainer:
    from brax.training.acme import running_statistics
    from metarl.baselines.ppo import PPOConfig, make_train
    from metarl.networks import GaussianPolicy

    env = make_env(env_name)
    cfg = PPOConfig(total_steps=p["total_steps"], num_envs=p["num_envs"],
                    unroll_length=p["unroll_length"], num_minibatches=p["num_minibatches"],
                    update_epochs=p["update_epochs"], learning_rate=p["learning_rate"], gamma=0.99,
                    gae_lambda=0.95, clip_eps=0.2, entropy_coef=0.0, value_coef=0.5,
                    max_grad_norm=0.5, reward_scale=1.0, hidden=(64, 64),
                    normalize_observations=True, eval_envs=1)
    train, task = make_train(env, cfg), env.sample_task(jax.random.PRNGKey(0), "train")
    policy = GaussianPolicy(env.action_size, cfg.hidden)

    def run(key):
        state, _ = train(key, task)  # metrics (and the evaluation in them) unused: removed by XLA
        return state.params["policy"], state.obs_stats

    def act(pol, obs):
        params, stats = pol
        return jnp.clip(policy.apply(params, running_statistics.normalize(obs, stats))[0], -1, 1)

    return compiled("ours", run, act)


def ours_td3(env_name: str, t: dict, layer_norm: bool = False) -> Trainer:
    """TD3Agent lifetime: init, then total_steps / 2 blocks of (2 x (env step + critic update),
    DDPG policy update + Polyak), as ``metarl.inner.frozen_objective.make_train`` without its metrics."""
    from metarl.inner.td3 import TD3Agent

    env = make_env(env_name)
    agent, task = TD3Agent(env, td3_config(t)), env.sample_task(jax.random.PRNGKey(0))
    # standard TD3's networks (no layer norm, as rejax's); layer_norm=True: MetaGenRL's networks
    agent.policy_net = DeterministicPolicy(env.action_size, tuple(t["hidden"]), layer_norm=layer_norm)
    agent.critic_net = TwinCritic(tuple(t["hidden"]), layer_norm=layer_norm)
    blocks = t["total_steps"] // agent.cfg.policy_delay

    def run(key):
        s = agent.init(key, task)
        return jax.lax.scan(lambda s, _: (agent.block(s), None), s, None, length=blocks)[0].policy

    return compiled("ours, layer norm" if layer_norm else "ours", run, agent.pi)


def td3_config(t: dict):
    from metarl.inner.td3 import TD3Config
    return TD3Config(hidden=tuple(t["hidden"]), gamma=0.99, polyak=0.995, policy_lr=1e-3,
                     critic_lr=1e-3, max_grad_norm=1.0, target_noise=0.2, noise_clip=0.5,
                     expl_noise=0.1, policy_delay=2, random_steps=t["random_steps"],
                     replay_size=t["total_steps"], batch_size=t["batch_size"], seq_len=1)


# ---- rejax trainers -------------------------------------------------------------------------------
def rejax_common(env_name: str, total_steps: int) -> dict:
    # One training chunk of all steps, no evaluation inside (see no_eval below).
    return dict(env=f"brax/{env_name}",
                env_params=dict(backend=BACKEND, episode_length=EPISODE_LENGTH[env_name]),
                total_timesteps=total_steps, eval_freq=total_steps, skip_initial_evaluation=True)


def no_eval(algo, ts, rng):
    return jnp.zeros(())


def rejax_ppo(rejax, env_name: str, p: dict) -> Trainer:
    algo = rejax.PPO.create(
        **rejax_common(env_name, p["total_steps"]), num_envs=p["num_envs"],
        num_steps=p["unroll_length"], num_minibatches=p["num_minibatches"],
        num_epochs=p["update_epochs"], learning_rate=p["learning_rate"], gamma=0.99,
        gae_lambda=0.95, clip_eps=0.2, ent_coef=0.0, vf_coef=1.0, max_grad_norm=0.5,
        normalize_observations=True, normalize_rewards=False,
        agent_kwargs=dict(activation="tanh", hidden_layer_sizes=(64, 64)))
    algo = algo.replace(eval_callback=no_eval)

    def run(key):
        ts, _ = algo.train(key)
        return ts.actor_ts.params, ts.obs_rms_state

    def mean_action(module, obs):
        return module.action_mean(module.features(obs))

    def act(pol, obs):
        params, rms = pol
        return jnp.clip(algo.actor.apply(params, algo.normalize_obs(rms, obs), method=mean_action),
                        -1, 1)

    return compiled("rejax", run, act)


def rejax_td3(rejax, env_name: str, t: dict) -> Trainer:
    algo = rejax.TD3.create(
        **rejax_common(env_name, t["total_steps"]), num_envs=1, learning_rate=1e-3, gamma=0.99,
        max_grad_norm=1.0, buffer_size=t["total_steps"], fill_buffer=t["random_steps"],
        batch_size=t["batch_size"], num_epochs=1, policy_delay=2, exploration_noise=0.1,
        target_noise=0.2, target_noise_clip=0.5, polyak=0.995, target_update_freq=1,
        actor_kwargs=dict(activation="relu"), critic_kwargs=dict(activation="relu"))
    algo = algo.replace(eval_callback=no_eval)
    return compiled("rejax", lambda key: algo.train(key)[0].actor_ts.params,
                    lambda params, obs: algo.actor.apply(params, obs))


# ---- evaluation and rounds ------------------------------------------------------------------------
def make_evaluator(env_name: str, num_envs: int) -> Callable:
    """evaluate(trainer, policy, key) -> mean return of one deterministic episode per env.

    A Python loop over the jitted, vmapped env step, so the physics compiles once for all trainers.
    """
    from metarl.envs.core import repeat_task

    env = make_env(env_name)
    tasks = repeat_task(env.sample_task(jax.random.PRNGKey(0)), num_envs)
    reset, step = jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(env.step))

    def evaluate(trainer: Trainer, policy, key) -> float:
        state = reset(jax.random.split(key, num_envs), tasks)
        alive, total = jnp.ones(num_envs), jnp.zeros(num_envs)
        for _ in range(env.episode_length):
            state = step(state, trainer.act(policy, state.obs))
            total, alive = total + alive * state.reward, alive * (1.0 - state.done)
        return float(total.mean())

    return evaluate


def rounds(trainers: list[Trainer], seeds, evaluate: Callable, tag: str) -> dict:
    """Per trainer label: steady wall (s) and eval return per seed; trainers alternate every seed."""
    out = {t.label: dict(wall=[], ret=[], compile_s=t.compile_s) for t in trainers}
    for seed in seeds:
        for t in trainers:
            wall, policy = common.timed(lambda: t.train(jax.random.PRNGKey(seed)))
            ret = evaluate(t, policy, jax.random.PRNGKey(10_000 + seed))
            out[t.label]["wall"].append(wall)
            out[t.label]["ret"].append(ret)
            print(f"{tag} seed {seed} {t.label}: steady {wall:7.2f}s  eval return {ret:9.2f}",
                  flush=True)
    return out


def ratio(res: dict, label: str = "ours") -> float:
    """Mean steady wall of ``label`` over rejax's."""
    return float(np.mean(res[label]["wall"]) / np.mean(res["rejax"]["wall"]))


# ---- reporting ------------------------------------------------------------------------------------
def parity_rows(algo: str, c: dict, env_name: str = "reacher") -> list[list[str]]:
    """(setting, ours, rejax) rows: what each library's run does, matched or not."""
    ep = EPISODE_LENGTH[env_name]
    env = [["env", f"brax {env_name} via metarl.envs (time limit, auto-reset)",
            f"brax {env_name} via rejax brax2gymnax (brax EpisodeWrapper + AutoResetWrapper, "
            "then gymnax's auto-reset)"],
           ["backend, episode length", f"{BACKEND}, {ep}", f"{BACKEND}, {ep}"]]
    reset = ["episode reset", "a fresh random initial state (reacher: a new target)", "same"]
    extra = ["extra work per env step", "a brax reset every step, selected on done",
             "a brax reset every step (gymnax's step), selected on done, after brax's "
             "AutoResetWrapper's own select of the first state"]
    limit = ["time-limit handling", "truncation bootstraps from V/Q of the episode's true last "
             "state (final_obs)", "time limit = terminal (no bootstrap)"]
    det = "mean action clipped to [-1, 1]" if algo == "ppo" else "pi(s)"
    evaluation = ["evaluation (same for both, untimed)",
                  f"deterministic ({det}), {c['eval_envs']} fresh episodes from the same reset "
                  "keys on the metarl env", "same"]
    timed = ["timed", "compiled train(key) after a warm-up compile; evaluation output dropped "
             "(XLA removes it)", "compiled algo.train(key); eval callback a no-op, no initial "
             "evaluation"]
    if algo == "ppo":
        p = c["ppo"]
        mb = p["num_envs"] * p["unroll_length"] // p["num_minibatches"]
        batch = (f"unroll {p['unroll_length']} x {p['num_envs']} envs; {p['num_minibatches']} "
                 f"minibatches of {mb} x {p['update_epochs']} epochs")
        return env + [
            ["envs", str(p["num_envs"]), str(p["num_envs"])],
            ["env steps", f"{p['total_steps']:,}", f"{p['total_steps']:,}"],
            ["batch", batch, batch],
            ["networks", "policy 64-64 + state-independent log-std (init 0); value 64-64",
             "same"],
            ["activations", "tanh", "tanh"],
            ["layer norm", "no", "no"],
            ["init", "lecun normal; policy mean output std 0.01", "lecun normal (flax default)"],
            ["optimiser", f"one Adam {p['learning_rate']} on policy + value loss; global-norm "
             "clip 0.5", f"two Adams {p['learning_rate']} (actor, then critic, per minibatch); "
             "elementwise clip 0.5 (no global-norm option)"],
            ["losses", "clipped surrogate (0.2), 0.5 x value MSE, no entropy; GAE 0.99 / 0.95, "
             "advantages normalised per minibatch", "same, but value loss clipped at 0.2 (always on)"],
            ["actions to env", "unclipped Gaussian sample", "sample clipped to [-1, 1]"],
            ["obs normalisation", "running mean/std, updated once per update",
             "running mean/std, updated every env step"],
            limit, reset, extra, evaluation, timed]
    t = c["td3"]
    return env + [
        ["envs", "1", "1"],
        ["env steps", f"{t['total_steps']:,}; uniform random actions for the first "
         f"{t['random_steps']:,}", "same (fill_buffer)"],
        ["updates", "1 critic update per env step from the first step; policy + Polyak (0.995) "
         "every 2", "1 critic update per env step after fill_buffer (none before); policy every 2 "
         "after it, Polyak (0.995) every 2"],
        ["batch", f"{t['batch_size']} x 1 transitions (seq_len=1), uniform with replacement; "
         "a fresh batch for the policy", f"{t['batch_size']} transitions without replacement "
         "(Gumbel top-k over the whole buffer); the last critic batch for the policy"],
        ["replay capacity", f"{t['total_steps']:,}", f"{t['total_steps']:,}"],
        ["networks", "actor 64-64 -> tanh; twin critics 64-64", "same"],
        ["activations", "relu", "relu"],
        ["layer norm", "no (standard TD3; MetaGenRL's layer-normed networks: the diagnostic row)",
         "no (rejax has none)"],
        ["optimiser", "Adam 1e-3 for actor and critics; global-norm clip 1.0",
         "Adam 1e-3; elementwise clip 1.0"],
        ["losses", "critics: sum of both squared TD errors; policy: DDPG -Q1(s, pi(s))",
         "critics: 0.5 x that; policy: -mean(Q1, Q2)(s, pi(s))"],
        ["noise", "exploration 0.1, target 0.2 clipped at 0.5", "same"],
        limit, reset, extra, evaluation, timed]


def earlier_brax_figure(results_text: str) -> str:
    """The ours/brax steady-wall ratio and versions of RESULTS.md's ``ppo_vs_brax`` section."""
    sec = re.search(r"<!-- begin ppo_vs_brax -->(.*?)<!-- end ppo_vs_brax -->", results_text, re.S)
    if not sec:
        return "no earlier figure recorded"
    row = re.search(r"\| steady-state training wall[^|]*\|[^|]*\|[^|]*\| *([0-9.]+) *\|", sec[1])
    jax_v = re.search(r"jax (\S+) backend", sec[1])
    brax_v = re.search(r"brax (\S+);", sec[1])
    date = re.search(r"- date: (.*)", sec[1])
    if not row:
        return "no earlier figure recorded"
    return (f"{row[1]} (ppo_vs_brax section: jax {jax_v[1] if jax_v else '?'}, brax "
            f"{brax_v[1] if brax_v else '?'}, {date[1] if date else '?'})")


def result_rows(name: str, res: dict) -> list[list[str]]:
    """One table row per trainer of one comparison."""
    per = lambda xs, f: " / ".join(f.format(x) for x in xs)
    return [[name, label, f"{np.mean(r['wall']):.2f}", per(r["wall"], "{:.2f}"),
             f"{ratio(res, label):.2f}", f"{np.mean(r['ret']):.2f}", per(r["ret"], "{:.2f}"),
             f"{r['compile_s']:.1f}"] for label, r in res.items()]


RESULT_HEADER = ["run", "trainer", "steady wall (s), mean", "per seed", "wall / rejax",
                 "eval return, mean", "per seed", "compile (s)"]


def comparisons(rejax, c: dict, only: str | None):
    """(algo, env name, thunk building its trainers), in run order."""
    out = []
    if only in (None, "ppo"):
        out += [("ppo", e, lambda e=e: [ours_ppo(e, c["ppo"]), rejax_ppo(rejax, e, c["ppo"])])
                for e in c["ppo_envs"]]
    if only in (None, "td3"):
        out.append(("td3", "reacher", lambda: [ours_td3("reacher", c["td3"]),
                                               rejax_td3(rejax, "reacher", c["td3"]),
                                               ours_td3("reacher", c["td3"], layer_norm=True)]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU sizes (default)")
    mode.add_argument("--full", action="store_true", help="GPU/TPU sizes")
    p.add_argument("--only", choices=("ppo", "td3"), help="run one algorithm only (no RESULTS.md)")
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    rejax = require_rejax()
    c = dict(FULL if args.full else QUICK)
    t0 = time.perf_counter()

    print(common.machine_description())
    print("config:", c, flush=True)
    rows, results, evaluators = [], {}, {}
    for algo, env_name, build in comparisons(rejax, c, args.only):
        trainers = build()
        print(f"{algo} {env_name} compile: " + ", ".join(f"{t.label} {t.compile_s:.1f}s"
                                                         for t in trainers), flush=True)
        if env_name not in evaluators:
            evaluators[env_name] = make_evaluator(env_name, c["eval_envs"])
        res = rounds(trainers, c["seeds"], evaluators[env_name], f"{algo} {env_name}")
        results[(algo, env_name)] = res
        rows += result_rows(f"{algo} {env_name}", res)
    wall = time.perf_counter() - t0

    table = common.markdown_table(RESULT_HEADER, rows)
    parity = {f"{a.upper()} parity, brax reacher" + (
        "; hopper: the same with 1000-step episodes" if a == "ppo" and "hopper" in c["ppo_envs"] else ""):
        common.markdown_table(["setting", "ours (metarl)", "rejax 0.1.3"], parity_rows(a, c))
        for a in ("ppo", "td3") if args.only in (None, a)}
    for a, t in parity.items():
        print(f"\n{a}:\n{t}")
    print(f"\n{table}\n\nwall of this run: {wall:.0f} s")
    earlier = earlier_brax_figure(open(common.RESULTS_PATH).read())
    headlines = [f"peer {a} {e} metarl/rejax wall: {ratio(r):.2f}"
                 for (a, e), r in results.items() if e != "reacher"]
    if ("ppo", "reacher") in results:
        print(f"brax PPO not run: {BRAX_PPO_REASON}; earlier ours/brax steady wall {earlier}")
        headlines += [f"peer ppo metarl/rejax wall: {ratio(results[('ppo', 'reacher')]):.2f}",
                      "peer ppo metarl/brax wall: n/a"]
    if ("td3", "reacher") in results:
        headlines.append(f"peer td3 metarl/rejax wall: {ratio(results[('td3', 'reacher')]):.2f}")
    if not args.no_write and not args.only:
        settings = "; ".join(f"{k}: {v}" for k, v in c.items())
        body = (common.section_preamble("Our PPO and TD3 vs rejax (`peers.py`)")
                + f"- settings: {settings}; this run's wall {wall:.0f} s\n"
                + "- rounds alternate the trainers every seed; steady wall = one run of the compiled "
                  "training function after its warm-up compile (compile and every evaluation "
                  "excluded); eval return = the deterministic policy on the same fresh episodes "
                  "for all. `wall / rejax` < 1: ours is faster. Target: ours/rejax steady wall "
                  "<= 0.8 at an eval return not worse.\n"
                + "- TD3 `ours` is the TD3Agent with standard TD3 networks (no layer norm), matching "
                  "rejax's; `ours, layer norm` (diagnostic, not a headline) is the same agent with "
                  "MetaGenRL's layer-normed networks.\n"
                + f"- brax's own PPO: n/a ({BRAX_PPO_REASON}); the earlier ours/brax steady wall "
                  f"{earlier}.\n\n"
                + "\n".join(f"    {h}" for h in headlines) + "\n\n"
                + table + "\n\n"
                + "\n\n".join(f"{a}:\n\n{t}" for a, t in parity.items())
                + "\n")
        common.write_section(SECTION, body)
    print("\n".join(headlines))


if __name__ == "__main__":
    main()
