"""Run operations: bad configs, checkpoint fallback, kill-and-resume, devices and processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metarl.runs.checkpoint import RunCheckpointer
from cli_checks import assert_refused, exit_code_and_stderr, kill_after_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "smoke", "--lifetime-steps", "64", "--population", "2", "--test-agents", "1"]


def run_exp(args, timeout=600, **kw):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "experiments.epg_reacher", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.parametrize("extra, message", [
    (["--population", "5"], "population_size=5 must be even"),
    (["--population", "0"], "population_size must be a positive integer, got 0"),
    (["--strategy", "Foo_ES"], "unknown --strategy 'Foo_ES'"),
    (["--strategy", "PersistentES"], "strategy PersistentES is truncated ES"),
    (["--lifetime-steps", "100"], "lifetime_steps=100 must be a multiple of update_period=64"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--generations", "-3"], "generations must be a positive integer, got -3"),
    (["--objective", "mixed"], "unknown objective 'mixed'; expected one of pure, residual, lstm"),
    (["--strategy", "CMA_ES", "--l2-penalty", "0.001"], "strategy CMA_ES has no optax optimiser"),
    (["--l2-penalty", "-1"], "l2_penalty must be >= 0, got -1.0"),
    (["--tasks-per-member", "0"], "tasks_per_member must be a positive integer, got 0"),
    (["--meta-test-lifetime-steps", "100"], "--meta-test-lifetime-steps: lifetime_steps=100 must be a multiple of update_period=64"),
    (["--mean-penalty", "-1"], "--mean-penalty must be a finite number >= 0, got -1.0"),
    (["--mean-penalty", "nan"], "--mean-penalty must be a finite number >= 0, got nan"),
    (["--inner-lr", "0"], "--inner-lr must be a finite number > 0, got 0.0"),
    (["--init-log-std", "nan"], "--init-log-std must be a finite number, got nan"),
    (["--objective", "lstm", "--mean-penalty", "1"], "objective 'lstm' does not take mean_penalty"),
    (["--progress-context"], "--progress-context needs --progress-input"),
])
def test_bad_config_exits_2_and_writes_nothing(tmp_path, capsys, extra, message):
    run_dir = tmp_path / "run"
    assert_refused(_epg_main, ["--preset", "smoke", "--run-dir", str(run_dir), *extra], message, run_dir,
                   capsys)


def _epg_main(argv):
    from experiments.epg_common import main
    from experiments.epg_reacher import ENV, PRESETS

    return main("epg_reacher", ENV, PRESETS, argv)


def _main_exit(argv, capsys):
    return exit_code_and_stderr(_epg_main, argv, capsys)


@pytest.mark.e2e
def test_exit_code_2_from_the_command_line(tmp_path):
    r = run_exp(["--preset", "smoke", "--population", "5", "--run-dir", str(tmp_path / "run")])
    assert r.returncode == 2 and "population_size=5 must be even" in r.stderr
    assert not (tmp_path / "run").exists()


def test_existing_run_dir_file_and_missing_resume_are_refused(tmp_path, capsys):
    existing = tmp_path / "old"
    existing.mkdir()
    (existing / "summary.json").write_text('{"keep": true}')
    code, err = _main_exit(["--preset", "smoke", "--run-dir", str(existing)], capsys)
    assert code == 2 and "already holds a run" in err
    assert json.loads((existing / "summary.json").read_text()) == {"keep": True}
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, err = _main_exit(["--preset", "smoke", "--run-dir", str(a_file)], capsys)
    assert code == 2 and "is a file" in err and a_file.read_text() == "x"
    code, err = _main_exit(["--resume", "--run-dir", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "empty").mkdir()
    code, err = _main_exit(["--resume", "--run-dir", str(tmp_path / "empty")], capsys)
    assert code == 2 and "config.json missing" in err


def test_truncated_latest_checkpoint_falls_back(tmp_path):
    ck = RunCheckpointer(tmp_path / "ck", every=1)
    state = {"a": np.arange(4.0, dtype=np.float32), "g": np.int32(0)}
    ck.maybe_save(1, {"a": state["a"] + 1, "g": np.int32(1)})
    ck.maybe_save(2, {"a": state["a"] + 2, "g": np.int32(2)})
    ck.close()
    # damage checkpoint 2: truncate every data file in it
    for f in (tmp_path / "ck" / "2").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[:3])
    ck = RunCheckpointer(tmp_path / "ck", every=1)
    step, restored = ck.restore_latest(state)
    assert step == 1 and int(restored["g"]) == 1
    np.testing.assert_array_equal(restored["a"], state["a"] + 1)
    assert [s for s, _ in ck.damaged] == [2]


def _series(run_dir):
    """Per generation: the ES fitness and the held-out evaluation that picks the best loss."""
    return [(r["fitness_mean"], r.get("eval_mean"), r.get("eval_best"))
            for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.e2e
def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted_run(tmp_path):
    args = [*TINY, "--generations", "6", "--checkpoint-every", "1"]
    full = tmp_path / "full"
    r = run_exp([*args, "--run-dir", str(full)])
    assert r.returncode == 0, r.stderr[-3000:]

    killed = tmp_path / "killed"
    kill_after_checkpoint("experiments.epg_reacher", args, killed, step=3, root=ROOT)
    assert (killed / ".lock").is_file()  # a SIGKILL leaves the run's lock behind
    r = run_exp(["--resume", "--run-dir", str(killed)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "taking over the stale lock" in r.stdout and not (killed / ".lock").exists()
    assert "resumed from checkpoint at generation" in r.stdout
    assert _series(killed) == _series(full)  # bit-identical on CPU
    assert all(e is not None for _, e, _ in _series(full))  # held-out evaluation every generation
    s = json.loads((killed / "summary.json").read_text())
    assert s["devices"]["processes"] == 1 and s["devices"]["devices"] >= 1


def test_launch_flags_are_not_stored_for_resume():
    from metarl.runs.flags import run_argv

    argv = ["--preset", "smoke", "--coordinator", "h0:1234", "--num-processes=2", "--process-id", "1",
            "--overwrite", "--seed", "3"]
    assert run_argv(argv) == ["--preset", "smoke", "--seed", "3"]


def _stored_run(tmp_path, argv, **extra):
    run_dir = tmp_path / "stored"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"experiment": "epg_reacher", "run_format": 2,
                                                     "argv": argv, **extra}))
    return run_dir


@pytest.mark.parametrize("flag, message", [
    (["--seed", "5"], "--resume: --seed 5 differs from the stored run's 3"),
    (["--no-crn"], "--resume: --no-crn (on) differs from the stored run's (off)"),
    (["--population", "8"], "--resume: --population 8 differs from the stored run's (preset default)"),
])
def test_resume_refuses_a_changed_flag_and_writes_nothing(tmp_path, capsys, flag, message):
    run_dir = _stored_run(tmp_path, ["--preset", "smoke", "--seed", "3", "--generations", "4"])
    before = sorted(p.name for p in run_dir.rglob("*"))
    code, err = _main_exit(["--resume", "--run-dir", str(run_dir), *flag], capsys)
    assert code == 2 and err.strip().splitlines()[-1] == f"error: {message}; a resumed run keeps it " \
                                                         f"(start a new run to change it)"
    assert sorted(p.name for p in run_dir.rglob("*")) == before


def test_resume_of_an_older_run_format_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"experiment": "epg_reacher", "argv": ["--preset", "smoke"]}))
    code, err = _main_exit(["--resume", "--run-dir", str(run_dir)], capsys)
    assert code == 2 and "written in run format 1" in err and "start a new run" in err
    assert [p.name for p in run_dir.iterdir()] == ["config.json"]


def test_resume_of_a_finished_run_rewrites_nothing(tmp_path, capsys):
    run_dir = _stored_run(tmp_path, ["--preset", "smoke", "--seed", "3"])
    summary = run_dir / "summary.json"
    summary.write_text('{"algorithm": "epg", "kept": true}')
    mtime = summary.stat().st_mtime_ns
    # the same flags as stored (given again) and a safe one are accepted
    out = _epg_main(["--resume", "--run-dir", str(run_dir), "--seed", "3", "--checkpoint-every", "2"])
    assert out == {"algorithm": "epg", "kept": True}
    assert "nothing to resume, nothing rewritten" in capsys.readouterr().out
    assert summary.stat().st_mtime_ns == mtime and sorted(p.name for p in run_dir.iterdir()) == [
        "config.json", "summary.json"]


def _point_main(argv):
    from experiments.epg_common import main
    from experiments.epg_point import ENV, PRESETS

    return main("epg_point", ENV, PRESETS, argv)


@pytest.mark.e2e
def test_generations_extend_a_finished_run_and_keep_its_schedules(tmp_path, capsys):
    tiny = ["--preset", "smoke", "--population", "2", "--lifetime-steps", "64", "--test-agents", "1",
            "--seed", "4", "--checkpoint-every", "1"]
    run, ref = tmp_path / "run", tmp_path / "ref"
    _point_main([*tiny, "--generations", "2", "--run-dir", str(run)])
    before = (run / "metrics.jsonl").read_text().splitlines()
    code, err = exit_code_and_stderr(_point_main, ["--resume", "--run-dir", str(run), "--generations", "1"], capsys)
    assert code == 2 and "--generations 1 is below the stored run's 2" in err
    s = _point_main(["--resume", "--run-dir", str(run), "--generations", "3"])
    after = (run / "metrics.jsonl").read_text().splitlines()
    assert after[:2] == before and len(after) == 3 and json.loads(after[2])["generation"] == 3
    assert s["generations"] == 3 and s["resumed_from"] == 2
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["es"]["generations"] == 3 and config["config"]["es"]["schedule_generations"] == 2
    # the extension equals a run made with those schedules from the start
    _point_main([*tiny, "--generations", "3", "--schedule-generations", "2", "--run-dir", str(ref)])
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k not in ("gen_s", "env_steps_per_s")}
    assert [strip(l) for l in after] == [strip(l) for l in (ref / "metrics.jsonl").read_text().splitlines()]
    # nothing left to extend: a further resume rewrites nothing
    mtime = (run / "summary.json").stat().st_mtime_ns
    assert _point_main(["--resume", "--run-dir", str(run)])["generations"] == 3
    assert (run / "summary.json").stat().st_mtime_ns == mtime
