"""Turn a run directory (EPG or MetaGenRL) into PNG learning curves.

    python -m metarl.runs.plot RUN_DIR

Writes ``meta_train.png`` from metrics.jsonl (EPG: fitness mean/max per generation; MetaGenRL:
the agents' return per meta-training env and their mean per iteration) and, when the run has a
meta-test, ``meta_test.png`` from meta_test.json (metarl.runs.meta_test_schema's schema: one panel per env,
training methods as curves, do-nothing references and the oracle as level lines).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from metarl.runs import meta_test_schema
from metarl.runs.metrics_log import read_records
from metarl.runs.run_dir import ConfigError, fail, read_json


def meta_train_series(recs: list[dict]) -> tuple[str, dict]:
    """(x key, {label: (x, y)}) from metrics.jsonl records: EPG's fitness_mean / fitness_max per
    generation, MetaGenRL's per-env 'return' ({env: value}) and mean_return per iteration."""
    x_key = "generation" if recs and "generation" in recs[0] else "iteration"
    x = [r[x_key] for r in recs]
    series = {}
    for k in ("fitness_mean", "fitness_max", "mean_return"):
        if any(k in r for r in recs):
            series[k] = (x, [_num(r.get(k)) for r in recs])
    first = recs[0].get("return") if recs else None
    for e in first if isinstance(first, dict) else ():
        series[f"return {e}"] = (x, [_num(r["return"].get(e)) for r in recs])
    held = [(r[x_key], r["eval_mean"]) for r in recs if r.get("eval_mean") is not None]
    if held:  # EPG's held-out evaluations of the ES mean, every --eval-every generations
        series["held-out eval (ES mean)"] = tuple(map(list, zip(*held)))
    return x_key, series


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def plot_meta_train(run_dir: Path, recs: list[dict]) -> Path:
    x_key, series = meta_train_series(recs)
    fig = Figure(figsize=(6, 4))  # no pyplot: no GUI backend, nothing to close
    ax = fig.subplots()
    for label, (x, y) in series.items():
        held = label.startswith("held-out")
        ax.plot(x, y, ls="none" if held else "-", marker="o" if held or len(x) == 1 else None,
                lw=1 if label.startswith("return ") else 1.5, label=label)
    ax.set_xlabel(x_key)
    ax.set_ylabel("fitness (return)" if x_key == "generation" else "training episode return")
    ax.set_title(f"meta-training: {run_dir.name}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = run_dir / "meta_train.png"
    fig.savefig(out, dpi=100)
    return out


def seen_envs(run_dir: Path) -> list[str]:
    """MetaGenRL's meta-training envs (config.json 'train_envs'), marked seen on the meta-test; [] for EPG."""
    cfg = run_dir / "config.json"
    return list(read_json(cfg).get("train_envs", [])) if cfg.exists() else []


def plot_run(run_dir: Path) -> list[Path]:
    """Writes meta_train.png and meta_test.png where their inputs exist; returns the paths written.
    Exits 2 (one line) on a meta_test.json that predates metarl.runs.meta_test_schema's schema or cannot be
    read, and on a metrics.jsonl or config.json that is not a metarl run's. A torn last line of
    metrics.jsonl (a run killed mid-write) is skipped."""
    run_dir = Path(run_dir)
    results = None
    if (run_dir / "meta_test.json").exists():
        try:
            results = meta_test_schema.read_meta_test(run_dir)
        except (OSError, ValueError) as e:
            fail(f"cannot read {str(run_dir / 'meta_test.json')!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    written = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        recs = read_records(metrics)
        if recs and not any(k in recs[0] for k in ("generation", "iteration")):
            fail(f"{str(metrics)!r} is not a metarl metrics log (no 'generation' or 'iteration' in its records)")
        if recs:
            written.append(plot_meta_train(run_dir, recs))
    if results is not None:
        out = run_dir / "meta_test.png"
        meta_test_schema.write_png(out, results, f"meta-test: {run_dir.name}", seen_envs(run_dir))
        written.append(out)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.error = lambda message: fail(message)
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        fail(f"run dir {str(run_dir)!r} does not exist or is not a directory")
    try:
        written = plot_run(run_dir)
    except ConfigError as e:
        fail(str(e))
    except (OSError, KeyError, TypeError, ValueError) as e:  # a file of a run that is not metarl's
        fail(f"cannot plot run dir {str(run_dir)!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if not written:
        fail(f"run dir {str(run_dir)!r} holds no metrics.jsonl or meta_test.json to plot")
    for p in written:
        print(p)


if __name__ == "__main__":
    main()
