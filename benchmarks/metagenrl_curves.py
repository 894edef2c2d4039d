"""MetaGenRL meta-training curves of finished (or running) runs: what meta-training did, per body.

    python -m benchmarks.metagenrl_curves runs/mg/cpu24k-s0 runs/mg/cpu-s1 [--tag T] [--png P] [--write]

Reads each run's ``metrics.jsonl`` (one record per meta-iteration) and, when present, its
``summary.json`` and ``meta_test.json``. Prints and (``--write``) puts in RESULTS.md
(``metagenrl_curves-<tag>``) one table per run, in windows of meta-iterations:

- ``alignment/<body>``: cos(grad_phi L_alpha, grad_phi J) on the meta-training agents, i.e. whether a
  step on the learned objective moves a policy where the agent's own critic would (1: the same
  direction, 0: unrelated); meta-training should raise it (metarl/outer/metagrad.py);
- ``return/<body>``: the meta-training agents' mean completed-episode return (a DDPG/L_alpha blend
  during the warm start, L_alpha alone after it);
- ``meta_val_return/<body>``: the fresh held-out agents trained by the frozen objective
  (meta-validation; the run keeps the best objective by its mean);

and the meta-test's unseen body: each method's return and forward-progress return. ``--png``
draws the three curves per run and the unseen body's training curves (default:
benchmarks/metagenrl_curves-<tag>.png).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from benchmarks.common import markdown_table, section_preamble, write_section


def read_run(run_dir: str) -> dict:
    """{'records': [...], 'summary': dict | None, 'meta_test': dict | None, 'warm_start_its': float}."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        raise SystemExit(f"{run_dir}: no metrics.jsonl (expected a MetaGenRL run directory)")
    records = [json.loads(line) for line in open(path) if line.strip()]
    out = {"dir": run_dir, "records": records, "summary": None, "meta_test": None}
    for name in ("summary", "meta_test"):
        p = os.path.join(run_dir, f"{name}.json")
        if os.path.exists(p):
            out[name] = json.load(open(p))
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    meta = cfg.get("config", {})
    out["warm_start_its"] = meta.get("warm_start_steps", 0) / max(meta.get("steps_per_iteration", 1), 1)
    out["train_envs"] = cfg.get("train_envs", [])
    out["seed"] = cfg.get("seed")
    return out


def series(records: list, key: str, body: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, values) of ``key`` (a dict per body when ``body`` is given); records without it skipped."""
    its, vals = [], []
    for r in records:
        v = r.get(key if body is None else key)
        if isinstance(v, dict):
            v = v.get(body)
        elif body is not None and f"{key}/{body}" in r:
            v = r[f"{key}/{body}"]
        elif body is not None:
            v = None
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            continue
        its.append(r["iteration"])
        vals.append(float(v))
    return np.asarray(its), np.asarray(vals)


def window_table(run: dict, width: int = 6) -> str:
    """Rows: alpha_0's meta-validation (iteration 0), then windows of ``width`` meta-iterations
    (lo, lo + width]: mean alignment and return per body, the window's last meta_val_return."""
    recs = run["records"]
    last = max(r["iteration"] for r in recs)
    bodies = run["train_envs"]
    header = ["meta-iterations"] + [f"alignment {b}" for b in bodies] + [f"return {b}" for b in bodies] \
        + [f"meta_val_return {b}" for b in bodies] + ["meta_val_return (mean)"]
    rows = []
    windows = [(-1, 0)] + [(lo, min(lo + width, last)) for lo in range(0, last, width)]
    for lo, hi in windows:
        cells = ["0 (alpha_0)" if hi == 0 else f"{lo + 1}-{hi}"]
        for key in ("alignment", "return"):
            for b in bodies:
                it, v = series(recs, key, b)
                sel = v[(it > lo) & (it <= hi)]
                cells.append("" if not sel.size else f"{sel.mean():+.3f}" if key == "alignment" else f"{sel.mean():.1f}")
        for b in (*bodies, None):
            it, v = series(recs, "meta_val_return", b)
            sel = v[(it > lo) & (it <= hi)]
            cells.append(f"{sel[-1]:.1f}" if sel.size else "")
        rows.append(cells)
    return markdown_table(header, rows)


def meta_test_rows(run: dict) -> str | None:
    s = run["summary"]
    if not s:
        return None
    unseen = s["meta_test"].get("unseen_envs") or [s["meta_test"]["env"]]
    body = unseen[0]
    per = s["meta_test"]["per_env"][body]
    methods = [m for m in ("learned", "initial_loss", "td3", "reinforce", "ppo", "no_update", "zero_action")
               if f"{m}_return" in per]
    rows = [[m, f"{per[f'{m}_return']:.1f}",
             f"{per[f'{m}_forward_return']:.1f}" if f"{m}_forward_return" in per else ""] for m in methods]
    sel = s.get("meta_validation") or {}
    note = (f"meta-test on {body} (unseen), {s['meta_test']['seeds']} agents per method; learned = the "
            + (f"objective of meta-iteration {sel['selected_iteration']} (meta_val_return "
               f"{sel['selected_meta_val_return']:.1f}, the best)" if "selected_iteration" in sel
               else "last objective"))
    return note + "\n\n" + markdown_table(["method", "return", "forward return"], rows)


def plot(runs: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 4, figsize=(20, 3.6 * len(runs)), squeeze=False)
    for row, run in zip(axes, runs):
        recs, bodies = run["records"], run["train_envs"]
        for ax, key, title in ((row[0], "alignment", "alignment cos(grad L_alpha, grad J)"),
                               (row[1], "return", "meta-training agents' return"),
                               (row[2], "meta_val_return", "meta-validation return (fresh agents)")):
            for b in bodies:
                it, v = series(recs, key, b)
                ax.plot(it, v, marker="o" if key == "meta_val_return" else None, label=b)
            ax.axvline(run["warm_start_its"], color="grey", ls=":", lw=1)
            ax.set_title(f"seed {run['seed']}: {title}", fontsize=9)
            ax.set_xlabel("meta-iteration (dotted: warm start ends)")
            ax.legend(fontsize=8)
        ax = row[3]
        mt = run["meta_test"]
        if mt:
            body = next(iter(mt))
            for m in ("learned", "initial_loss", "td3", "zero_action"):
                e = mt[body].get(m)
                if e and e.get("curve"):
                    ax.plot(e["env_steps"], e["curve"], label=m)
                elif e:
                    ax.axhline(e["return"], ls="--", lw=1, label=f"{m} (deployed)")
            ax.set_title(f"seed {run['seed']}: meta-test {body}, training-episode return", fontsize=9)
            ax.set_xlabel("env steps per agent")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="MetaGenRL run directories")
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--window", type=int, default=6, help="meta-iterations per table row")
    ap.add_argument("--png", default=None)
    ap.add_argument("--write", action="store_true", help="write the RESULTS.md section")
    args = ap.parse_args(argv)
    if args.window < 1:
        raise SystemExit(f"--window must be >= 1, got {args.window}")
    runs = [read_run(d) for d in args.runs]
    png = args.png or os.path.join("benchmarks", f"metagenrl_curves-{args.tag}.png")
    parts = [section_preamble(f"MetaGenRL meta-training curves ({args.tag}): alignment, return, meta-validation"),
             f"- runs: {', '.join(r['dir'] for r in runs)}; figure: `{png}`",
             "- alignment = cos(grad_phi L_alpha, grad_phi J) on the meta-training agents (1: L_alpha steps "
             "where the agent's critic would); return: those agents (DDPG/L_alpha blend until the warm start "
             "ends); meta_val_return: fresh held-out agents trained by the frozen objective (last point in "
             "the window)", ""]
    for run in runs:
        parts += [f"### seed {run['seed']} (`{run['dir']}`, warm start ends at meta-iteration "
                  f"{run['warm_start_its']:.0f})", "", window_table(run, args.window), ""]
        mt = meta_test_rows(run)
        if mt:
            parts += [mt, ""]
    body = "\n".join(parts)
    print(body)
    plot(runs, png)
    if args.write:
        write_section(f"metagenrl_curves-{args.tag}", body)


if __name__ == "__main__":
    sys.exit(main())
