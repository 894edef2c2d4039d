"""Our PPO (``metarl.baselines.ppo``) against brax's own PPO trainer on the same environment.

Both train a plain brax task (default ``reacher``, spring backend, 50-step episodes) with the same
hyper-parameters: num_envs, unroll_length, num_minibatches, epochs (brax: num_updates_per_batch),
batch size (brax: batch_size * num_minibatches = num_envs, so one unroll of num_envs envs per
update, as ours), learning rate, total env steps, discount, GAE lambda, clip range, no entropy bonus,
the same value-loss weight (ours 0.5 * mse = brax's 0.5 * vf_loss_coefficient(1.0) * mse), global
grad-norm clipping, advantage normalisation, running observation
normalisation, and the same networks (64-64 tanh MLPs; Gaussian policy with a state-independent
log-std initialised to 0, brax: distribution_type='normal', noise_std_type='log'). Evaluation is
deterministic (the mean action) over ``eval_envs`` full episodes for both.

Timing, measured side by side in one process:
- ours: ``jit(train).lower().compile()`` is the compile time; the compiled program's run time is the
  steady-state time (it includes our one final evaluation of eval_envs episodes);
- brax: ``train()`` wall time (compile and its 4 evaluations included); brax splits training into 3
  epochs (num_evals=4). On jax 0.9 its pmapped training epoch and its evaluator compile TWICE (on the
  1st and again on the 2nd call, the inputs' shardings/weak types differ), so only the 3rd epoch is
  steady: steady-state training time = total_steps / the 3rd epoch's 'training/sps' (evaluations
  excluded); brax's compile time ~= (epoch 1 + epoch 2) - 2 * epoch 3 (training epochs only, the
  evaluator's compiles are in the total but not in this figure).

    python -m benchmarks.ppo_vs_brax --quick
    python -m benchmarks.ppo_vs_brax --full

The last line printed is the headline: ours/brax steady-state wall-time ratio (target <= 0.8).
"""
from __future__ import annotations

import argparse
import functools
import time

import jax
import numpy as np

try:
    from benchmarks import common
except ImportError:  # run as a plain script from benchmarks/
    import common  # type: ignore

SECTION = "ppo_vs_brax"

QUICK = dict(env="reacher", backend="spring", episode_length=50, num_envs=128, unroll_length=16,
             num_minibatches=4, update_epochs=4, learning_rate=3e-4, total_steps=245_760,
             eval_envs=128, seeds=(0,))
FULL = dict(env="reacher", backend="spring", episode_length=50, num_envs=2048, unroll_length=16,
            num_minibatches=32, update_epochs=4, learning_rate=3e-4, total_steps=20_840_448,
            eval_envs=256, seeds=(0, 1, 2))


def run_ours(c: dict, seed: int, compiled_cache: dict):
    import metarl.envs as menvs
    from metarl.baselines.ppo import PPOConfig, make_train

    t0 = time.perf_counter()
    if "fn" not in compiled_cache:
        env = menvs.make(c["env"], backend=c["backend"], episode_length=c["episode_length"])
        cfg = PPOConfig(total_steps=c["total_steps"], num_envs=c["num_envs"],
                        unroll_length=c["unroll_length"], num_minibatches=c["num_minibatches"],
                        update_epochs=c["update_epochs"], learning_rate=c["learning_rate"],
                        gamma=0.99, gae_lambda=0.95, clip_eps=0.2, entropy_coef=0.0, value_coef=0.5,
                        max_grad_norm=0.5, reward_scale=1.0, hidden=(64, 64),
                        normalize_observations=True, eval_envs=c["eval_envs"])
        key = jax.random.PRNGKey(seed)
        task = env.sample_task(key, "train")
        compile_s, fn = common.compile_jit(make_train(env, cfg), key, task)
        compiled_cache.update(fn=fn, env=env, compile_s=compile_s)
    else:
        compile_s = 0.0
    env, fn = compiled_cache["env"], compiled_cache["fn"]
    key = jax.random.PRNGKey(seed)
    task = env.sample_task(key, "train")
    run_s, (_, metrics) = common.timed(lambda: fn(key, task))
    total_s = time.perf_counter() - t0
    return dict(compile_s=compile_s, steady_s=run_s, total_s=total_s,
                eval_return=float(metrics["eval_return"]),
                last_train_return=float(np.nanmean(np.asarray(metrics["episode_return"])[-5:])))


def run_brax(c: dict, seed: int):
    from brax import envs as brax_envs
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo
    from flax import linen

    env = brax_envs.get_environment(c["env"], backend=c["backend"])
    factory = functools.partial(
        ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=(64, 64),
        value_hidden_layer_sizes=(64, 64), activation=linen.tanh, distribution_type="normal",
        noise_std_type="log", init_noise_std=1.0)
    assert c["num_envs"] % c["num_minibatches"] == 0
    log = []
    t0 = time.perf_counter()

    def progress(step, metrics):
        log.append((time.perf_counter() - t0, step, dict(metrics)))

    _, _, final = ppo.train(
        environment=env, num_timesteps=c["total_steps"], num_envs=c["num_envs"],
        episode_length=c["episode_length"], unroll_length=c["unroll_length"],
        batch_size=c["num_envs"] // c["num_minibatches"], num_minibatches=c["num_minibatches"],
        num_updates_per_batch=c["update_epochs"], learning_rate=c["learning_rate"],
        entropy_cost=0.0, discounting=0.99, gae_lambda=0.95, clipping_epsilon=0.2,
        vf_loss_coefficient=1.0, max_grad_norm=0.5, normalize_observations=True,
        reward_scaling=1.0, normalize_advantage=True, bootstrap_on_timeout=False,
        network_factory=factory, seed=seed, num_evals=4, num_eval_envs=c["eval_envs"],
        deterministic_eval=True, progress_fn=progress)
    total_s = time.perf_counter() - t0
    epochs = [m for _, s, m in log if s > 0 and "training/walltime" in m]
    walls = [m["training/walltime"] for m in epochs]
    epoch_s = [b - a for a, b in zip([0.0] + walls[:-1], walls)]
    sps = epochs[-1]["training/sps"]
    steps = int(log[-1][1])
    compile_s = max(sum(epoch_s[:-1]) - (len(epoch_s) - 1) * epoch_s[-1], 0.0)
    return dict(compile_s=compile_s, steady_s=steps / sps, total_s=total_s,
                eval_return=float(final["eval/episode_reward"]), steps=steps, epoch_s=epoch_s)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU sizes (default)")
    mode.add_argument("--full", action="store_true", help="GPU/TPU sizes")
    p.add_argument("--seeds", help="comma-separated seeds (overrides the mode's)")
    p.add_argument("--total-steps", type=int, help="overrides the mode's total env steps")
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    c = dict(FULL if args.full else QUICK)
    if args.seeds:
        c["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    if args.total_steps:
        c["total_steps"] = args.total_steps
    per_update = c["num_envs"] * c["unroll_length"]
    # brax splits training into 3 epochs (num_evals=4): make both trainers run the same steps.
    c["total_steps"] = max(1, round(c["total_steps"] / (3 * per_update))) * 3 * per_update

    print(common.machine_description())
    print("config:", {k: v for k, v in c.items()})
    ours, brax_r, cache = [], [], {}
    for seed in c["seeds"]:
        # Alternate the order so drift in the machine's load hits both alike.
        order = ("ours", "brax") if seed % 2 == 0 else ("brax", "ours")
        for who in order:
            if who == "ours":
                r = run_ours(c, seed, cache)
                ours.append(r)
            else:
                r = run_brax(c, seed)
                brax_r.append(r)
            extra = f"  brax epochs {[round(e, 1) for e in r['epoch_s']]}s" if who == "brax" else ""
            print(f"seed {seed} {who:4s}: steady {r['steady_s']:7.2f}s  compile {r['compile_s']:6.1f}s"
                  f"  total {r['total_s']:7.1f}s  eval return {r['eval_return']:9.2f}{extra}", flush=True)
    assert all(b["steps"] == c["total_steps"] for b in brax_r), (c["total_steps"], brax_r)

    mean = lambda rs, k: float(np.mean([r[k] for r in rs]))
    o_steady, b_steady = mean(ours, "steady_s"), mean(brax_r, "steady_s")
    ratio = o_steady / b_steady
    # Ours' total wall with compile: first seed's (the only one that compiles).
    o_total, b_total = ours[0]["compile_s"] + ours[0]["steady_s"], brax_r[0]["total_s"]
    rows = [
        ["steady-state training wall (s), mean over seeds", f"{o_steady:.2f}", f"{b_steady:.2f}",
         f"{ratio:.2f}"],
        ["env steps/s (steady)", f"{c['total_steps'] / o_steady:,.0f}",
         f"{c['total_steps'] / b_steady:,.0f}", f"{b_steady / o_steady:.2f} (ours/brax speed)"],
        ["compile (s), first seed", f"{ours[0]['compile_s']:.1f}", f"{brax_r[0]['compile_s']:.1f}",
         f"{ours[0]['compile_s'] / max(brax_r[0]['compile_s'], 1e-9):.2f}"],
        ["wall incl. compile (s), first seed", f"{o_total:.1f}", f"{b_total:.1f}",
         f"{o_total / b_total:.2f}"],
        ["final eval return, mean over seeds", f"{mean(ours, 'eval_return'):.2f}",
         f"{mean(brax_r, 'eval_return'):.2f}", "-"],
        ["final eval return per seed", " / ".join(f"{r['eval_return']:.2f}" for r in ours),
         " / ".join(f"{r['eval_return']:.2f}" for r in brax_r), "-"],
    ]
    table = common.markdown_table(["", "ours", "brax", "ours/brax"], rows)
    print("\n" + table)
    headline = (f"ppo_vs_brax {c['env']} {c['backend']} {c['num_envs']} envs: ours/brax wall "
                f"{ratio:.2f} (ours {o_steady:.1f}s, brax {b_steady:.1f}s steady); eval return ours "
                f"{mean(ours, 'eval_return'):.1f} vs brax {mean(brax_r, 'eval_return'):.1f}")
    if not args.no_write:
        settings = ", ".join(f"{k}={v}" for k, v in c.items())
        body = (common.section_preamble("Our PPO vs brax's PPO (`ppo_vs_brax.py`)")
                + f"- settings: {settings}; 64-64 tanh networks, Gaussian policy with state-"
                  "independent log-std, obs normalisation, deterministic evaluation\n"
                + "- steady state: ours = run of the compiled train (includes one final evaluation"
                  " of eval_envs episodes); brax = total_steps / its 3rd-epoch 'training/sps' "
                  "(evaluations excluded; on jax 0.9 brax compiles its training epoch and evaluator "
                  "twice, in epochs 1 and 2). brax compile ~= epochs 1 + 2 - 2 x epoch 3 wall. Target: ours/brax "
                  "steady wall <= 0.8, eval return not worse.\n\n"
                + table + "\n")
        common.write_section(SECTION, body)
    print(headline)


if __name__ == "__main__":
    main()
