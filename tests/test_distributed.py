import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_checks import start_two_processes
from metarl import distributed

HELPER = Path(__file__).with_name("_sharded_generation.py")
ROOT = HELPER.parents[1]


def test_population_must_divide_devices():
    import jax

    mesh = distributed.population_mesh(jax.devices()[:1] * 1)
    distributed.check_population(4, mesh)

    class FakeMesh:
        devices = np.zeros(4)

    with pytest.raises(ValueError, match="population_size=6 is not divisible by the 4 devices"):
        distributed.check_population(6, FakeMesh())


def _on_four_virtual_devices(mode):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    r = subprocess.run([sys.executable, str(HELPER), mode], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n"] == 4
    return out


@pytest.mark.e2e
def test_four_virtual_devices_match_one_device():
    out = _on_four_virtual_devices("devices")
    np.testing.assert_allclose(out["r1"], out["r4"], rtol=1e-5, atol=1e-4)
    assert out["mean_diff"] < 1e-6


@pytest.mark.e2e
def test_metagenrl_agents_over_four_virtual_devices_match_one_device():
    out = _on_four_virtual_devices("metagenrl")
    assert "'pop'" in out["sharding"]  # each agent's state lives on one device
    # float sums in another order over 4 devices: 1.1e-5 relative on this CPU (2026-12-06)
    np.testing.assert_allclose(out["loss1"], out["loss4"], rtol=1e-4)
    # one Adam step of alpha (lr 1e-3) on meta-gradients that agree to float tolerance: an entry whose
    # sign flipped would differ by ~2e-3; this CPU's summation order gives up to 1.4e-4 (2026-12-06)
    assert out["alpha_diff"] < 5e-4 and out["policy_diff"] < 5e-4


def _two_processes(tmp_path, tag, module, args):
    """Runs ``python -m module args`` as processes 0 and 1 of a localhost cluster; returns stdouts."""
    procs, logs = start_two_processes(tmp_path, tag, module, args, ROOT)
    for p in procs:
        p.wait(timeout=900)
    outs = [(o.read_text(), e.read_text()) for o, e in logs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    return [o for o, _ in outs]


@pytest.mark.e2e
def test_two_process_epg_run_completes(tmp_path):
    """An EPG run over two localhost processes (one CPU device each): the population is split over
    both, process 0 alone writes checkpoints, losses and summary, and both agree on every result."""
    run_dir = tmp_path / "run"
    outs = _two_processes(tmp_path, "epg", "experiments.epg_reacher", [
        "--preset", "smoke", "--lifetime-steps", "64", "--population", "2", "--test-agents", "1",
        "--generations", "2", "--checkpoint-every", "1", "--run-dir", str(run_dir)])
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["devices"]["processes"] == 2 and s["devices"]["devices"] == 2
    assert (run_dir / "checkpoints" / "2").is_dir() and (run_dir / "best_loss").is_dir()
    timing = re.compile(r"[\d,]+ env-steps/s|ETA \S+")  # per-process wall clock, the rest must agree
    lines = [[timing.sub("", l) for l in o.splitlines() if " gen " in l or "meta-test returns" in l]
             for o in outs]
    assert len(lines[0]) == 3 and lines[0] == lines[1], lines
    assert "wrote" in outs[0] and "wrote" not in outs[1]


@pytest.mark.e2e
def test_two_process_metagenrl_run_checkpoints_and_resumes(tmp_path):
    """Agents split over two processes; process 0 alone writes checkpoints and outputs, and a
    resume restores on process 0 and broadcasts to process 1."""
    run_dir = tmp_path / "run"
    args = ["--preset", "smoke", "--meta-iterations", "1", "--agents-per-env", "2", "--methods", "learned",
            "--checkpoint-every", "1", "--run-dir", str(run_dir)]
    outs = _two_processes(tmp_path, "run", "experiments.metagenrl", args)
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["devices"]["processes"] == 2 and s["devices"]["devices"] == 2
    assert (run_dir / "checkpoints" / "1").is_dir() and (run_dir / "objective").is_dir()
    assert "wrote" in outs[0] and "process 0 writes the outputs" in outs[1]
    first = s["meta_train_history"][0]["return"]
    (run_dir / "summary.json").unlink()  # as if killed after its checkpoint (a finished run is not resumed)
    outs = _two_processes(tmp_path, "resume", "experiments.metagenrl", ["--resume", "--run-dir", str(run_dir)])
    assert all("resumed from checkpoint at iteration 1" in o for o in outs)
    assert json.loads((run_dir / "summary.json").read_text())["meta_train_history"][0]["return"] == first
