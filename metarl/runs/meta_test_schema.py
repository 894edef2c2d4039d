"""One meta-test schema for every algorithm: ``meta_test.json``, ``meta_test.csv``, ``meta_test.png``.

The results of a meta-test are ``{env: {method: entry}}``, an entry being

    {"return": float,                 # mean over agents (seeds) of the final evaluation return
     "returns": [float],              # (agents,) the final evaluation return of each agent
     "curve": [float | None],         # (updates,) mean training-episode return; training methods only
     "env_steps": [int],              # (updates,) env steps per agent at each curve point, with curve
     "return_mean_action": float,     # optional: the mean action's return (EPG)
     "forward_return": float,         # optional: the forward-velocity part (locomotion bodies)
     "forward_returns": [float]}      # optional: (agents,)

Methods with a curve train (learned, ppo, ...); the others (no_update, zero_action, oracle) are
references, drawn as level lines. ``meta_test.json`` holds exactly that dict.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from metarl.runs.run_dir import write_json_atomic

CSV_COLUMNS = ("env", "seen_env", "method", "kind", "env_steps", "return")
REFERENCE_STYLE = {"no_update": ("grey", "--"), "zero_action": ("silver", ":"), "oracle": ("k", "-.")}


def mean_curve(curves) -> list:
    """(agents, updates) training-episode returns, NaN where no episode ended -> (updates,) mean over
    the finite entries, None where an update has none."""
    x = np.asarray(curves, dtype=np.float64)
    cnt = np.sum(np.isfinite(x), axis=0)
    mean = np.nansum(x, axis=0) / np.maximum(cnt, 1)
    return [float(v) if c > 0 else None for v, c in zip(mean, cnt)]


def method_result(returns, curve=None, env_steps=None, mean_action=None, forward=None) -> dict:
    """One method's entry. returns, mean_action, forward: (agents,) (means taken in their own dtype);
    curve: (updates,) from ``mean_curve``; env_steps: (updates,)."""
    out = {"return": float(np.mean(returns)), "returns": np.asarray(returns, np.float64).tolist()}
    if mean_action is not None:
        out["return_mean_action"] = float(np.mean(mean_action))
    if forward is not None:
        out["forward_return"] = float(np.mean(forward))
        out["forward_returns"] = np.asarray(forward, np.float64).tolist()
    if curve is not None:
        out["curve"] = list(curve)
        out["env_steps"] = [int(s) for s in env_steps]
    return out


def write_meta_test(run_dir: Path, results: dict, title: str, seen: Sequence[str] = ()) -> None:
    """meta_test.json (``results``), meta_test.csv and meta_test.png; ``seen``: the envs of
    ``results`` that meta-training saw (MetaGenRL), marked in the CSV and the panel titles."""
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / "meta_test.json", results)
    write_csv(run_dir / "meta_test.csv", results, seen)
    write_png(run_dir / "meta_test.png", results, title, seen)


def read_meta_test(run_dir: Path) -> dict:
    """The results dict of ``run_dir/meta_test.json``; ValueError (one line) if it predates the schema."""
    path = Path(run_dir) / "meta_test.json"
    results = json.loads(path.read_text())
    if not _is_schema(results):
        raise ValueError(f"{path} predates the one meta-test schema ({{env: {{method: {{return, ...}}}}}}); "
                         "written by an older metarl, it cannot be read")
    return results


def _is_schema(results) -> bool:
    """{env: {method: {"return": ...}}} with at least one env and one method per env."""
    def is_env(res):
        return isinstance(res, dict) and res and all(isinstance(r, dict) and "return" in r for r in res.values())

    return isinstance(results, dict) and bool(results) and all(is_env(res) for res in results.values())


def csv_rows(results: dict, seen: Sequence[str] = ()) -> list[list]:
    """Rows of CSV_COLUMNS: kind 'train' per curve point, then 'eval' (the final return, at the last
    curve step, 0 for references), 'eval_mean_action' and 'eval_forward' where present."""
    rows = []
    for env, res in results.items():
        s = env in seen
        for m, r in res.items():
            for step, v in zip(r.get("env_steps", []), r.get("curve", [])):
                rows.append([env, s, m, "train", step, "" if v is None else v])
            at = r["env_steps"][-1] if r.get("env_steps") else 0
            for kind, key in (("eval", "return"), ("eval_mean_action", "return_mean_action"),
                              ("eval_forward", "forward_return")):
                if key in r:
                    rows.append([env, s, m, kind, at, r[key]])
    return rows


def write_csv(path: Path, results: dict, seen: Sequence[str] = ()) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(csv_rows(results, seen))


def meta_test_figure(results: dict, title: str, seen: Sequence[str] = ()):
    """A matplotlib Figure, one panel per env: training methods as curves, references as labelled
    level lines at their final return."""
    fig = Figure(figsize=(5 * len(results), 4))  # no pyplot: no GUI backend, nothing to close
    axes = fig.subplots(1, len(results), squeeze=False)
    for ax, (env, res) in zip(axes[0], results.items()):
        for m, r in res.items():
            _draw_method(ax, m, r)
        ax.set_title(f"{env} ({'seen' if env in seen else 'unseen'})" if seen else env)
        ax.set_xlabel("env steps per agent")
        ax.set_ylabel("episode return")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _draw_method(ax, m: str, r: dict) -> None:
    fwd = f", fwd {r['forward_return']:.1f}" if "forward_return" in r else ""
    label = f"{m} (final {r['return']:.1f}{fwd})"
    if "curve" in r:
        y = np.array([np.nan if v is None else v for v in r["curve"]], dtype=float)
        ok = np.isfinite(y)
        ax.plot(np.asarray(r["env_steps"])[ok], y[ok], marker="." if ok.sum() == 1 else None, label=label)
    else:
        color, ls = REFERENCE_STYLE.get(m, ("C7", "--"))
        ax.axhline(r["return"], color=color, ls=ls, lw=1, label=label)


def write_png(path: Path, results: dict, title: str, seen: Sequence[str] = ()) -> None:
    fig = meta_test_figure(results, title, seen)
    fig.savefig(path, dpi=100)
