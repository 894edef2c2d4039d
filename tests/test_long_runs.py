"""Long runs (issue 22): run-dir locks, SIGTERM/SIGINT preemption, damaged files on --resume."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from cli_checks import exit_code_and_stderr, start_two_processes
from metarl.runs import run_lock
from metarl.runs.run_dir import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _epg_main(argv):
    from experiments.epg_common import main
    from experiments.epg_point import ENV, PRESETS

    return main("epg_point", ENV, PRESETS, argv)


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _write_lock(run_dir: Path, **owner):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ".lock").write_text(json.dumps(owner))


def _listing(run_dir: Path) -> dict:
    return {str(p.relative_to(run_dir)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(run_dir.rglob("*"))}


# --- one writer per run directory -------------------------------------------------------------

def test_lock_is_exclusive_and_released(tmp_path):
    lock = run_lock.acquire(tmp_path / "run")
    owner = run_lock.read_lock(tmp_path / "run")
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    with pytest.raises(ConfigError, match=rf"is in use by pid {os.getpid()} on host"):
        run_lock.acquire(tmp_path / "run")
    lock.release()
    assert not (tmp_path / "run" / ".lock").exists()
    run_lock.acquire(tmp_path / "run").release()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []  # no private files left


def test_stale_lock_is_taken_over_only_on_its_host(tmp_path, capsys):
    dead = _dead_pid()
    _write_lock(tmp_path / "a", pid=dead, host=socket.gethostname(), started=None, token="x")
    said = []
    lock = run_lock.acquire(tmp_path / "a", say=said.append)
    assert len(said) == 1 and f"taking over the stale lock of pid {dead}" in said[0]
    assert run_lock.read_lock(tmp_path / "a")["pid"] == os.getpid()
    lock.release()
    # another host's lock: its pid cannot be checked from here, so it is never taken over
    _write_lock(tmp_path / "b", pid=dead, host="some-other-host", started=None, token="y")
    with pytest.raises(ConfigError, match=rf"in use by pid {dead} on host 'some-other-host'"):
        run_lock.acquire(tmp_path / "b")
    # a reused pid (same pid, another start time) is a dead owner too
    _write_lock(tmp_path / "c", pid=os.getpid(), host=socket.gethostname(), started="1", token="z")
    run_lock.acquire(tmp_path / "c", say=said.append).release()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".lock").write_text("{not json")
    with pytest.raises(ConfigError, match="in use by an unreadable lock file"):
        run_lock.acquire(tmp_path / "d")


@pytest.mark.parametrize("mode", [[], ["--resume"], ["--overwrite"]])
def test_a_held_run_dir_is_refused_by_name_and_left_alone(tmp_path, capsys, mode):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"experiment": "epg_point", "run_format": 2,
                                                     "argv": ["--preset", "smoke"]}))
    (run_dir / "metrics.jsonl").write_text('{"generation": 1}\n')
    lock = run_lock.acquire(run_dir)  # a live holder: this process
    try:
        before = _listing(run_dir)
        code, err = exit_code_and_stderr(_epg_main, ["--preset", "smoke", "--run-dir", str(run_dir), *mode],
                                         capsys)
        assert code == 2 and err.strip().count("\n") == 0, err
        assert f"is in use by pid {os.getpid()} on host {socket.gethostname()!r}" in err
        assert _listing(run_dir) == before
    finally:
        lock.release()


def test_stale_lock_of_a_finished_run_is_taken_over_on_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _write_lock(run_dir, pid=_dead_pid(), host=socket.gethostname(), started=None, token="t")
    (run_dir / "config.json").write_text(json.dumps({"experiment": "epg_point", "run_format": 2,
                                                     "argv": ["--preset", "smoke"]}))
    (run_dir / "summary.json").write_text('{"kept": true}')
    assert _epg_main(["--resume", "--run-dir", str(run_dir)]) == {"kept": True}
    assert "taking over the stale lock" in capsys.readouterr().out
    assert not (run_dir / ".lock").exists()


# --- damaged files ----------------------------------------------------------------------------

@pytest.mark.parametrize("content, why", [
    ("{\"experiment\": \"epg_point\", \"argv\": [\"--pre", "Unterminated string"),
    ("", "Expecting value"),
    ("[1, 2]", "not a JSON object"),
    ("{\"experiment\": \"epg_point\", \"run_format\": 2}", "holds no run's flags"),
    (b"\xff\xfe\x00garbage", "codec can't decode"),
])
def test_unreadable_config_json_on_resume_is_one_line(tmp_path, capsys, content, why):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = run_dir / "config.json"
    cfg.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = _listing(run_dir)
    code, err = exit_code_and_stderr(_epg_main, ["--resume", "--run-dir", str(run_dir)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: --resume:") and str(cfg) in err and why in err
    assert _listing(run_dir) == before


def test_unreadable_summary_json_on_resume_is_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"experiment": "epg_point", "run_format": 2,
                                                     "argv": ["--preset", "smoke"]}))
    (run_dir / "summary.json").write_text('{"algorithm": "ep')
    before = _listing(run_dir)
    code, err = exit_code_and_stderr(_epg_main, ["--resume", "--run-dir", str(run_dir)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(run_dir / "summary.json") in err
    assert _listing(run_dir) == before  # and the lock was released


def test_torn_last_metrics_line_is_dropped_atomically(tmp_path):
    from metarl.runs.metrics_log import MetricsLog

    lines = ['{"generation": 1, "f": 0.1}', '{"generation": 2, "f": NaN}', '{"generation": 3, "f": 0.3}']
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(l + "\n" for l in lines) + '{"generation": 4, "f"')
    log = MetricsLog(tmp_path, start=3)
    log.write({"generation": 3, "f": 0.5})
    log.close()
    assert path.read_text().splitlines() == lines[:2] + ['{"generation": 3, "f": 0.5}']
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".metrics")]


def test_damaged_newest_checkpoint_falls_back_in_one_line(tmp_path, capsys):
    from metarl.runs.checkpoint import RunCheckpointer

    ck = RunCheckpointer(tmp_path / "ck", every=1)
    state = {"a": np.arange(4.0, dtype=np.float32), "g": np.int32(0)}
    for g in (1, 2, 3):
        ck.maybe_save(g, {"a": state["a"] + g, "g": np.int32(g)})
    ck.close()
    for f in (tmp_path / "ck" / "3").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[:3])
    ck = RunCheckpointer(tmp_path / "ck", every=1)
    restored = ck.resume(state, "g", "test")
    captured = capsys.readouterr()
    assert int(restored["g"]) == 2
    out = captured.out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("[test] resumed from checkpoint at g 2 (skipped damaged "
                                               "checkpoint 3")
    assert "ERROR" not in captured.err and "Traceback" not in captured.err
    assert (tmp_path / "ck.damaged" / "3").is_dir()  # kept for a look, out of the run's way
    ck.maybe_save(3, {"a": state["a"] + 3, "g": np.int32(3)}, force=True)  # the step is written again
    assert ck.steps() == [1, 2, 3]


def test_half_written_newest_checkpoints_fall_back_and_are_written_again(tmp_path, capsys):
    from metarl.runs.checkpoint import RunCheckpointer

    ck = RunCheckpointer(tmp_path / "ck", every=1)
    state = {"a": np.arange(4.0, dtype=np.float32), "g": np.int32(0)}
    for g in (1, 2, 3):
        ck.maybe_save(g, {"a": state["a"] + g, "g": np.int32(g)})
    ck.close()
    # step 3 killed mid-save (orbax's temporary dir, never renamed); step 2 lost its data files
    half = tmp_path / "ck" / "3.orbax-checkpoint-tmp-1234"
    shutil.move(tmp_path / "ck" / "3", half)
    for f in half.rglob("_*"):
        f.unlink()
    for f in (tmp_path / "ck" / "2").rglob("*"):
        if f.is_file() and "ocdbt" in str(f):
            f.unlink()
    ck = RunCheckpointer(tmp_path / "ck", every=1)
    assert int(ck.resume(state, "g", "test")["g"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "resumed from checkpoint at g 1 (skipped damaged checkpoint 2 (" in out[0]
    for g in (2, 3):
        ck.maybe_save(g, {"a": state["a"] + g, "g": np.int32(g)}, force=True)
    assert ck.steps() == [1, 2, 3]


def _plot(run_dir, capsys):
    from metarl.runs import plot

    return exit_code_and_stderr(plot.main, [str(run_dir)], capsys)


def test_plot_of_what_is_not_a_run_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "metrics.jsonl").write_text('{"loss": 1}\n')
    bad_test = tmp_path / "bad_test"
    bad_test.mkdir()
    (bad_test / "meta_test.json").write_text('{"goal')
    dir_test = tmp_path / "dir_test"
    (dir_test / "meta_test.json").mkdir(parents=True)
    bad_cfg = tmp_path / "bad_cfg"
    bad_cfg.mkdir()
    (bad_cfg / "meta_test.json").write_text('{"e": {"m": {"return": 1.0}}}')
    (bad_cfg / "config.json").write_text('{"train')
    for d in ("nothing", "empty", "a_file", "garbage", "bad_test", "dir_test", "bad_cfg"):
        code, err = _plot(tmp_path / d, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), (d, err)


def test_plot_skips_a_torn_last_metrics_line(tmp_path, capsys):
    from metarl.runs import plot

    (tmp_path / "metrics.jsonl").write_text('{"generation": 1, "fitness_mean": 1.0}\n{"generation": 2, "fit')
    plot.main([str(tmp_path)])
    assert (tmp_path / "meta_train.png").is_file()


@pytest.mark.e2e
def test_plot_cli_on_a_missing_run_dir_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "metarl.runs.plot", str(tmp_path / "none")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr


# --- preemption in process (the driver's loop with a stand-in algorithm) -----------------------

def test_signal_handlers_only_set_a_flag_in_the_loop_and_are_restored():
    from metarl.runs.preempt import Stop

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = Stop("t").install()
    try:
        stop.phase("loop")
        assert stop.agreed() is None
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.time() + 10
        while stop.signum is None and time.time() < deadline:
            time.sleep(0.01)
        assert stop.agreed() == signal.SIGINT
        stop.phase("done")
    finally:
        stop.uninstall()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def _fake(total: int, signal_at: int | None = None, signum=signal.SIGTERM):
    """A stand-in algorithm for the run driver: outer step i adds i to x (no jax program)."""
    from metarl.runs import driver as runner

    def step(run, i):
        if i == signal_at:
            os.kill(os.getpid(), signum)
            time.sleep(0.3)  # the signal arrives while the step is in flight
        run = dict(run, generation=np.int32(i + 1), x=run["x"] + i)
        return run, {"generation": i + 1, "x": float(run["x"][0])}, f"gen {i + 1}"

    def finish(run):
        return runner.Outcome(summary={"meta_test": {}}, results={"e": {"m": {"return": 1.0}}},
                              title="t", table="")

    state = {"generation": np.int32(0), "x": np.zeros(2, np.float32)}
    return runner.Loop(name="fake", counter="generation", total=total, state=state, compile_s=0.0,
                       step=step, objectives=lambda run: {}, finish=finish)


def _drive(run_dir, loop, resume=False, checkpoint_every=10):
    from metarl.runs import driver as runner
    from metarl.runs.checkpoint import RunCheckpointer
    from metarl.runs.preempt import Stop

    args = types.SimpleNamespace(checkpoint_every=checkpoint_every, resume=resume, seed=0)
    plan = runner.Plan(preset="smoke", why="", population=(1, "p"), header="", config={})
    ckpt = RunCheckpointer(run_dir / "checkpoints", every=checkpoint_every)
    run = runner._restore(loop, ckpt, args, None)
    stop = Stop("fake").install()
    try:
        return runner._outer_loop("fake", plan, loop, ckpt, run, run_dir, args, True, time.time(), stop)
    finally:
        stop.uninstall()


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_step_in_flight_checkpoints_and_exits(tmp_path, capsys, signum, code):
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir(), cut.mkdir()
    _drive(full, _fake(8))
    with pytest.raises(SystemExit) as e:
        _drive(cut, _fake(8, signal_at=2, signum=signum))  # default cadence: no checkpoint before step 10
    assert e.value.code == code
    err = capsys.readouterr().err
    assert f"{signum.name}: stopped after generation 3 of 8; checkpoint 3 is in" in err
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["3"]
    assert not (cut / "summary.json").exists()
    _drive(cut, _fake(8), resume=True)
    assert (cut / "metrics.jsonl").read_text() == (full / "metrics.jsonl").read_text()


# --- from the command line (subprocesses) ------------------------------------------------------

TINY = ["--preset", "smoke", "--population", "2", "--lifetime-steps", "64", "--test-agents", "1"]


def _popen(args, **env):
    return subprocess.Popen([sys.executable, "-m", "experiments.epg_point", *args], cwd=ROOT,
                            env=dict(os.environ, JAX_PLATFORMS="cpu", **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run(args, **env):
    p = _popen(args, **env)
    out, err = p.communicate(timeout=800)
    return p.returncode, out, err


def _read_until(p, text: str) -> str:
    """Reads the process's stdout up to the first line containing ``text``; the lines so far."""
    seen = []
    for line in p.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never printed; rc={p.wait()} stderr={p.stderr.read()[-3000:]}")


def _metrics(run_dir):
    drop = ("gen_s", "env_steps_per_s")
    return [{k: v for k, v in json.loads(l).items() if k not in drop}
            for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 12-generation run, checkpointed every generation."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    code, out, err = _run([*TINY, "--generations", "12", "--checkpoint-every", "1", "--run-dir", str(run_dir)])
    assert code == 0, err[-3000:]
    return run_dir


@pytest.mark.e2e
def test_sigterm_mid_run_checkpoints_the_step_in_flight_and_resume_matches(tmp_path, reference):
    cut = tmp_path / "cut"
    p = _popen([*TINY, "--generations", "12", "--run-dir", str(cut)])  # checkpoints every 10
    _read_until(p, "gen 2/12")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 143, err[-3000:]
    stops = [l for l in err.splitlines() if "stopped after generation" in l]
    assert len(stops) == 1 and "Traceback" not in err, err[-3000:]
    k = int(stops[0].split("stopped after generation ")[1].split()[0])
    assert 2 <= k < 12 and f"SIGTERM: stopped after generation {k} of 12; checkpoint {k} is in" in stops[0]
    assert (cut / "checkpoints" / str(k)).is_dir() and len(_metrics(cut)) == k
    assert not (cut / "summary.json").exists() and not (cut / ".lock").exists()
    code, out, err = _run(["--resume", "--run-dir", str(cut)])
    assert code == 0, err[-3000:]
    assert f"resumed from checkpoint at generation {k}" in out
    assert _metrics(cut) == _metrics(reference)  # the same series as an uninterrupted run
    assert json.loads((cut / "summary.json").read_text())["resumed_from"] == k


@pytest.mark.e2e
def test_a_second_launch_on_a_live_run_is_refused_and_the_first_is_unharmed(tmp_path):
    run_dir = tmp_path / "run"
    first = _popen([*TINY, "--generations", "3", "--run-dir", str(run_dir)])
    _read_until(first, "preset=smoke")  # it holds the lock from here on
    first.send_signal(signal.SIGSTOP)  # alive, and nothing changes under the second launches
    try:
        before = _listing(run_dir)
        seconds = [_popen(a) for a in (["--resume", "--run-dir", str(run_dir)],
                                        [*TINY, "--overwrite", "--run-dir", str(run_dir)],
                                        [*TINY, "--generations", "3", "--run-dir", str(run_dir)])]
        for p in seconds:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 2 and len(err.strip().splitlines()) == 1, err[-3000:]
            assert f"is in use by pid {first.pid} on host {socket.gethostname()!r}" in err
        assert _listing(run_dir) == before
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=800)
    assert first.returncode == 0, err[-3000:]
    assert [r["generation"] for r in _metrics(run_dir)] == [1, 2, 3]
    assert (run_dir / "summary.json").is_file() and not (run_dir / ".lock").exists()


@pytest.mark.e2e
def test_signals_during_compile_and_meta_test_leave_a_resumable_run(tmp_path):
    run_dir = tmp_path / "run"
    cache = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla")}  # a fresh cache: compiling takes a while
    p = _popen([*TINY, "--generations", "2", "--run-dir", str(run_dir)], **cache)
    _read_until(p, "loss parameters")
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 130 and "gen 1/2" not in out, (out, err[-3000:])
    assert "SIGINT during compiling or restoring: exiting now" in err and "Traceback" not in err
    assert sorted(x.name for x in run_dir.iterdir()) == ["config.json"]  # lock released, nothing else
    p = _popen(["--resume", "--run-dir", str(run_dir)], **cache)
    _read_until(p, "meta-test:")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 143 and "SIGTERM during the meta-test: exiting now" in err, err[-3000:]
    assert not (run_dir / "summary.json").exists() and (run_dir / "checkpoints" / "2").is_dir()
    code, out, err = _run(["--resume", "--run-dir", str(run_dir)], **cache)
    assert code == 0 and "resumed from checkpoint at generation 2" in out, err[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["resumed_from"] == 2


@pytest.mark.e2e
def test_damaged_newest_checkpoint_and_torn_metrics_line_resume_from_the_command_line(tmp_path, reference):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "summary.json").unlink()  # as if killed before the meta-test ended
    for f in (run_dir / "checkpoints" / "12").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"generation": 13, "fitness_me')  # a kill mid-write
    code, out, err = _run(["--resume", "--run-dir", str(run_dir)])
    assert code == 0, err[-3000:]
    said = [l for l in out.splitlines() if "checkpoint" in l and "resumed" in l]
    assert len(said) == 1 and said[0].startswith(
        "[epg_point] resumed from checkpoint at generation 11 (skipped damaged checkpoint 12"), said
    assert "Traceback" not in err and "ERROR" not in err
    assert _metrics(run_dir) == _metrics(reference)


# --- multi-process runs (two localhost processes, one CPU device each) --------------------------

def _two(tmp_path, tag, args):
    """Starts processes 0 and 1 of ``experiments.epg_point args``; returns (procs, [(out, err) paths])."""
    return start_two_processes(tmp_path, tag, "experiments.epg_point", args, ROOT)


@pytest.mark.e2e
def test_two_process_launch_on_a_held_run_dir_is_refused_by_every_process(tmp_path):
    run_dir = tmp_path / "run"
    lock = run_lock.acquire(run_dir)  # held by this (live) process
    try:
        procs, logs = _two(tmp_path, "held", [*TINY, "--generations", "2", "--run-dir", str(run_dir)])
        for p, (_, err) in zip(procs, logs):
            assert p.wait(timeout=600) == 2, err.read_text()[-3000:]
            assert f"is in use by pid {os.getpid()}" in err.read_text().strip().splitlines()[-1]
        assert sorted(x.name for x in run_dir.iterdir()) == [".lock"]
    finally:
        lock.release()


@pytest.mark.e2e
def test_two_process_run_stops_at_the_same_step_when_one_process_gets_sigterm(tmp_path):
    run_dir = tmp_path / "run"
    procs, logs = _two(tmp_path, "stop", [*TINY, "--generations", "12", "--run-dir", str(run_dir)])
    deadline = time.time() + 800
    while "gen 2/12" not in logs[1][0].read_text() and time.time() < deadline and procs[1].poll() is None:
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # process 1 only: process 0 learns of it after the step
    codes = [p.wait(timeout=600) for p in procs]
    errs = [e.read_text() for _, e in logs]
    assert codes == [143, 143], [e[-3000:] for e in errs]
    steps = {int(e.split("stopped after generation ")[1].split()[0]) for e in errs}
    assert len(steps) == 1, errs
    k = steps.pop()
    assert (run_dir / "checkpoints" / str(k)).is_dir() and len(_metrics(run_dir)) == k
    assert "process 0 saved checkpoint" in errs[1] and not (run_dir / ".lock").exists()
