"""The one meta-test schema (metarl/runs/meta_test_schema.py) and ``metarl.runs.plot`` on EPG and MetaGenRL run
dirs: hand-made results, no training."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from metarl.runs import meta_test_schema as meta_test_io
from metarl.runs import plot
from metarl.runs.meta_test_schema import mean_curve, method_result, read_meta_test, write_meta_test


def _epg_results() -> dict:
    """One env (the family), EPG's methods: three that train, three references."""
    steps = [64, 128, 192]
    return {"goal_point": {
        "learned": {"return": -10.0, "returns": [-9.0, -11.0], "return_mean_action": -8.0,
                    "curve": [-40.0, None, -12.0], "env_steps": steps},
        "ppo": {"return": -20.0, "returns": [-20.0, -20.0], "return_mean_action": -19.0,
                "curve": [-41.0, -30.0, -22.0], "env_steps": steps},
        "no_update": {"return": -45.0, "returns": [-44.0, -46.0], "return_mean_action": -43.0},
        "zero_action": {"return": -42.0, "returns": [-42.0, -42.0], "return_mean_action": -42.0},
        "initial_loss": {"return": -39.0, "returns": [-38.0, -40.0], "return_mean_action": -37.0,
                         "curve": [-41.0, -40.0, -39.0], "env_steps": steps},
        "oracle": {"return": -3.0, "returns": [-3.0, -3.0], "return_mean_action": -3.0}}}


def _metagenrl_results() -> dict:
    """Two envs (hopper unseen, reacher seen), forward returns on the locomotion body."""
    steps = [100, 200]
    hopper = {"learned": {"return": 50.0, "returns": [40.0, 60.0], "forward_return": 5.0,
                          "forward_returns": [4.0, 6.0], "curve": [10.0, 30.0], "env_steps": steps},
              "td3": {"return": 70.0, "returns": [70.0, 70.0], "forward_return": 9.0,
                      "forward_returns": [9.0, 9.0], "curve": [None, 60.0], "env_steps": steps},
              "no_update": {"return": 20.0, "returns": [20.0, 20.0], "forward_return": 0.0,
                            "forward_returns": [0.0, 0.0]},
              "zero_action": {"return": 25.0, "returns": [25.0, 25.0], "forward_return": 0.1,
                              "forward_returns": [0.1, 0.1]}}
    reacher = {"learned": {"return": -5.0, "returns": [-5.0, -5.0], "curve": [-9.0, -6.0], "env_steps": steps},
               "no_update": {"return": -8.0, "returns": [-8.0, -8.0]},
               "zero_action": {"return": -7.0, "returns": [-7.0, -7.0]}}
    return {"hopper": hopper, "reacher": reacher}


def test_method_result_and_mean_curve_give_the_schema_entry():
    curves = np.array([[1.0, np.nan, 4.0], [3.0, np.nan, np.nan]], np.float32)  # (agents, updates)
    assert mean_curve(curves) == [2.0, None, 4.0]
    e = method_result(np.array([1.0, 2.0], np.float32), mean_curve(curves), np.array([8, 16, 24]),
                      mean_action=np.array([3.0, 5.0]), forward=np.array([0.5, 1.5]))
    assert e == {"return": 1.5, "returns": [1.0, 2.0], "return_mean_action": 4.0, "forward_return": 1.0,
                 "forward_returns": [0.5, 1.5], "curve": [2.0, None, 4.0], "env_steps": [8, 16, 24]}
    assert method_result([7.0]) == {"return": 7.0, "returns": [7.0]}


def test_metagenrl_summary_is_the_schema_entry():
    from metarl.algorithms.metagenrl.meta_test import _summ, per_env_summary

    m = {"eval_return": np.array([1.0, 2.0], np.float32), "eval_forward_return": np.array([0.25, 0.75]),
         "episode_return": np.array([[1.0, np.nan], [3.0, np.nan]]), "env_steps": np.array([[10, 20], [10, 20]])}
    e = _summ(m)
    assert e == {"return": 1.5, "returns": [1.0, 2.0], "forward_return": 0.5, "forward_returns": [0.25, 0.75],
                 "curve": [2.0, None], "env_steps": [10, 20]}
    assert _summ({"eval_return": np.array([4.0])}) == {"return": 4.0, "returns": [4.0]}
    assert per_env_summary({"hopper": {"learned": e}}) == {"hopper": {"learned_return": 1.5,
                                                                      "learned_forward_return": 0.5}}


@pytest.mark.parametrize("make, seen", [(_epg_results, ()), (_metagenrl_results, ("reacher",))])
def test_writer_round_trips_through_read_meta_test(tmp_path, make, seen):
    results = make()
    write_meta_test(tmp_path, results, "t", seen=seen)
    assert read_meta_test(tmp_path) == results
    assert json.loads((tmp_path / "meta_test.json").read_text()) == results  # nothing else at top level
    assert (tmp_path / "meta_test.png").stat().st_size > 0


def test_csv_has_train_and_eval_rows(tmp_path):
    write_meta_test(tmp_path, _metagenrl_results(), "t", seen=("reacher",))
    with open(tmp_path / "meta_test.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["env", "seen_env", "method", "kind", "env_steps", "return"]
    body = [tuple(r) for r in rows[1:]]
    assert body[:7] == [("hopper", "False", "learned", "train", "100", "10.0"),
                        ("hopper", "False", "learned", "train", "200", "30.0"),
                        ("hopper", "False", "learned", "eval", "200", "50.0"),
                        ("hopper", "False", "learned", "eval_forward", "200", "5.0"),
                        ("hopper", "False", "td3", "train", "100", ""),
                        ("hopper", "False", "td3", "train", "200", "60.0"),
                        ("hopper", "False", "td3", "eval", "200", "70.0")]
    assert ("hopper", "False", "no_update", "eval", "0", "20.0") in body  # references at 0 steps
    assert ("reacher", "True", "zero_action", "eval", "0", "-7.0") in body
    assert not any(r[0] == "reacher" and r[3] == "eval_forward" for r in body)
    # every (env, method) has one eval row; 4 + 2 curve points in hopper, 2 in reacher, 3 forward rows
    assert sum(r[3] == "eval" for r in body) == 7 and sum(r[3] == "train" for r in body) == 6
    assert sum(r[3] == "eval_forward" for r in body) == 4 and len(body) == 17


def test_csv_keeps_epg_mean_action_returns(tmp_path):
    write_meta_test(tmp_path, _epg_results(), "t")
    with open(tmp_path / "meta_test.csv", newline="") as f:
        body = [tuple(r) for r in list(csv.reader(f))[1:]]
    assert ("goal_point", "False", "learned", "train", "128", "") in body
    assert ("goal_point", "False", "learned", "eval_mean_action", "192", "-8.0") in body
    assert ("goal_point", "False", "oracle", "eval", "0", "-3.0") in body


def _run_dir(tmp_path, name, config, records, results):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (d / "meta_test.json").write_text(json.dumps(results))
    return d


def _spy_figures(monkeypatch) -> list:
    figs, real = [], meta_test_io.meta_test_figure

    def spy(*a, **k):
        figs.append(real(*a, **k))
        return figs[-1]

    monkeypatch.setattr(meta_test_io, "meta_test_figure", spy)
    return figs


def _drawn(ax) -> dict:
    """{label: number of finite points} of the lines drawn in ``ax`` (a level line has 2)."""
    return {l.get_label().split(" (")[0]: int(np.isfinite(np.asarray(l.get_ydata(), float)).sum())
            for l in ax.get_lines()}


def _assert_pngs(d, written):
    assert written == [d / "meta_train.png", d / "meta_test.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


def test_plot_run_on_an_epg_run_dir(tmp_path, monkeypatch):
    recs = [{"generation": g, "fitness_mean": -40.0 + g, "fitness_max": -30.0 + g} for g in (1, 2, 3)]
    recs[1]["eval_mean"], recs[1]["eval_best"] = -20.0, -25.0
    d = _run_dir(tmp_path, "epg", {"experiment": "epg_point", "env": "goal_point"}, recs, _epg_results())
    figs = _spy_figures(monkeypatch)
    _assert_pngs(d, plot.plot_run(d))
    (ax,) = figs[0].axes
    assert ax.get_title() == "goal_point"
    assert _drawn(ax) == {"learned": 2, "ppo": 3, "initial_loss": 3, "no_update": 2, "zero_action": 2,
                          "oracle": 2}
    x_key, series = plot.meta_train_series(recs)
    assert x_key == "generation" and series["fitness_max"] == ([1, 2, 3], [-29.0, -28.0, -27.0])
    assert series["held-out eval (ES mean)"] == ([2], [-20.0]) and "fitness_mean" in series


def test_plot_run_on_a_metagenrl_run_dir(tmp_path, monkeypatch):
    recs = [{"iteration": i, "return": {"reacher": -9.0 + i, "halfcheetah": float(i)},
             "mean_return": (-9.0 + 2 * i) / 2, "meta_loss": {"reacher": 0.1, "halfcheetah": 0.2}}
            for i in (1, 2)]
    d = _run_dir(tmp_path, "mg", {"experiment": "metagenrl", "train_envs": ["reacher", "halfcheetah"]},
                 recs, _metagenrl_results())
    figs = _spy_figures(monkeypatch)
    _assert_pngs(d, plot.plot_run(d))
    hopper, reacher = figs[0].axes
    assert (hopper.get_title(), reacher.get_title()) == ("hopper (unseen)", "reacher (seen)")
    assert _drawn(hopper) == {"learned": 2, "td3": 1, "no_update": 2, "zero_action": 2}
    assert _drawn(reacher) == {"learned": 2, "no_update": 2, "zero_action": 2}
    x_key, series = plot.meta_train_series(recs)
    assert x_key == "iteration"
    assert set(series) == {"mean_return", "return reacher", "return halfcheetah"}
    assert series["return reacher"] == ([1, 2], [-8.0, -7.0])


def test_plot_refuses_a_run_dir_of_the_old_epg_schema(tmp_path, capsys):
    old = {"env_steps": [64], "learned_return": 1.0, "learned_curve": [1.0], "methods": ["learned"]}
    (tmp_path / "meta_test.json").write_text(json.dumps(old))
    with pytest.raises(SystemExit) as e:
        plot.main([str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "predates" in err[0]
    assert not (tmp_path / "meta_test.png").exists()
