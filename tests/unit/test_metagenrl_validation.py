"""MetaGenRL meta-validation (metarl/algorithms/metagenrl/validation.py): the selection rule, the
validation schedule, the flags' checks, and the best objective's run state (what a checkpoint holds)."""
import argparse

import numpy as np
import pytest

from metarl.algorithms.metagenrl import validation
from metarl.algorithms.metagenrl.validation import MetaValConfig, due, is_better
from metarl.runs.run_dir import ConfigError


def test_is_better_keeps_the_best_finite_score_and_takes_the_later_on_ties():
    assert is_better(1.0, -np.inf) and is_better(-5.0, -np.inf)
    assert is_better(2.0, 1.0) and not is_better(0.5, 1.0)
    assert is_better(1.0, 1.0)  # ties: the later
    assert not is_better(np.nan, -np.inf) and not is_better(np.inf, 1.0) and not is_better(-np.inf, -np.inf)


def test_selection_over_a_sequence_of_scores():
    best, at = -np.inf, 0
    for it, score in enumerate([-3.0, -1.0, np.nan, -2.0, -1.0, -4.0]):
        if is_better(score, best):
            best, at = score, it
    assert (best, at) == (-1.0, 4)


def test_due_every_k_and_after_the_last_iteration():
    assert [i for i in range(1, 13) if due(i, 2, 12)] == [2, 4, 6, 8, 10, 12]
    assert [i for i in range(1, 8) if due(i, 3, 7)] == [3, 6, 7]
    assert not any(due(i, 0, 5) for i in range(1, 6))


def _args(**kw):
    return argparse.Namespace(**{f: kw.get(f) for f in validation.VAL_FLAGS})


@pytest.mark.parametrize("kw, message", [
    ({"val_every": -1}, "--val-every must be an integer >= 0 (0 turns it off), got -1"),
    ({"val_every": 2, "val_agents": 0}, "--val-agents must be a positive integer, got 0"),
    ({"val_every": 2, "val_lifetime_steps": -3}, "--val-lifetime-steps must be a positive integer, got -3"),
    ({"select": "best"}, "--select best needs meta-validation (--val-every > 0)"),
    ({"val_every": 0, "select": "best"}, "--select best needs meta-validation"),
])
def test_configure_refuses_bad_values(kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validation.configure(MetaValConfig(), _args(**kw), "metagrad")


def test_configure_defaults_and_overrides():
    preset = MetaValConfig(every=2, agents=2, lifetime_steps=2000)
    assert validation.configure(preset, _args(), "metagrad") == preset
    assert preset.selection == "best" and MetaValConfig().selection == "last"
    off = validation.configure(preset, _args(val_every=0), "metagrad")
    assert not off.on and off.selection == "last"
    last = validation.configure(preset, _args(select="last", val_agents=1), "metagrad")
    assert last.selection == "last" and last.agents == 1 and last.on
    # --outer es: no meta-validation; its flags are refused, the preset's ignored
    assert not validation.configure(preset, _args(), "es").on
    with pytest.raises(ConfigError, match="--val-every is not used by --outer es"):
        validation.configure(preset, _args(val_every=3), "es")


class _Stub(validation.Validator):
    """A Validator whose 'training' returns scripted returns (no compile)."""

    def __init__(self, scores, every=2, total=6):
        self.names, self.val, self.total, self.compile_s = ["a", "b"], MetaValConfig(every=every), total, 0.0
        self.scores = iter(scores)

    def returns(self, alpha):
        return np.asarray(next(self.scores), np.float32)


def test_best_objective_lives_in_the_run_state_and_is_selected():
    v = _Stub([[1.0, 3.0], [4.0, 4.0], [np.nan, 9.0], [0.0, 0.0]], every=2, total=6)
    alpha = lambda x: {"w": np.full(3, x, np.float32)}  # noqa: E731
    run = v.fresh_state(alpha(0))
    run, rec, _ = v.begin(run, alpha(0), "iteration")
    assert rec["iteration"] == 0 and rec["meta_val_return"] == 2.0 and rec["meta_val_return/b"] == 3.0
    for it in range(6):
        run, extra, tail = v.after(run, it, alpha(it + 1))
        assert bool(extra) == ((it + 1) % 2 == 0) and bool(tail) == bool(extra)
    # iteration 2 scores 4.0, iteration 4 the nanmean of [nan, 9] = 9.0 (the best), iteration 6 0.0
    assert int(run["val_best_iteration"]) == 4 and float(run["val_best_return"]) == 9.0
    np.testing.assert_array_equal(run["val_best_alpha"]["w"], alpha(4)["w"])
    assert np.isnan(run[validation.VAL_HISTORY][0]).all() and run[validation.VAL_HISTORY][1].tolist() == [4.0, 4.0]
    chosen, info = v.selected(run, alpha(6))
    np.testing.assert_array_equal(chosen["w"], alpha(4)["w"])
    assert info["selected_iteration"] == 4 and info["selected_meta_val_return"] == 9.0
    assert [h["iteration"] for h in info["history"]] == [0, 2, 4, 6]
    v.val = MetaValConfig(every=2, select="last")
    chosen, info = v.selected(run, alpha(6))
    np.testing.assert_array_equal(chosen["w"], alpha(6)["w"])
    assert info["selected_iteration"] == 6 and info["selected_meta_val_return"] == 0.0


def test_best_objective_survives_a_checkpoint_round_trip(tmp_path):
    """What --resume restores: the run state's best objective, score and iteration, exactly."""
    from metarl.runs.checkpoint import RunCheckpointer

    v = _Stub([[1.0, 2.0], [5.0, 1.0]], every=1, total=3)
    a0, a1 = {"w": np.arange(3, dtype=np.float32)}, {"w": np.float32([0.1, 0.2, 0.3])}
    run = {"iteration": np.int32(0), **v.fresh_state(a0)}
    run, _, _ = v.begin(run, a0, "iteration")
    run, _, _ = v.after(run, 0, a1)
    run["iteration"] = np.int32(1)
    ckpt = RunCheckpointer(tmp_path / "checkpoints", every=1)
    ckpt.maybe_save(1, run, force=True)
    ckpt.close()
    template = {"iteration": np.int32(0), **v.fresh_state(a0)}
    restored = RunCheckpointer(tmp_path / "checkpoints", every=1).resume(template, "iteration", "test")
    assert int(restored["val_best_iteration"]) == 1 and float(restored["val_best_return"]) == 3.0
    np.testing.assert_array_equal(restored["val_best_alpha"]["w"], a1["w"])
    np.testing.assert_array_equal(restored["val_initial"], [1.0, 2.0])


def test_presets_smoke_has_no_meta_validation_cpu_has():
    """smoke's numbers are the numeric guard's (tests/numeric_guard.py): meta-validation stays off there."""
    from experiments.metagenrl import PRESETS

    assert not PRESETS["smoke"].val.on and PRESETS["smoke"].val.selection == "last"
    cpu = PRESETS["cpu"]
    assert cpu.val.on and cpu.val.selection == "best"
    assert cpu.val.every == max(1, cpu.metagrad.meta_iterations // 6)
