"""MetaGenRL run operations: bad configs, kill-and-resume, agents over devices, saved objective."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_checks import assert_refused, exit_code_and_stderr, kill_after_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "smoke", "--meta-iterations", "3", "--methods", "learned"]


def _cli(args, **kw):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **kw.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "experiments.metagenrl", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, **kw)


def _main_exit(argv, capsys):
    from experiments.metagenrl import main

    return exit_code_and_stderr(main, argv, capsys)


@pytest.mark.parametrize("extra, message", [
    (["--meta-iterations", "0"], "meta_iterations must be a positive integer, got 0"),
    (["--agents-per-env", "-2"], "agents_per_env must be a positive integer, got -2"),
    (["--meta-lr", "0"], "meta_lr must be a finite number > 0, got 0.0"),
    (["--warm-start-steps", "-5"], "warm_start_steps must be an integer >= 0, got -5"),
    (["--second-order", "backward"], "second_order must be one of reverse, forward, got 'backward'"),
    (["--methods", "learned,foo"], "unknown method 'foo'"),
    (["--methods", "td3"], "must include 'learned'"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a positive integer, got 0"),
    (["--train-envs", "nope"], "unknown environment 'nope'"),
    (["--val-every", "-1"], "--val-every must be an integer >= 0 (0 turns it off), got -1"),
    (["--val-every", "two"], "argument --val-every: invalid int value: 'two'"),
    (["--val-every", "2", "--val-agents", "0"], "--val-agents must be a positive integer, got 0"),
    (["--select", "best"], "--select best needs meta-validation (--val-every > 0)"),
    (["--select", "worst"], "argument --select: invalid choice: 'worst'"),
    (["--outer", "es", "--val-every", "2"], "--val-every is not used by --outer es"),
    (["--val-every", "1", "--val-lifetime-steps", "200"], "--val-lifetime-steps 200 is within TD3's 200 random steps"),
])
def test_bad_config_exits_2_and_writes_nothing(tmp_path, capsys, extra, message):
    from experiments.metagenrl import main

    run_dir = tmp_path / "run"
    assert_refused(main, ["--preset", "smoke", "--run-dir", str(run_dir), *extra], message, run_dir, capsys)


def test_existing_run_and_missing_resume_are_refused(tmp_path, capsys):
    existing = tmp_path / "old"
    existing.mkdir()
    (existing / "summary.json").write_text('{"keep": true}')
    code, err = _main_exit(["--preset", "smoke", "--run-dir", str(existing)], capsys)
    assert code == 2 and "already holds a run" in err and "--resume" in err
    assert json.loads((existing / "summary.json").read_text()) == {"keep": True}
    code, err = _main_exit(["--resume", "--run-dir", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "does not exist" in err and not (tmp_path / "nothing").exists()


def test_run_dir_refusals_name_only_flags_metagenrl_has(tmp_path, capsys):
    """Every run-dir refusal (and an unknown flag) is one 'error:' line, exit 2, writes nothing, and
    every --flag it names is one of this CLI's: a foreign run's stored flags never leak into it."""
    import re

    from experiments.metagenrl import parser

    flags = {o for a in parser()._actions for o in a.option_strings}
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "summary.json").write_text("{}")
    epg = tmp_path / "epg"
    epg.mkdir()
    (epg / "config.json").write_text(json.dumps(
        {"experiment": "epg_reacher", "argv": ["--preset", "smoke", "--generations", "3", "--eval-every", "1"]}))
    cases = [(["--run-dir", str(tmp_path / "file")], "is a file"),
             (["--run-dir", str(tmp_path / "full")], "already holds a run"),
             (["--resume"], "needs --run-dir"),
             (["--resume", "--run-dir", str(tmp_path / "none")], "does not exist"),
             (["--resume", "--run-dir", str(tmp_path / "full")], "config.json missing"),
             (["--resume", "--run-dir", str(epg)], "holds a 'epg_reacher' run, not a 'metagenrl' run"),
             (["--eval-every", "3", "--run-dir", str(tmp_path / "new")], "unrecognized arguments"),
             (["--train-envs", "", "--run-dir", str(tmp_path / "new")], "--train-envs '' names no environment")]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for argv, message in cases:
        code, err = _main_exit(["--preset", "smoke", *argv], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
        named = set(re.findall(r"--[a-z][a-z-]+", lines[0].split("unrecognized arguments")[0]))
        assert named <= flags, (named - flags, lines[0])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.e2e
def test_agents_not_divisible_by_devices_is_refused(tmp_path):
    r = _cli(["--preset", "smoke", "--agents-per-env", "3", "--run-dir", str(tmp_path / "r")],
             env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "agents_per_env=3 is not divisible by the 2 devices" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "r").exists()


def _history(run_dir):
    return [{k: v for k, v in json.loads(l).items() if k not in ("iter_s", "env_steps_per_s")}
            for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted_run(tmp_path):
    from metarl.runs.checkpoint import load_params

    args = [*TINY, "--checkpoint-every", "1"]
    full = tmp_path / "full"
    r = _cli([*args, "--run-dir", str(full)])
    assert r.returncode == 0, r.stderr[-3000:]

    killed = tmp_path / "killed"
    kill_after_checkpoint("experiments.metagenrl", args, killed, step=1, root=ROOT)
    r = _cli(["--resume", "--run-dir", str(killed)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from checkpoint at iteration" in r.stdout
    assert _history(killed) == _history(full)  # bit-identical on CPU, replay buffers included
    a, b = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    assert a["meta_test"]["learned_return"] == b["meta_test"]["learned_return"]
    # the baselines trained beside meta-training (the default schedule), again after the kill
    assert a["meta_test_schedule"] == b["meta_test_schedule"] == "overlap"
    assert a["meta_test"]["per_env"] == b["meta_test"]["per_env"]
    assert b["devices"]["processes"] == 1 and b["devices"]["devices"] >= 1
    obj_full, obj_killed = load_params(full / "objective"), load_params(killed / "objective")
    for x, y in zip(*(jax_leaves(o) for o in (obj_full, obj_killed))):
        np.testing.assert_array_equal(x, y)


def jax_leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


@pytest.mark.e2e
def test_meta_iterations_extend_a_finished_run_as_if_run_whole(tmp_path, capsys):
    """The generic driver's extension for MetaGenRL: a 2-iteration run resumed with
    --meta-iterations 3 logs what a 3-iteration run logs (no schedule depends on the count)."""
    from experiments.metagenrl import main

    tiny = ["--preset", "smoke", "--methods", "learned", "--seed", "5", "--checkpoint-every", "1"]
    run, ref = tmp_path / "run", tmp_path / "ref"
    main([*tiny, "--meta-iterations", "2", "--run-dir", str(run)])
    code, err = exit_code_and_stderr(main, ["--resume", "--run-dir", str(run), "--meta-iterations", "1"], capsys)
    assert code == 2 and "--meta-iterations 1 is below the stored run's 2" in err
    s = main(["--resume", "--run-dir", str(run), "--meta-iterations", "3"])
    assert s["meta_iterations"] == 3 and s["resumed_from"] == 2 and len(s["meta_train_history"]) == 3
    assert json.loads((run / "config.json").read_text())["config"]["meta_iterations"] == 3
    main([*tiny, "--meta-iterations", "3", "--run-dir", str(ref)])
    assert _history(run) == _history(ref)
    mtime = (run / "summary.json").stat().st_mtime_ns
    assert main(["--resume", "--run-dir", str(run)])["meta_iterations"] == 3
    assert (run / "summary.json").stat().st_mtime_ns == mtime


@pytest.mark.slow  # ~15 min cold on the loaded 2-core machine: not in CI's e2e tier (the fast tier's
# tests/unit/test_metagenrl_validation.py covers selection, schedule and checkpointed best)
def test_meta_validation_logs_selects_the_best_and_survives_a_kill(tmp_path):
    """--val-every 2 over 3 meta-iterations: meta_val_return at iterations 0, 2 and 3 (the last);
    summary.json names the best of them (ties: the later) and objective/ holds it; a run killed
    after checkpoint 2 and resumed logs, selects and saves exactly the same."""
    from metarl.runs.checkpoint import load_params

    args = [*TINY, "--val-every", "2", "--val-lifetime-steps", "400", "--checkpoint-every", "1"]
    full = tmp_path / "full"
    r = _cli([*args, "--run-dir", str(full)])
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(l) for l in (full / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in rows] == [0, 1, 2, 3]
    val = {x["iteration"]: x["meta_val_return"] for x in rows if "meta_val_return" in x}
    assert sorted(val) == [0, 2, 3] and all("meta_val_return/random_reacher" in rows[i] for i in (0, 2, 3))
    best = max(val.values())
    expected = max(i for i, v in val.items() if v == best)
    s = json.loads((full / "summary.json").read_text())
    mv = s["meta_validation"]
    assert mv["select"] == "best" and mv["selected_iteration"] == expected
    assert mv["selected_meta_val_return"] == best
    assert [h["iteration"] for h in mv["history"]] == [0, 2, 3]
    assert json.loads((full / "config.json").read_text())["meta_validation"]["every"] == 2
    chosen, last = load_params(full / "objective"), load_params(full / "objective_last")
    same = all(np.array_equal(x, y) for x, y in zip(jax_leaves(chosen), jax_leaves(last)))
    assert same == (expected == 3)

    killed = tmp_path / "killed"
    kill_after_checkpoint("experiments.metagenrl", args, killed, step=2, root=ROOT)
    r = _cli(["--resume", "--run-dir", str(killed)])
    assert r.returncode == 0, r.stderr[-3000:]
    strip = lambda d: [{k: v for k, v in json.loads(l).items() if not k.endswith("_s") and "per_s" not in k}  # noqa: E731
                       for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert strip(killed) == strip(full)
    k = json.loads((killed / "summary.json").read_text())
    drop = lambda m: {key: v for key, v in m.items() if key != "compile_s"}  # noqa: E731
    assert drop(k["meta_validation"]) == drop(mv)
    assert k["meta_test"]["learned_return"] == s["meta_test"]["learned_return"]
    for x, y in zip(jax_leaves(chosen), jax_leaves(load_params(killed / "objective"))):
        np.testing.assert_array_equal(x, y)


def test_second_order_flag_reaches_the_config_and_config_json():
    """--second-order sets MetaGradConfig.second_order, which config.json's "config" records like
    the other meta-training fields (the preset's default without the flag)."""
    from experiments.metagenrl import PRESETS
    from metarl.algorithms.metagenrl.run import configure, parser

    for argv, want in (([], PRESETS["smoke"].metagrad.second_order), (["--second-order", "forward"], "forward"),
                       (["--second-order", "reverse"], "reverse")):
        plan = configure(parser().parse_args(["--preset", "smoke", *argv]), PRESETS)
        assert plan.algo.cfg.second_order == want and plan.config["config"]["second_order"] == want
