"""benchmarks.common's paired bootstrap: the interval covers a known shift, excludes 0 for a clear
one and includes it for pure noise; median/worst-5% read the sorted sample."""
import numpy as np
import pytest

from benchmarks.common import median_and_worst, paired_bootstrap


def test_paired_bootstrap_sees_a_shift_that_per_agent_noise_hides():
    rng = np.random.default_rng(0)
    task = rng.normal(0, 10, 64)  # shared per-agent difficulty: large, cancels in the pair
    a, b = task + 1.0 + rng.normal(0, 0.3, 64), task + rng.normal(0, 0.3, 64)
    mean, lo, hi = paired_bootstrap(a, b)
    assert lo > 0 and lo < 1.0 < hi
    assert mean == pytest.approx(np.mean(a - b))


def test_paired_bootstrap_includes_zero_for_noise():
    rng = np.random.default_rng(1)
    _, lo, hi = paired_bootstrap(rng.normal(size=64), rng.normal(size=64))
    assert lo < 0 < hi


def test_paired_bootstrap_refuses_unequal_samples():
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(np.zeros(3), np.zeros(4))


def test_median_and_worst():
    r = np.arange(100.0)
    med, worst = median_and_worst(r)
    assert med == 49.5 and worst == 2.0


def test_epg_seeds_table_reports_learned_minus_initial_with_its_interval():
    from benchmarks.epg_seeds import table

    rng = np.random.default_rng(2)
    summaries, agents = [], []
    for seed in range(4):
        task = rng.normal(-10, 3, 64)
        ag = {"learned": task + 3.0, "initial_loss": task, "ppo": task - 1, "no_update": task - 80,
              "zero_action": task - 30, "oracle": np.full(64, -0.5)}
        agents.append(ag)
        mt = {f"{m}_return": float(v.mean()) for m, v in ag.items()}
        mt["learned_return_mean_action"] = mt["learned_return"]
        summaries.append({"seed": seed, "env": "goal_point", "wall_s": 1.0, "meta_test": mt})
    text, notes = table(summaries, fresh_from=2, agents=agents)
    assert "+3.00 [+3.00, +3.00]" in text and "Median / mean of the worst 5%" in text
    assert any("learned - initial >= 0.25 (oracle - initial)" in n and "holds" in n for n in notes)
    assert any("2 of 2" in n for n in notes)


def test_metagenrl_seeds_reads_paired_agents_and_reports_the_interval(tmp_path, capsys):
    import json

    from benchmarks.metagenrl_seeds import main

    rng = np.random.default_rng(3)
    methods = ("learned", "initial_loss", "td3", "reinforce", "ppo", "no_update", "zero_action")
    for seed in (3, 4):
        base = rng.normal(100, 30, 8)
        per = {m: base + {"learned": 20.0, "zero_action": -50.0}.get(m, 0.0) for m in methods}
        d = tmp_path / f"run-s{seed}"
        d.mkdir()
        (d / "meta_test.json").write_text(json.dumps(
            {"hopper": {m: {"returns": v.tolist(), "forward_returns": (v / 2).tolist()} for m, v in per.items()}}))
        flat = {f"{m}{k}": float(f(v).mean()) for m, v in per.items()
                for k, f in (("_return", lambda x: x), ("_forward_return", lambda x: x / 2))}
        (d / "summary.json").write_text(json.dumps({
            "seed": seed, "wall_s": 1.0, "train_envs": ["reacher"], "backends": {"hopper": "generalized"},
            "config": {"meta": {"agents_per_env": 2, "steps_per_iteration": 10, "lookahead_step": 0.1},
                       "test": {"total_steps": 100}},
            "meta_test": {"seeds": 8, "eval_envs": 1, "per_env": {"hopper": flat}}}))
    main(["--collect", str(tmp_path / "run-s*"), "--env", "hopper", "--no-write"])
    out = capsys.readouterr().out
    assert "+20.00 [+20.00, +20.00]" in out and "+10.00 [+10.00, +10.00]" in out
    assert "(forward return) lies above 0: **2 of 2**" in out and "backends: hopper=generalized" in out
