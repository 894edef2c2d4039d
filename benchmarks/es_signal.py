"""The ES signal of EPG runs, per objective: gradient agreement across task halves, ties and noise.

    python -m benchmarks.es_signal --collect 'runs/diag/*-s0'
    python -m benchmarks.es_signal --run residual,pure,lstm --generations 10   # runs them first

Reads each run's metrics.jsonl (written with ``--noise-probe``) and tabulates, over the generations
after the PPO share f has reached 0 (the generations where the learned objective alone is scored):
the mean and the fraction > 0 of ``es_grad_cosine`` (cos of the ES gradients from the two halves of
the tasks, same perturbations: about 0 when members' differences do not repeat across tasks),
the mean ``fitness_ties`` (fraction of members tied with another), the mean ``fitness_noise_ratio``
(s / sigma: the members' true spread over their draw-to-draw noise, 0 for pure noise), the
within-generation spread of members' fitness, and the meta-test's learned and initial returns.
A row is one run (one objective and its flags). Rewrites the RESULTS.md section ``es_signal``
(``--section`` to keep another).

Runs recorded before 2026-12-06 14:00 wrote the naive ratio std(mean) / sigma (1/sqrt 2 for pure noise);
``--naive-ratio`` converts them: s / sigma = sqrt(max(r^2 - 1/2, 0)).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.common import markdown_table, section_preamble, write_section


def _flags(argv: list[str]) -> list[str]:
    """The run's flags without its run dir and the diagnostic-run sizes every row shares."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--run-dir", "--test-agents"):
            skip = True
        elif a not in ("--noise-probe", "--overwrite"):
            out.append(a)
    return out


def read_run(run_dir: str, naive_ratio: bool = False) -> dict:
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    summ = json.load(open(os.path.join(run_dir, "summary.json")))
    recs = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    recs = [r for r in recs if "fitness_mean" in r]
    after = [r for r in recs if r.get("ppo_factor", 0.0) == 0.0] or recs

    def col(key):
        return np.array([r.get(key, np.nan) for r in after], np.float64)

    ratio = col("fitness_noise_ratio")
    if naive_ratio:
        ratio = np.sqrt(np.maximum(ratio ** 2 - 0.5, 0.0))
    cos = col("es_grad_cosine")
    mt = summ["meta_test"]
    return {"dir": run_dir, "objective": summ.get("objective"), "seed": summ.get("seed"),
            "flags": " ".join(_flags(cfg.get("argv", []))),
            "generations": len(recs), "scored": len(after),
            "cos_mean": np.nanmean(cos), "cos_pos": np.mean(cos[np.isfinite(cos)] > 0),
            "ties": np.nanmean(col("fitness_ties")), "ratio": np.nanmean(ratio),
            "spread": np.nanmean(col("fitness_max") - col("fitness_min")),
            "fitness_first": recs[0]["fitness_mean"], "fitness_last": recs[-1]["fitness_mean"],
            "learned": mt["learned_return"], "initial": mt["initial_loss_return"],
            "zero": mt["zero_action_return"], "agents": mt["agents"],
            "series": " ".join(f"{r.get('es_grad_cosine', np.nan):+.2f}" for r in recs)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collect", nargs="*", default=None, help="finished run dirs (globs)")
    ap.add_argument("--run", default=None, help="objectives to run first (comma list), cpu preset, seed --seed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--experiment", default="epg_point")
    ap.add_argument("--naive-ratio", nargs="*", default=[], help="run dirs whose noise ratio is the naive one")
    ap.add_argument("--section", default="es_signal")
    ap.add_argument("--note", default="", help="a line printed under the table")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    dirs = sorted({d for pat in (args.collect or []) for d in glob.glob(pat)})
    for obj in (args.run.split(",") if args.run else []):
        d = f"runs/diag/{args.experiment}-{obj}-s{args.seed}"
        cmd = [sys.executable, "-m", f"experiments.{args.experiment}", "--objective", obj, "--noise-probe",
               "--generations", str(args.generations), "--test-agents", "16", "--seed", str(args.seed),
               "--run-dir", d, "--overwrite"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        dirs.append(d)
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, "summary.json"))]
    if not dirs:
        print("error: no finished run (summary.json) among the given run dirs", file=sys.stderr)
        raise SystemExit(2)
    naive = {os.path.normpath(d) for pat in args.naive_ratio for d in glob.glob(pat)}
    rows = [read_run(d, os.path.normpath(d) in naive) for d in dirs]
    header = ["run flags", "seed", "gens (scored)", "grad cos mean", "grad cos > 0", "ties", "s / sigma",
              "member spread", "fitness first -> last", "meta-test learned", "initial", "zero action"]
    table = markdown_table(header, [[
        f"`{r['flags']}`", r["seed"], f"{r['generations']} ({r['scored']})", f"{r['cos_mean']:+.2f}",
        f"{r['cos_pos']:.0%}", f"{r['ties']:.2f}", f"{r['ratio']:.2f}", f"{r['spread']:.2f}",
        f"{r['fitness_first']:.2f} -> {r['fitness_last']:.2f}", f"{r['learned']:.2f}", f"{r['initial']:.2f}",
        f"{r['zero']:.2f}"] for r in rows])
    series = "\n".join(f"- `{r['flags']}`: {r['series']}" for r in rows)
    text = (section_preamble("ES signal per objective (`es_signal.py`)") +
            "- columns: means over the generations after the PPO share f reached 0 (all generations for "
            "objectives without f); grad cos = cos of the ES gradients from the two task halves, same "
            "perturbations; ties = fraction of members tied with another (1e-6); s / sigma = members' true "
            "fitness spread over their draw-to-draw noise (second common-random-numbers draw, --noise-probe); "
            "member spread = max - min of members' fitness in a generation; meta-test: "
            f"{rows[0]['agents']} agents, sampled actions\n\n{table}\n\n"
            f"es_grad_cosine per generation:\n\n{series}\n" + (f"\n{args.note}\n" if args.note else ""))
    print(text)
    if not args.no_write:
        write_section(args.section, text)


if __name__ == "__main__":
    main()
