"""``python -m experiments.metagenrl --outer es``: ES evolving MetaGenRL's objective over TD3
lifetimes (a smoke run, the flag refusals) and the README's custom-objective snippet."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cli_checks import assert_refused

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e  # a whole experiment run (cold: minutes of compiling); not in the fast tier
def test_es_smoke_run_writes_the_outputs(tmp_path):
    from experiments.metagenrl import main

    run_dir = tmp_path / "run"
    returned = main(["--preset", "smoke", "--outer", "es", "--population", "2", "--generations", "1",
                     "--methods", "learned,initial_loss", "--run-dir", str(run_dir)])
    s = json.loads((run_dir / "summary.json").read_text())
    assert returned["meta_test"]["learned_return"] == s["meta_test"]["learned_return"]
    assert s["outer"] == "es" and s["generations"] == 1 and s["population_size"] == 2
    mt = s["meta_test"]
    assert np.isfinite(mt["learned_return"]) and np.isfinite(mt["initial_loss_return"])
    assert set(mt["per_env"]) == {"random_reacher"}
    assert np.isfinite(mt["per_env"]["random_reacher"]["learned_return"])
    assert (run_dir / "meta_test.json").exists() and (run_dir / "objective").exists()
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [l["generation"] for l in lines] == [1] and "fitness_mean" in lines[0]
    assert np.isfinite(lines[0]["return"]["random_reacher"])
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["outer"] == "es" and "run_format" in cfg
    assert (run_dir / "checkpoints" / "1").exists()


@pytest.mark.parametrize("extra, message", [
    (["--outer", "es", "--lookahead-step", "0.5"], "--lookahead-step is not used by --outer es"),
    (["--outer", "es", "--second-order", "forward"], "--second-order is not used by --outer es"),
    (["--outer", "es", "--agents-per-env", "2"], "--agents-per-env is not used by --outer es"),
    (["--outer", "es", "--meta-iterations", "2"], "--meta-iterations is not used by --outer es"),
    (["--outer", "es", "--meta-lr", "0.01"], "--meta-lr is not used by --outer es"),
    (["--outer", "es", "--warm-start-steps", "0"], "--warm-start-steps is not used by --outer es"),
    (["--population", "4"], "--population is not used by --outer metagrad"),
    (["--outer", "metagrad", "--generations", "3"], "--generations is not used by --outer metagrad"),
    (["--outer", "es", "--population", "3"], "must be even"),
    (["--outer", "es", "--generations", "0"], "--generations must be a positive integer"),
    (["--outer", "nope"], "--outer"),
])
def test_flags_of_the_other_outer_loop_are_refused(tmp_path, capsys, extra, message):
    from experiments.metagenrl import main

    run_dir = tmp_path / "run"
    assert_refused(main, ["--preset", "smoke", *extra, "--run-dir", str(run_dir)], message, run_dir, capsys)


@pytest.mark.e2e  # the README's script: an ES run (cold: minutes of compiling); not in the fast tier
def test_readme_custom_objective_snippet_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- custom-objective:start -->\s*```python\n(.*?)```\s*<!-- custom-objective:end -->",
                      text, re.S).group(1)
    assert len(block.strip().splitlines()) <= 30
    ns = {}
    exec(compile(block, "README.md:custom-objective", "exec"), ns)
    alpha = ns["alpha"]
    assert set(alpha) == {"w", "c"} and all(np.isfinite(np.asarray(v)).all() for v in alpha.values())
    assert float(alpha["w"]) != 1.0 or float(alpha["c"]) != 0.0  # ES moved it


@pytest.mark.e2e
def test_es_sigkill_after_checkpoint_then_resume_matches_uninterrupted_run(tmp_path):
    """--outer es through the run driver: killed after generation 1's checkpoint and resumed, the
    run logs and meta-tests exactly what an uninterrupted run does (CPU, fixed seed)."""
    import os
    import subprocess
    import sys

    from cli_checks import kill_after_checkpoint

    args = ["--preset", "smoke", "--outer", "es", "--population", "2", "--generations", "2",
            "--methods", "learned", "--seed", "6", "--checkpoint-every", "1"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cli = lambda a: subprocess.run([sys.executable, "-m", "experiments.metagenrl", *a], cwd=ROOT, env=env,  # noqa: E731
                                   capture_output=True, text=True, timeout=900)
    full, killed = tmp_path / "full", tmp_path / "killed"
    r = cli([*args, "--run-dir", str(full)])
    assert r.returncode == 0, r.stderr[-3000:]
    kill_after_checkpoint("experiments.metagenrl", args, killed, step=1, root=ROOT)
    r = cli(["--resume", "--run-dir", str(killed)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[metagenrl-es] resumed from checkpoint at generation" in r.stdout
    strip = lambda d: [{k: v for k, v in json.loads(l).items() if k not in ("gen_s", "env_steps_per_s")}  # noqa: E731
                       for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert strip(killed) == strip(full) and len(strip(full)) == 2
    a, b = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    assert a["meta_test"]["learned_return"] == b["meta_test"]["learned_return"]
    assert b["resumed_from"] >= 1
