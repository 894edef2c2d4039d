"""Inner-loop overhead: meta-training env-steps/s over raw batched env.step steps/s.

For each environment, in one process: (a) raw env.step throughput of B = population x tasks envs
(one lax.scan of a vmap, random actions), (b) whole EPG generations (ask, P x T lifetimes with their
learning updates and evaluation, tell) on the same B agents, in each requested mode of the learned
loss's context gradient (``exact``: the paper's gradient through the buffer context, ``stop``:
``EPGConfig(context_gradient=False)``, the context computed once per update and held constant).
Then the same for the MetaGenRL population step: one meta-iteration (agents x steps_per_iteration
env steps with the TD3 updates and the meta-gradient, ``MetaTrainer.iteration``) against raw
env.step of the same number of envs. Compile times are reported separately. The modes are timed in
alternating rounds (best round kept) so that load from other jobs hits them alike.

MetaGenRL agent-step cost (one agent, one jitted lax.scan of blocks each): a MetaGenRL agent-step
(env step, critic update on B x T transitions, and per policy_delay steps a meta-gradient and a
policy update on L_alpha; the meta-gradient is summed into the scan's output so that XLA keeps it)
against (a) a standard TD3 agent-step (the same networks, one critic
update on 100 single transitions, policy update every policy_delay steps) and (b) a TD3 agent-step
on the same B x T batches; then its pieces timed in isolation (same state, each a lax.scan of
repetitions): env step, critic update, meta-gradient, policy update on L_alpha, the L_alpha network
(forward + backward) and its backward LSTM alone.

Headlines: ``inner_loop_overhead <env>: <ratio>`` (EPG, exact context gradient),
``inner_loop_overhead <env> context=stop: <ratio>``, ``inner_loop_overhead metagenrl <env>: <ratio>``
and ``metagenrl_agent_step <env>: <x> standard TD3, <y> TD3 on B x T``.
Targets (EPG): >= 0.6 on RandomReacher and >= 0.8 on GoalAnt; MetaGenRL agent-step <= 3x standard TD3.
The EPG rows go to the ``inner_loop_overhead`` section of RESULTS.md, the MetaGenRL rows to
``inner_loop_overhead_metagenrl`` (each rewritten only when measured).

    python -m benchmarks.inner_loop_overhead --quick     # CPU sizes
    python -m benchmarks.inner_loop_overhead --full      # GPU/TPU sizes
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp

from benchmarks.common import compile_jit, markdown_table, section_preamble, timed, write_section
from metarl import envs
from metarl.envs.core import repeat_task
from metarl.algorithms.epg.algorithm import EPG, EPGConfig
from metarl.inner.on_policy_agent import LifetimeConfig
from metarl.outer.es import ESConfig

QUICK = {"random_reacher": dict(population=16, tasks_per_member=2, lifetime=640, episode=50, eval_envs=2),
         "goal_ant": dict(population=8, tasks_per_member=1, lifetime=256, episode=100, eval_envs=1)}
FULL = {"random_reacher": dict(population=256, tasks_per_member=4, lifetime=8192, episode=50, eval_envs=4),
        "goal_ant": dict(population=64, tasks_per_member=4, lifetime=8192, episode=1000, eval_envs=4)}
# MetaGenRL: QUICK follows experiments/metagenrl.py's ``cpu`` preset, FULL its ``paper`` sizes
# (one env group).
def _metagenrl_sizes(preset: str) -> dict:
    from experiments.metagenrl import PRESETS

    cfg = PRESETS[preset].metagrad
    meta = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name not in ("td3", "meta_iterations")}
    return dict(td3=dataclasses.asdict(cfg.td3), meta=meta)


METAGENRL_QUICK = _metagenrl_sizes("cpu")
METAGENRL_FULL = _metagenrl_sizes("paper")
MODES = {"exact": True, "stop": False}


def raw_steps_per_s(env, B, steps, repeats):
    task = env.sample_task(jax.random.PRNGKey(0), "train")
    tasks = repeat_task(task, B)
    state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(1), B), tasks)

    def run(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (B, env.action_size), minval=-1, maxval=1)
            return jax.vmap(env.step)(s, a), None

        return jax.lax.scan(body, state, jax.random.split(key, steps))[0].reward.sum()

    c_s, f = compile_jit(run, state, jax.random.PRNGKey(2))
    t, _ = timed(lambda: f(state, jax.random.PRNGKey(3)), repeats)
    return B * steps / t, c_s


def compiled_generation(env, s, context_gradient: bool):
    """(compile s, compiled generation, initial ES state, env steps per generation)."""
    life = LifetimeConfig(lifetime_steps=s["lifetime"], eval_envs=s["eval_envs"])
    cfg = EPGConfig(life, ESConfig(population_size=s["population"], generations=100),
                    tasks_per_member=s["tasks_per_member"], context_gradient=context_gradient)
    epg = EPG(env, cfg)
    es, params, state, gen = epg.make_es(jax.random.PRNGKey(0))
    c_s, f = compile_jit(gen, state, jax.random.PRNGKey(1))
    out_state = jax.eval_shape(gen, state, jax.random.PRNGKey(1))[0]
    state = jax.tree_util.tree_map(lambda x, o: jnp.asarray(x, o.dtype), state, out_state)
    steps = s["population"] * s["tasks_per_member"] * (s["lifetime"] + s["eval_envs"] * env.episode_length)
    return c_s, f, state, steps


def time_generations(f, state, generations: int, seed: int):
    """Mean seconds per generation over ``generations`` consecutive generations."""
    t0 = time.perf_counter()
    for g in range(generations):
        state, info = f(state, jax.random.PRNGKey(seed + g))
    jax.block_until_ready(info)
    return (time.perf_counter() - t0) / generations, state


def metagenrl_rows(name: str, sizes: dict, iterations: int, rounds: int, agents: int | None = None):
    """MetaGenRL meta-iteration env-steps/s vs raw env.step of the same number of envs.

    ``agents``: agents_per_env instead of the sizes' own (the population the step is vmapped over)."""
    from metarl.algorithms.metagenrl.algorithm import MetaGenRLConfig, make_trainer
    from metarl.inner.td3 import TD3Config

    env = envs.make(name)
    meta = dict(sizes["meta"], **({"agents_per_env": agents} if agents else {}))
    cfg = MetaGenRLConfig(td3=TD3Config(**sizes["td3"]), meta_iterations=max(iterations, 1),
                          **meta).validate()
    A, K = cfg.agents_per_env, cfg.steps_per_iteration
    raw, raw_c = raw_steps_per_s(env, A, steps=K, repeats=3)
    trainer = make_trainer([env], cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    c_s, f = compile_jit(trainer.iteration, state, donate_argnums=0)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(iterations):
            state, m = f(state)
        jax.block_until_ready(m)
        best = min(best, (time.perf_counter() - t0) / iterations)
    raw = max(raw, raw_steps_per_s(env, A, steps=K, repeats=3)[0])
    sps = A * K / best
    return dict(env=name, backend=env.backend, agents=A, steps=K, raw=raw, sps=sps, ratio=sps / raw,
                it_s=best, compile_s=c_s, raw_c=raw_c, cfg=cfg)


def _scan_program(fn, n: int):
    """run(state) -> (state, acc): ``fn(state) -> (state, scalar)`` applied n times in one scan."""
    def run(s):
        def body(carry, _):
            s, acc = carry
            s, v = fn(s)
            return (s, acc + v), None
        return jax.lax.scan(body, (s, jnp.zeros(())), None, length=n)[0]
    return run


def _alternating(fs: dict, states: dict, rounds: int, per: int, all_rounds: dict | None = None) -> dict:
    """Best seconds / ``per`` of each compiled program over ``rounds`` rounds, programs alternated
    within a round so that load from other jobs hits them alike (one warm-up call each first).
    ``all_rounds``: if given, filled with {program: [seconds / per of every round]}."""
    for k, f in fs.items():
        jax.block_until_ready(f(states[k]))
    times = {k: [] for k in fs}
    for _ in range(rounds):
        for k, f in fs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(states[k]))
            times[k].append((time.perf_counter() - t0) / per)
    if all_rounds is not None:
        all_rounds.update(times)
    return {k: min(t) for k, t in times.items()}


def metagenrl_agent_step(name: str, sizes: dict, steps: int, rounds: int) -> dict:
    """Seconds per env step of one MetaGenRL agent, of a standard TD3 agent (100 single transitions)
    and of a TD3 agent on the same B x T batches, measured in this process; and the pieces of the
    MetaGenRL agent-step, each timed alone. The MetaGenRL agent-step is timed in both second-order
    modes (``MetaGradConfig.second_order``: "metagenrl_<mode>"), alternated with the TD3 programs.
    Returns {'costs': {...}, 'rounds': {...}, 'pieces': {...}, ...}."""
    from metarl.algorithms.metagenrl.algorithm import MetaGenRLConfig, make_trainer
    from metarl.inner.td3 import TD3Agent, TD3Config
    from metarl.objectives.backward_lstm import BackwardLSTM
    from metarl.outer.metagrad import SECOND_ORDER, meta_value_and_grad

    env = envs.make(name)
    cfg = MetaGenRLConfig(td3=TD3Config(**sizes["td3"]), **dict(sizes["meta"], agents_per_env=1)).validate()
    td3 = cfg.td3
    d = td3.policy_delay
    blocks = max(1, steps // d)
    trainers = {m: make_trainer([env], dataclasses.replace(cfg, second_order=m)) for m in SECOND_ORDER}
    trainer = trainers[cfg.second_order]
    agent, objective = trainer.learners[0], trainer.objective
    alpha = init_alpha = trainer.init(jax.random.PRNGKey(0)).alpha
    task = env.sample_task(jax.random.PRNGKey(1), "train")
    s0 = agent.init(jax.random.PRNGKey(2), task)
    std_agent = TD3Agent(env, dataclasses.replace(td3, batch_size=100, seq_len=1))
    s_std = std_agent.init(jax.random.PRNGKey(2), task)

    leaf_sum = lambda t: sum(jnp.sum(x) for x in jax.tree_util.tree_leaves(t))

    def metagenrl_step(tr):
        def step(s):
            # the meta-gradient, meta-loss and alignment feed the scan's accumulator: a program that
            # dropped them would let XLA eliminate the whole second-order backward pass as dead code
            s, g, jval, cos = tr.agent_block(tr.learners[0], s, alpha, jnp.zeros(()))
            return s, leaf_sum(g) + jval + cos
        return step

    progs = {
        # after the warm start (w = 0), the steady state of a run; one program per second-order mode
        **{f"metagenrl_{m}": (metagenrl_step(tr), s0) for m, tr in trainers.items()},
        # the same with its outputs dropped: the policy's step on L_alpha without the meta-gradient
        "metagenrl_no_meta_grad": (
            lambda s: (trainer.agent_block(agent, s, alpha, jnp.zeros(()))[0], jnp.zeros(())), s0),
        "td3_bt": (lambda s: (agent.block(s), jnp.zeros(())), s0),
        "td3_standard": (lambda s: (std_agent.block(s), jnp.zeros(())), s_std),
    }
    compile_s, states, fs = {}, {}, {}
    for k, (fn, st) in progs.items():
        compile_s[k], fs[k] = compile_jit(_scan_program(fn, blocks), st)
        states[k] = fs[k](st)[0]  # the first run fills the replay buffer; time the next ones
    all_rounds = {}
    costs = _alternating(fs, states, rounds, blocks * d, all_rounds)
    costs["metagenrl"] = costs[f"metagenrl_{cfg.second_order}"]
    compile_s["metagenrl"] = compile_s[f"metagenrl_{cfg.second_order}"]

    # pieces, on the filled MetaGenRL agent's state
    s = states[f"metagenrl_{cfg.second_order}"]
    batch = agent.sample(s, jax.random.PRNGKey(3), cfg.meta_batch // 2)
    a, pa = batch["action"], agent.pi(s.policy, batch["obs"])
    z = batch["reward"]

    def with_key(s):
        key, k = jax.random.split(s.key)
        return s.replace(key=key), k

    def meta_grad(mode):
        vg = meta_value_and_grad(objective, agent, cfg.lookahead_step, mode)

        def fn(s):
            s, k = with_key(s)
            b = agent.sample(s, k, cfg.meta_batch)
            (jval, gp), g = vg(alpha, s.policy, s.critic, b)
            return s, jval + leaf_sum(g) + leaf_sum(gp)
        return fn

    def lookahead_grad(s):  # first-order grad_phi L_alpha on the first half (the policy's gradient)
        s, k = with_key(s)
        b = agent.sample(s, k, cfg.meta_batch // 2)
        g = jax.grad(objective.policy_loss, argnums=1)(alpha, s.policy, b, agent, critic_params=s.critic)
        return s, sum(jnp.sum(x) for x in jax.tree_util.tree_leaves(g))

    def objective_net(s):  # forward + backward of L_alpha's network w.r.t. pi(s), on B x T
        g = jax.grad(lambda p: objective.module.apply(alpha, a, p + s.step * 1e-9, z, z, z,
                                                      batch["done"], batch["mask"]))(pa)
        return s.replace(step=s.step + 1), g.sum()

    lstm = BackwardLSTM(cfg.lstm_features)
    B, T = batch["mask"].shape
    x = jnp.ones((T, B, cfg.lstm_features + 8))
    carry = (jnp.zeros((B, cfg.lstm_features)), jnp.zeros((B, cfg.lstm_features)))
    tm = lambda v: jnp.swapaxes(v, 0, 1)
    lp = lstm.init(jax.random.PRNGKey(5), carry, (x, tm(batch["done"]), tm(batch["mask"])))

    def lstm_only(s):  # forward + backward of the backward LSTM alone, on B x T
        g = jax.grad(lambda x: lstm.apply(lp, carry, (x, tm(batch["done"]), tm(batch["mask"])))[1].sum())(
            x + s.step * 1e-9)
        return s.replace(step=s.step + 1), g.sum()

    pieces_fns = {
        "env step": (lambda s: (agent.env_step(s), jnp.zeros(())), 1.0),
        f"critic update ({td3.batch_size} x {T})": (lambda s: agent.critic_update(s), 1.0),
        **{f"meta-gradient ({cfg.meta_batch} x {T}, second order {m}; gives the policy's gradient too)": (
            meta_grad(m), 1.0 / d) for m in SECOND_ORDER},
        f"  its lookahead: first-order grad_phi L_alpha ({B} x {T})": (lookahead_grad, 1.0 / d),
        f"  its L_alpha network fwd+bwd ({B} x {T})": (objective_net, 1.0 / d),
        f"  its backward LSTM fwd+bwd ({B} x {T})": (lstm_only, 1.0 / d),
        "policy step (Adam on the reused gradient, Polyak)": (
            lambda s: (agent.apply_policy_grad(s, s.policy), jnp.zeros(())), 1.0 / d),
    }
    n = max(4, blocks // 2)
    pf = {k: compile_jit(_scan_program(fn, n), s)[1] for k, (fn, _) in pieces_fns.items()}
    per_call = _alternating(pf, {k: s for k in pf}, rounds, n)
    pieces = {k: (per_call[k], per) for k, (_, per) in pieces_fns.items()}
    del init_alpha
    return dict(env=name, cfg=cfg, costs=costs, rounds=all_rounds, compile_s=compile_s, pieces=pieces,
                B=B, T=T, modes=SECOND_ORDER)


def metagenrl_agent_step_body(r: dict, rounds: int) -> tuple[str, str]:
    c, cfg = r["costs"], r["cfg"]
    ms = lambda x: f"{1e3 * x:.2f}"
    std = c["td3_standard"]
    rows = [[f"MetaGenRL agent-step, second_order={m}" + (" (the default)" if m == cfg.second_order else ""),
             ms(c[f"metagenrl_{m}"]), f"{c['metagenrl'] / c[f'metagenrl_{m}']:.2f}",
             f"{r['compile_s'][f'metagenrl_{m}']:.1f}"] for m in r["modes"]]
    rows += [
            ["MetaGenRL agent-step without its meta-gradient (outputs dropped, XLA removes the "
             "second-order pass)", ms(c["metagenrl_no_meta_grad"]),
             f"{c['metagenrl'] / c['metagenrl_no_meta_grad']:.2f}",
             f"{r['compile_s']['metagenrl_no_meta_grad']:.1f}"],
            [f"TD3 agent-step, same {cfg.td3.batch_size} x {r['T']} batches", ms(c["td3_bt"]),
             f"{c['metagenrl'] / c['td3_bt']:.2f}", f"{r['compile_s']['td3_bt']:.1f}"],
            ["standard TD3 agent-step, 100 single transitions", ms(c["td3_standard"]),
             f"{c['metagenrl'] / c['td3_standard']:.2f}", f"{r['compile_s']['td3_standard']:.1f}"]]
    total = c["metagenrl"]
    prow = [[k, ms(t), f"{per:.2f}", ms(t * per), f"{100 * t * per / total:.0f} %"]
            for k, (t, per) in r["pieces"].items()]
    head = (f"metagenrl_agent_step {r['env']}: {c['metagenrl'] / c['td3_standard']:.2f}x standard TD3, "
            f"{c['metagenrl'] / c['td3_bt']:.2f}x TD3 on B x T (second_order={cfg.second_order}); "
            + ", ".join(f"{m}: {c[f'metagenrl_{m}'] / std:.2f}x" for m in r["modes"]))
    # per round: each mode's time over the standard TD3 program's of the same round
    per_round = {m: [a / b for a, b in zip(r["rounds"][f"metagenrl_{m}"], r["rounds"]["td3_standard"])]
                 for m in r["modes"]}
    fr = [a / b for a, b in zip(r["rounds"]["metagenrl_forward"], r["rounds"]["metagenrl_reverse"])]
    mode_rows = [[m, f"{c[f'metagenrl_{m}'] / std:.2f}", f"{c[f'metagenrl_{m}'] / c['td3_bt']:.2f}",
                  " ".join(f"{x:.2f}" for x in per_round[m]), f"{r['compile_s'][f'metagenrl_{m}']:.1f}"]
                 for m in r["modes"]]
    td3 = {k: v for k, v in dataclasses.asdict(cfg.td3).items() if k in
           ("hidden", "batch_size", "seq_len", "policy_delay", "replay_size")}
    body = (
        f"\nMetaGenRL agent-step cost ({r['env']}, one agent, td3 {td3}, meta_batch {cfg.meta_batch}; "
        f"each program one jitted lax.scan of env steps after a first run that fills the replay "
        f"buffer; best of {rounds}). Goal: MetaGenRL <= 3x a standard TD3 agent-step.\n\n"
        + markdown_table(["program", "ms / env step", "MetaGenRL / this", "compile (s)"], rows)
        + "\n\nThe two second-order modes of the meta-gradient (`MetaGradConfig.second_order`, "
        "`--second-order`: reverse-over-reverse as the original, or reverse-over-forward, the same "
        "quantity), each against the standard TD3 agent-step (best rounds) and round by round "
        f"(alternated). forward / reverse per round: {' '.join(f'{x:.2f}' for x in fr)}.\n\n"
        + markdown_table(["second_order", "x standard TD3 (best)", "x TD3 on B x T (best)",
                          "x standard TD3, each round", "compile (s)"], mode_rows)
        + "\n\nPieces of the MetaGenRL agent-step, each timed alone on the same state (a lax.scan of "
        "repetitions): ms per call, calls per env step, ms per env step, share of the whole agent-step "
        "(indented pieces are parts of the meta-gradient's forward pass; "
        "the MetaGenRL program runs after the warm start, w = 0).\n\n"
        + markdown_table(["piece", "ms / call", "calls / env step", "ms / env step", "share"], prow) + "\n")
    return body, head


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--envs", default="random_reacher,goal_ant", help="EPG envs ('' for none)")
    ap.add_argument("--context-gradient", choices=("exact", "stop", "both"), default="both",
                    help="EPG learned-loss context gradient mode(s) to time (both: side by side)")
    ap.add_argument("--generations", type=int, default=3, help="EPG generations per timing round")
    ap.add_argument("--rounds", type=int, default=2, help="timing rounds per mode (best kept)")
    ap.add_argument("--metagenrl-env", default="halfcheetah",
                    help="env of the MetaGenRL population step and agent-step ('' to skip them)")
    ap.add_argument("--agent-step-steps", type=int, default=200,
                    help="env steps per timed MetaGenRL/TD3 agent-step program")
    ap.add_argument("--metagenrl-iterations", type=int, default=1, help="meta-iterations per round")
    ap.add_argument("--metagenrl-agents", default="",
                    help="comma-separated agent counts to measure (default: the preset's own)")
    args = ap.parse_args()
    sizes = FULL if args.full else QUICK
    modes = ["exact", "stop"] if args.context_gradient == "both" else [args.context_gradient]
    rows, heads = [], []
    for name in [n for n in args.envs.split(",") if n]:
        s = sizes[name]
        env = envs.make(name, episode_length=s["episode"])
        epg_agents = s["population"] * s["tasks_per_member"]
        raw, raw_c = raw_steps_per_s(env, epg_agents, steps=min(s["lifetime"], 500), repeats=3)
        progs = {m: compiled_generation(env, s, MODES[m]) for m in modes}
        best = {m: float("inf") for m in modes}
        states = {m: progs[m][2] for m in modes}
        for r in range(args.rounds):  # alternate the modes so that load hits them alike
            for m in modes:
                dt, states[m] = time_generations(progs[m][1], states[m], args.generations, 10 + 100 * r)
                best[m] = min(best[m], dt)
        raw = max(raw, raw_steps_per_s(env, epg_agents, steps=min(s["lifetime"], 500), repeats=3)[0])
        for m in modes:
            c_s, _, _, steps = progs[m]
            sps = steps / best[m]
            ratio = sps / raw
            rows.append([name, env.backend, m, epg_agents, s["lifetime"], f"{raw:,.0f}", f"{sps:,.0f}",
                         f"{ratio:.2f}", f"{best[m]:.2f}", f"{c_s:.1f}", f"{raw_c:.1f}"])
            heads.append(f"inner_loop_overhead {name}{'' if m == 'exact' else ' context=' + m}: {ratio:.2f}")
            print(rows[-1], flush=True)
    if rows:
        table = markdown_table(["env", "backend", "context gradient", "agents (P x T)", "lifetime",
                                "raw env steps/s", "EPG env-steps/s", "EPG / raw", "generation (s)",
                                "generation compile (s)", "raw compile (s)"], rows)
        body = section_preamble("Inner-loop overhead: EPG (`inner_loop_overhead.py`)") + (
            f"- mode: {'full' if args.full else 'quick'}; EPG steps count lifetime and evaluation steps; "
            "raw = the same number of envs stepping with random actions in one lax.scan. Timing: best of "
            f"{args.rounds} rounds of {args.generations} generations per mode, modes alternated; raw: best of "
            "6 runs (3 before, 3 after).\n"
            "- context gradient: `exact` = the paper's loss (policy forward/backward on all N = 512 buffer "
            "rows every minibatch step); `stop` = `--no-context-gradient` (context once per update, "
            "held constant; policy forward/backward on the B = 32 minibatch rows).\n"
            "- targets: EPG / raw >= 0.6 on random_reacher, >= 0.8 on goal_ant.\n\n" + table + "\n")
        write_section("inner_loop_overhead", body)
    if args.metagenrl_env:
        sizes_m = METAGENRL_FULL if args.full else METAGENRL_QUICK
        counts = [int(a) for a in args.metagenrl_agents.split(",") if a] or [None]
        mrows = []
        for agents in counts:
            mg = metagenrl_rows(args.metagenrl_env, sizes_m, args.metagenrl_iterations, args.rounds, agents)
            mrows.append([mg["env"], mg["backend"], mg["agents"], mg["steps"], f"{mg['raw']:,.0f}",
                          f"{mg['sps']:,.0f}", f"{mg['ratio']:.3f}", f"{mg['it_s']:.2f}",
                          f"{mg['compile_s']:.1f}", f"{mg['raw_c']:.1f}"])
            print(mrows[-1], flush=True)
            heads.append(f"inner_loop_overhead metagenrl {mg['env']} agents={mg['agents']}: {mg['ratio']:.3f}")
        cfg = mg["cfg"]
        td3 = {k: v for k, v in dataclasses.asdict(cfg.td3).items() if k in
               ("hidden", "replay_size", "batch_size", "seq_len", "policy_delay")}
        body = section_preamble("Inner-loop overhead: MetaGenRL (`inner_loop_overhead.py`)") + (
            f"- mode: {'full' if args.full else 'quick'} (sizes of experiments/metagenrl.py's "
            f"`{'paper' if args.full else 'cpu'}` preset, one env group)\n\n"
            "MetaGenRL population step (`MetaTrainer.iteration`, one jitted meta-iteration: per agent "
            "K env steps with a critic update each, and every policy_delay steps a meta-gradient and a "
            "policy update; then the objective's Adam step). Settings: "
            f"td3 {td3}, agents {', '.join(str(r[2]) for r in mrows)}, K = {cfg.steps_per_iteration}, meta_batch "
            f"{cfg.meta_batch}; timing: best of {args.rounds} rounds of {args.metagenrl_iterations} "
            f"meta-iteration(s), second_order={cfg.second_order}; raw = the same number of envs, K steps "
            "in one lax.scan, best of 6.\n\n"
            + markdown_table(["env", "backend", "agents", "K (steps / iteration)", "raw env steps/s",
                              "MetaGenRL env-steps/s", "MetaGenRL / raw", "iteration (s)",
                              "iteration compile (s)", "raw compile (s)"], mrows) + "\n")
        r = metagenrl_agent_step(args.metagenrl_env, sizes_m, args.agent_step_steps, args.rounds)
        text, head = metagenrl_agent_step_body(r, args.rounds)
        print(text, flush=True)
        heads.append(head)
        write_section("inner_loop_overhead_metagenrl", body + text)
    for h in heads:
        print(h)


if __name__ == "__main__":
    main()
