"""Turn a run directory into PNG learning curves.

    python -m metarl.plot RUN_DIR

Writes ``meta_train.png`` (fitness mean/max per generation from metrics.jsonl) and, when the run
has a meta-test, ``meta_test.png`` (training curves of the learned objective vs the baselines).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from metarl.runs import fail


def plot_run(run_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metarl.evaluate import plot_curves

    written = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        recs = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]
        x_key = "generation" if recs and "generation" in recs[0] else "iteration"
        fig, ax = plt.subplots(figsize=(6, 4))
        x = [r.get(x_key, i) for i, r in enumerate(recs)]
        for k in ("fitness_mean", "fitness_max", "mean_return"):
            if recs and k in recs[0]:
                ax.plot(x, [r[k] for r in recs], label=k)
        ax.set_xlabel(x_key)
        ax.set_ylabel("return")
        ax.set_title(f"meta-training: {run_dir.name}")
        ax.legend()
        fig.tight_layout()
        out = run_dir / "meta_train.png"
        fig.savefig(out, dpi=100)
        plt.close(fig)
        written.append(out)
    mt = run_dir / "meta_test.json"
    if mt.exists():
        res = json.loads(mt.read_text())
        methods = [k[: -len("_curve")] for k in res if k.endswith("_curve") and f"{k[:-6]}_return" in res]
        res = {k: (np.asarray(v, dtype=float) if isinstance(v, list) else v) for k, v in res.items()}
        out = run_dir / "meta_test.png"
        plot_curves(out, res, methods, f"meta-test: {run_dir.name}")
        written.append(out)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        fail(f"run dir {str(run_dir)!r} does not exist or is not a directory")
    written = plot_run(run_dir)
    if not written:
        fail(f"run dir {str(run_dir)!r} holds no metrics.jsonl or meta_test.json to plot")
    for p in written:
        print(p)


if __name__ == "__main__":
    main()
