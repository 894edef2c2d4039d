"""benchmarks/device_run.sh: the prepared accelerator run, checked at tiny sizes on the CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_run.sh"
STEPS = ("setup", "throughput", "epg_generation", "metagenrl_iteration")


def run_script(*args, timeout=900, **limits):
    env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu", **limits)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.e2e
def test_check_runs_every_step_and_writes_sane_json(tmp_path):
    out = tmp_path / "out"
    # the steps' time limits are the accelerator's; a shared 2-core CI machine compiles goal_ant slower
    # (measured: the EPG step passed 150 s at load 6), and this test checks what the steps write, not speed
    r = run_script("--check", str(out), timeout=1500, TOTAL_LIMIT="1400", LIMIT_THROUGHPUT="400",
                   LIMIT_EPG="500", LIMIT_METAGENRL="500")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    data = {s: json.loads((out / f"{s}.json").read_text()) for s in STEPS}
    for s, d in data.items():
        assert d["complete"] and d["check"], s
    assert data["setup"]["versions"]["brax"] and not data["setup"]["failed_imports"]
    rows = data["throughput"]["rows"]
    assert {x["env"] for x in rows} == {"goal_ant", "random_hopper"}
    assert all(x["steps_per_s"] > 0 and x["compile_s"] > 0 and x["run_s"] > 0 for x in rows)
    epg = data["epg_generation"]
    assert epg["env"] == "goal_ant" and epg["preset"] == "smoke"
    for k in ("compile_s", "steady_generation_s", "epg_env_steps_per_s", "raw_env_steps_per_s",
              "epg_over_raw", "env_steps_per_generation"):
        assert epg[k] > 0, k
    assert epg["nonfinite"] == 0 and len(epg["generation_s"]) >= 1
    mg = data["metagenrl_iteration"]
    from experiments.metagenrl import PRESETS

    # --check: the paper preset's first meta-training body only, at smoke sizes
    assert mg["envs"] == PRESETS["paper"].train_envs.split(",")[:1] and mg["agents"] > 0
    for k in ("compile_s", "steady_iteration_s", "agent_steps_per_s"):
        assert mg[k] > 0, k
    summary = (out / "summary.md").read_text()
    assert "epg_generation goal_ant smoke" in summary and "metagenrl_iteration" in summary
    assert "- peers: skipped" in summary  # no tiny size for the peers: always skipped in --check
    assert (out / "device_run.log").read_text().count("== ") >= 4


@pytest.mark.e2e
def test_bad_arguments_exit_2(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("")
    for args in ([], [str(afile)], ["a", "b"], ["--bogus"]):
        r = run_script(*args, timeout=60)
        assert r.returncode == 2 and r.stderr.strip(), (args, r.stdout, r.stderr)
    r = subprocess.run([sys.executable, "-m", "benchmarks.device_steps", "--step", "nope", "--out",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
