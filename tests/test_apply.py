"""A learned objective used on its own: ``metarl.load_objective`` and ``python -m metarl.apply``."""
import json

import chex
import jax
import numpy as np
import pytest

import metarl
from cli_checks import exit_code_and_stderr
from metarl import apply as apply_cli

TINY_POINT = ["--preset", "smoke", "--seed", "3", "--generations", "1", "--population", "2",
              "--lifetime-steps", "128", "--test-agents", "2", "--objective", "residual"]


@pytest.fixture(scope="module")
def epg_run(tmp_path_factory):
    from experiments.epg_common import main
    from experiments.epg_point import ENV, PRESETS

    run_dir = tmp_path_factory.mktemp("apply") / "epg_point"
    main("epg_point", ENV, PRESETS, [*TINY_POINT, "--run-dir", str(run_dir)])
    return run_dir


@pytest.mark.e2e
def test_load_objective_gives_the_runs_objective_settings_and_initial_parameters(epg_run):
    from metarl import envs
    from metarl.algorithms.epg.algorithm import EPG
    from metarl.checkpoint import load_params
    from metarl.objectives.epg_conv import ResidualConvObjective

    saved = metarl.load_objective(epg_run)
    assert saved.algorithm == "epg" and saved.seed == 3
    assert isinstance(saved.objective, ResidualConvObjective)
    assert saved.settings.cfg.objective == "residual" and saved.settings.cfg.lifetime.lifetime_steps == 128
    chex.assert_trees_all_equal(saved.params, load_params(epg_run / "best_loss"))
    # phi_0 as the run drew it: the ES mean before any generation
    epg = EPG(envs.make("goal_point"), saved.settings.cfg)
    k_es = jax.random.split(jax.random.PRNGKey(3), 3)[0]
    es, _, state, _ = epg.make_es(k_es)
    chex.assert_trees_all_close(saved.initial_params, es.get_mean(state), atol=1e-7)


@pytest.mark.e2e
def test_epg_run_records_its_familys_backend(epg_run):
    """EPG records (does not choose) its family's physics: goal_point's one backend, jax."""
    assert json.loads((epg_run / "config.json").read_text())["backend"] == "jax"
    assert json.loads((epg_run / "summary.json").read_text())["backend"] == "jax"


@pytest.mark.e2e
def test_apply_writes_a_meta_test_beside_the_baselines_and_floors(epg_run, tmp_path, capsys):
    out = tmp_path / "applied"
    summary = apply_cli.main([str(epg_run), "--env", "goal_point", "--agents", "3", "--run-dir", str(out)])
    results = json.loads((out / "meta_test.json").read_text())
    assert list(results) == ["goal_point"]
    methods = results["goal_point"]
    assert list(methods) == ["learned", "ppo", "no_update", "zero_action", "initial_loss", "oracle"]
    assert all(len(m["returns"]) == 3 and np.isfinite(m["return"]) for m in methods.values())
    assert (out / "meta_test.csv").exists() and (out / "meta_test.png").exists()
    written = json.loads((out / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary)) and written["meta_test"]["agents"] == 3
    assert written["meta_test"]["learned_return"] == pytest.approx(methods["learned"]["return"])
    # the output dir now holds a run: a second apply into it is refused, nothing changed
    before = (out / "meta_test.json").read_text()
    code, err = exit_code_and_stderr(apply_cli.main, [str(epg_run), "--env", "goal_point", "--run-dir", str(out)],
                                     capsys)
    assert code == 2 and "already holds a run" in err.strip().splitlines()[-1]
    assert (out / "meta_test.json").read_text() == before


@pytest.mark.e2e
@pytest.mark.parametrize("argv, message", [
    (["--env", "random_reacher"], "does not fit the objective evolved on goal_point"),
    (["--env", "moon_lander"], "unknown --env 'moon_lander'"),
    (["--env", "goal_point", "--agents", "0"], "--agents must be a positive integer, got 0"),
])
def test_apply_refuses_what_does_not_fit_in_one_line(epg_run, tmp_path, capsys, argv, message):
    out = tmp_path / "applied"
    code, err = exit_code_and_stderr(apply_cli.main, [str(epg_run), *argv, "--run-dir", str(out)], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and message in last, last
    assert not out.exists()


def test_apply_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "applied"
    (tmp_path / "empty").mkdir()
    for run, message in ((tmp_path / "missing", "does not exist"), (tmp_path / "empty", "is not a run directory")):
        code, err = exit_code_and_stderr(apply_cli.main, [str(run), "--env", "goal_point", "--run-dir", str(out)],
                                         capsys)
        last = err.strip().splitlines()[-1]
        assert code == 2 and message in last, last
        assert not out.exists()


@pytest.mark.e2e
def test_apply_trains_agents_with_a_metagenrl_objective_on_another_body(tmp_path):
    """MetaGenRL's L_alpha (one alpha for any body): saved by a tiny run on random_reacher, used by
    python -m metarl.apply on goal_point, with the harness's baselines and the floors."""
    from experiments.metagenrl import main as metagenrl_main

    run_dir = tmp_path / "metagenrl"
    metagenrl_main(["--preset", "smoke", "--seed", "5", "--meta-iterations", "1",
                    "--methods", "learned,initial_loss,td3", "--run-dir", str(run_dir)])
    saved = metarl.load_objective(run_dir)
    assert saved.algorithm == "metagenrl" and saved.settings.outer == "metagrad"
    summary = json.loads((run_dir / "summary.json").read_text())
    out = tmp_path / "applied"
    apply_cli.main([str(run_dir), "--env", "goal_point", "--agents", "2", "--run-dir", str(out)])
    results = json.loads((out / "meta_test.json").read_text())
    assert list(results) == ["goal_point"]
    assert set(results["goal_point"]) == {"learned", "initial_loss", "td3", "no_update", "zero_action"}
    assert all(len(m["returns"]) == 2 and np.isfinite(m["return"]) for m in results["goal_point"].values())
    assert summary["meta_test"]["learned_return"] is not None
