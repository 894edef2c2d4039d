"""MetaGenRL: meta-train one learned objective L_alpha over a TD3 population, then meta-test it.

python -m experiments.metagenrl --preset {smoke,cpu,paper} [--run-dir D] [--seed S]
       [--train-envs a,b] [--test-envs c,d] [--overwrite]

Writes <run-dir>/summary.json, curves.csv, meta_test.json, curves.png, objective.msgpack.
Env defaults: paper meta-trains on halfcheetah + ant and meta-tests on hopper (unseen) and
halfcheetah (seen). The CPU presets use reacher-sized envs (~30x cheaper than hopper): meta-train on
random_reacher's train split (targets in the even 45-degree sectors) and meta-test on its test split
(odd sectors, never seen in meta-training); an unseen body (e.g. --test-envs random_reacher,hopper,
hopper has 3 action dims vs 2) costs ~30x more per step. Meta-test tasks always come from the
test split.
"""
from __future__ import annotations

import dataclasses
import sys
import time

from metarl.runs import (ConfigError, check_run_dir, common_parser, device_info, fail,
                         prepare_run_dir, resolve_preset, write_json_atomic)

PRESETS = {
    "smoke": dict(train_envs="random_reacher", test_envs="random_reacher",
                  td3=dict(hidden=(32, 32), random_steps=200, replay_size=2_000, batch_size=8,
                           polyak=0.99),
                  meta=dict(agents_per_env=2, meta_iterations=2, steps_per_iteration=200,
                            meta_batch=8, warm_start_steps=200),
                  test=dict(total_steps=400, num_chunks=4, num_seeds=2),
                  ppo=dict(num_envs=4, unroll_length=50, num_minibatches=2, update_epochs=1,
                           eval_envs=4)),
    "cpu": dict(train_envs="random_reacher", test_envs="random_reacher",
                td3=dict(hidden=(64, 64), random_steps=1_000, replay_size=20_000, batch_size=16,
                         polyak=0.99),
                meta=dict(agents_per_env=4, meta_iterations=10, steps_per_iteration=500,
                          meta_batch=16, warm_start_steps=2_000),
                test=dict(total_steps=5_000, num_chunks=10, num_seeds=3),
                ppo=dict(num_envs=8, unroll_length=50, num_minibatches=4, update_epochs=4,
                         learning_rate=1e-3, eval_envs=8)),
    "paper": dict(train_envs="halfcheetah,ant", test_envs="hopper,halfcheetah",
                  td3=dict(),  # DESIGN.md: 350-350 nets, replay 1M, batch 100 x 20, 10k random steps
                  meta=dict(agents_per_env=10, meta_iterations=700, steps_per_iteration=1_000,
                            meta_batch=200, warm_start_steps=10_000),
                  test=dict(total_steps=700_000, num_chunks=70, num_seeds=6),
                  ppo=dict(num_envs=16, unroll_length=64, num_minibatches=4, update_epochs=4)),
}


def parse_envs(text: str, flag: str) -> list[str]:
    from metarl.envs import ENV_NAMES

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{flag} {text!r} names no environment")
    for n in names:
        if n not in ENV_NAMES:
            raise ConfigError(f"{flag}: unknown environment {n!r}; expected names from "
                              f"{', '.join(ENV_NAMES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{flag} {text!r} repeats an environment")
    return names


def main(argv=None) -> int:
    ap = common_parser(__doc__.splitlines()[0])
    ap.add_argument("--train-envs", default=None, help="comma-separated meta-training envs")
    ap.add_argument("--test-envs", default=None, help="comma-separated meta-test envs")
    args = ap.parse_args(argv)
    try:
        preset, why = resolve_preset(args.preset)
        print(f"preset: {preset} ({why})", flush=True)
        P = PRESETS[preset]
        train_names = parse_envs(args.train_envs or P["train_envs"], "--train-envs")
        test_names = parse_envs(args.test_envs or P["test_envs"], "--test-envs")
        run_dir = check_run_dir(args.run_dir or f"runs/metagenrl-{preset}", args.overwrite,
                                resumable=False)
    except ConfigError as e:
        fail(str(e))

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import serialization

    from metarl import envs
    from metarl.baselines.ppo import PPOConfig
    from metarl.inner.td3 import TD3Config
    from metarl.metagenrl_eval import METHODS, meta_test, write_outputs
    from metarl.outer.metagrad import MetaGenRLConfig, MetaTrainer

    td3_cfg = TD3Config(**P["td3"])
    cfg = MetaGenRLConfig(td3=td3_cfg, **P["meta"]).validate()
    run_dir = prepare_run_dir(run_dir, args.overwrite)
    t_start = time.time()

    trainer = MetaTrainer([envs.make(n) for n in train_names], cfg)
    key = jax.random.PRNGKey(args.seed)
    state = trainer.init(key)
    initial_alpha = jax.tree_util.tree_map(jnp.copy, state.alpha)  # state is donated
    iteration = jax.jit(trainer.iteration, donate_argnums=0)
    n_agents = cfg.agents_per_env * len(train_names)
    steps_per_it = n_agents * cfg.steps_per_iteration
    history = []
    t_loop = time.time()
    for it in range(cfg.meta_iterations):
        t0 = time.time()
        state, m = iteration(state)
        rets = np.asarray(m["return"])
        dt = time.time() - t0
        done = it + 1
        eta = (time.time() - t_loop) / done * (cfg.meta_iterations - done)
        history.append({"iteration": done, "return": dict(zip(train_names, rets.tolist())),
                        "meta_loss": np.asarray(m["meta_loss"]).tolist()})
        ret_txt = " ".join(f"{n}={r:.2f}" for n, r in zip(train_names, rets))
        print(f"iter {done}/{cfg.meta_iterations} return {ret_txt} meta_loss "
              f"{np.round(np.asarray(m['meta_loss']), 3).tolist()} "
              f"steps/s {steps_per_it / dt:.0f} ETA {eta:.0f}s", flush=True)
    alpha = state.alpha
    (run_dir / "objective.msgpack").write_bytes(serialization.to_bytes(alpha))
    meta_train_s = time.time() - t_start

    # meta-test: fresh agents, no warm start, no objective updates
    test_cfg = dataclasses.replace(td3_cfg)
    ppo_cfg = PPOConfig(**P["ppo"])
    T = P["test"]
    results = meta_test(test_names, alpha, initial_alpha, trainer.module, test_cfg,
                        T["total_steps"], T["num_chunks"], T["num_seeds"], args.seed,
                        ppo_config=ppo_cfg, methods=P.get("methods", METHODS))
    write_outputs(run_dir, results, seen=train_names)
    first = results[test_names[0]]
    summary = {
        "algorithm": "metagenrl", "env": f"train:{','.join(train_names)} test:{','.join(test_names)}",
        "train_envs": train_names, "test_envs": test_names, "preset": preset, "seed": args.seed,
        "generations": cfg.meta_iterations,
        "env_steps": cfg.meta_iterations * steps_per_it,
        "meta_train_wall_s": meta_train_s, "wall_s": time.time() - t_start,
        "devices": device_info(), "processes": jax.process_count(),
        "config": {"td3": dataclasses.asdict(td3_cfg), "meta": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "td3"},
                   "test": T},
        "meta_train_history": history,
        "meta_test": {
            "env": test_names[0], "test_env_steps": T["total_steps"], "seeds": T["num_seeds"],
            "learned_return": first["learned"]["eval_return"],
            "initial_loss_return": first["initial_loss"]["eval_return"],
            "td3_return": first["td3"]["eval_return"] if "td3" in first else None,
            "reinforce_return": first["reinforce"]["eval_return"] if "reinforce" in first else None,
            "ppo_return": first["ppo"]["eval_return"] if "ppo" in first else None,
            "per_env": {e: {f"{m}_return": r["eval_return"] for m, r in res.items()}
                        for e, res in results.items()},
        },
    }
    write_json_atomic(run_dir / "summary.json", summary)
    print(f"meta-test {test_names[0]}: learned {summary['meta_test']['learned_return']:.2f} vs "
          f"initial-loss {summary['meta_test']['initial_loss_return']:.2f}; wrote {run_dir}/summary.json "
          f"({summary['wall_s']:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
