"""MetaGenRL's per-body physics backends: the presets', --backend's parsing and refusals, --resume
restoring the run's own backends, the zero-action hopper on the cpu preset's backend, and a smoke
run recording ``backends`` in config.json and summary.json."""
import json

import pytest

from cli_checks import exit_code_and_stderr


def test_presets_put_the_survival_bonus_bodies_on_generalized_and_leave_smoke_alone():
    from experiments.metagenrl import PRESETS

    assert PRESETS["smoke"].backends == {}  # the numeric guard's runs keep their physics
    for name in ("cpu", "paper"):
        p = PRESETS[name].validate()
        assert all(p.backends[b] == "generalized" for b in ("hopper", "walker2d", "inverted_double_pendulum"))
        # the meta-training bodies never terminate: they keep the registry's (fastest) default
        assert "reacher" not in p.backends and "halfcheetah" not in p.backends


def test_backend_flag_parses():
    from metarl.algorithms.metagenrl.backends import format_backends, parse_backends

    got = parse_backends(" hopper=generalized, reacher = positional ")
    assert got == {"hopper": "generalized", "reacher": "positional"}
    assert parse_backends(format_backends(got)) == got


@pytest.mark.parametrize("value, message", [
    ("hopper=warp", "--backend: unknown backend 'warp' for hopper; expected one of spring, positional, "
                    "generalized, mjx"),
    ("hoppr=generalized", "--backend: unknown environment 'hoppr'; expected names from"),
    ("hopper", "--backend: 'hopper' is not env=backend; expected env=backend[,env=backend...]"),
    ("=spring", "is not env=backend"),
    (",", "names no env=backend pair"),
    ("random_reacher=spring,random_reacher=positional", "names random_reacher twice"),
    ("hopper=generalized", "--backend: hopper is not an env of this run; expected names from random_reacher"),
    ("goal_point=spring", "unknown backend 'spring' for goal_point; expected one of jax"),
])
def test_bad_backend_exits_2_with_one_line(tmp_path, capsys, value, message):
    from experiments.metagenrl import main

    run_dir = tmp_path / "run"
    code, err = exit_code_and_stderr(main, ["--preset", "smoke", "--backend", value, "--run-dir", str(run_dir)],
                                     capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not run_dir.exists()


def _configure(argv):
    from experiments.metagenrl import PRESETS
    from metarl.algorithms.metagenrl.run import configure, parser

    return configure(parser().parse_args(argv), PRESETS)


def test_backends_resolve_flag_over_preset_over_registry_default():
    plan = _configure(["--preset", "cpu"])
    want = {"reacher": "spring", "halfcheetah": "spring", "hopper": "generalized"}
    assert plan.algo.backends == want and plan.config["backends"] == want
    assert plan.pinned == {"resolved_backends": "reacher=spring,halfcheetah=spring,hopper=generalized"}
    assert "hopper=generalized" in plan.header
    plan = _configure(["--preset", "cpu", "--backend", "hopper=spring,reacher=positional"])
    assert plan.algo.backends == {"reacher": "positional", "halfcheetah": "spring", "hopper": "spring"}
    plan = _configure(["--preset", "cpu", "--outer", "es", "--backend", "halfcheetah=generalized"])
    assert plan.algo.backends["halfcheetah"] == "generalized" and plan.algo.outer == "es"
    assert _configure(["--preset", "smoke"]).algo.backends == {"random_reacher": "spring"}


def test_settings_build_each_env_on_its_resolved_backend():
    """Settings.make_env: what meta-training, --outer es and (via meta_test's backends) the
    meta-test build their envs with."""
    s = _configure(["--preset", "cpu", "--backend", "reacher=positional"]).algo
    assert s.make_env("reacher").backend == "positional" and s.make_env("halfcheetah").backend == "spring"


def _stored_run(tmp_path, argv):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(
        {"experiment": "metagenrl", "run_format": 2, "argv": argv}))
    return run_dir


def _resumed(run_dir, argv=()):
    from experiments.metagenrl import PRESETS
    from metarl.algorithms.metagenrl.run import configure, parser
    from metarl.runs.flags import resume_args

    ap = parser()
    given = ["--resume", "--run-dir", str(run_dir), *argv]
    _, args = resume_args(ap.parse_args(given), ap.parse_args, "metagenrl", given,
                          extendable=("meta_iterations", "generations"))
    return configure(args, PRESETS).algo.backends


def test_resume_restores_the_runs_backends_from_config_json(tmp_path):
    from metarl.runs.run_dir import ConfigError

    # what config.json's argv holds for a cpu run (its --resolved-backends pinned by the driver),
    # here with backends that the preset no longer gives: the run keeps its own
    run_dir = _stored_run(tmp_path, ["--preset", "cpu", "--backend", "hopper=positional",
                                     "--resolved-backends", "reacher=spring,halfcheetah=spring,hopper=positional"])
    want = {"reacher": "spring", "halfcheetah": "spring", "hopper": "positional"}
    assert _resumed(run_dir) == want
    assert _resumed(run_dir, ["--backend", "hopper=positional"]) == want
    with pytest.raises(ConfigError, match="--backend 'hopper=generalized' differs from the stored run's"):
        _resumed(run_dir, ["--backend", "hopper=generalized"])


def test_resume_of_a_run_from_before_backends_were_recorded_keeps_the_registry_defaults(tmp_path):
    run_dir = _stored_run(tmp_path, ["--preset", "cpu"])
    assert _resumed(run_dir) == {"reacher": "spring", "halfcheetah": "spring", "hopper": "spring"}


@pytest.mark.slow  # compiles brax's generalized hopper (about 30 s cold on 2 cores)
def test_zero_action_hopper_on_the_cpu_presets_backend_falls_well_before_the_horizon():
    """On spring a passive hopper stays healthy all 1,000 steps and collects the +1 survival bonus;
    on the backend the cpu preset meta-tests hopper on, doing nothing ends the episode early."""
    import jax
    import jax.numpy as jnp

    from experiments.metagenrl import PRESETS
    from metarl import envs

    env = envs.make("hopper", backend=PRESETS["cpu"].backends["hopper"])
    assert env.episode_length == 1000

    def first_episode(key):
        s0 = env.reset(key, env.sample_task(key, "test"))

        def cond(c):
            return (c[0].done == 0) & (c[0].steps < env.episode_length)

        def body(c):
            s = env.step_no_reset(c[0], jnp.zeros((env.action_size,)))
            return s, c[1] + s.reward

        s, ret = jax.lax.while_loop(cond, body, (s0, jnp.zeros(())))
        return s.steps, s.truncated, ret

    steps, truncated, ret = jax.jit(jax.vmap(first_episode))(jax.random.split(jax.random.PRNGKey(0), 4))
    assert (steps < 500).all() and (truncated == 0).all(), steps
    assert (ret < 500).all(), ret


@pytest.mark.e2e  # a whole experiment run (cold: a minute or more of compiling); not in the fast tier
def test_smoke_run_records_backends_in_config_and_summary(tmp_path):
    from experiments.metagenrl import main

    run_dir = tmp_path / "run"
    returned = main(["--preset", "smoke", "--meta-iterations", "1", "--methods", "learned",
                     "--run-dir", str(run_dir)])
    cfg = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert cfg["backends"] == summary["backends"] == returned["backends"] == {"random_reacher": "spring"}
    argv = cfg["argv"]
    assert argv[argv.index("--resolved-backends") + 1] == "random_reacher=spring"


@pytest.mark.parametrize("module", ["epg_hopper", "epg_point"])
def test_epg_records_its_familys_backend_in_config(module):
    import importlib

    from metarl import envs
    from metarl.algorithms.epg import run as epg_run

    m = importlib.import_module(f"experiments.{module}")
    plan = epg_run.configure(epg_run.parser(m.ENV).parse_args(["--preset", "smoke"]), m.PRESETS, m.ENV)
    assert plan.config["backend"] == envs.default_backend(m.ENV)
