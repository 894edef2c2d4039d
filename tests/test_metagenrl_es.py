"""``python -m experiments.metagenrl --outer es``: ES evolving MetaGenRL's objective over TD3
lifetimes (a smoke run, the flag refusals) and the README's custom-objective snippet."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cli_checks import assert_refused

ROOT = Path(__file__).resolve().parents[1]


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
    (["--outer", "es", "--agents-per-env", "2"], "--agents-per-env is not used by --outer es"),
    (["--outer", "es", "--meta-iterations", "2"], "--meta-iterations is not used by --outer es"),
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
