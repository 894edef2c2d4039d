"""EPG meta-test tables over seeds: tuning seeds and fresh seeds, every method beside doing nothing.

    python -m benchmarks.epg_seeds --experiment epg_point --objective residual --seeds 0-5
    python -m benchmarks.epg_seeds --experiment epg_point --collect runs/seeds/epg_point-residual-s*

Runs ``python -m experiments.<experiment> --seed S`` once per seed (``cpu`` preset unless
``--preset``; each in its own process, one after another, so wall times are comparable) into
``runs/seeds/<experiment>-<objective>-s<S>``, or with ``--collect`` only reads finished runs. Then it
prints one row per seed of the sampled-action meta-test returns (learned, PPO, initial loss,
no-update, zero-action, oracle where the family has one), the means of the tuning seeds and of the
fresh seeds, the issue's criteria on the fresh seeds' mean, and rewrites its RESULTS.md section
(``epg_seeds-<experiment>-<objective>``). Seeds below ``--fresh-from`` are the tuning seeds.
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

METHODS = ("learned", "ppo", "initial_loss", "no_update", "zero_action", "oracle")


def parse_seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def run_seed(experiment: str, objective: str, preset: str, seed: int, run_dir: str) -> None:
    cmd = [sys.executable, "-m", f"experiments.{experiment}", "--preset", preset, "--seed", str(seed),
           "--run-dir", run_dir, "--overwrite", "--objective", objective]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def criteria(mean: dict, family: str) -> list[tuple[str, bool]]:
    """The issue's claims on a mean row: [(text, holds)]."""
    if family == "goal_point":
        half = mean["zero_action"] + 0.5 * (mean["oracle"] - mean["zero_action"])
        return [(f"learned >= zero action + 0.5 (oracle - zero action) = {half:.2f}", mean["learned"] >= half),
                (f"learned > PPO ({mean['ppo']:.2f})", mean["learned"] > mean["ppo"])]
    if family == "random_reacher":
        return [(f"learned >= zero action + 2 = {mean['zero_action'] + 2:.2f}", mean["learned"] >= mean["zero_action"] + 2),
                (f"learned >= no-update + 2 = {mean['no_update'] + 2:.2f}", mean["learned"] >= mean["no_update"] + 2),
                (f"learned >= PPO ({mean['ppo']:.2f})", mean["learned"] >= mean["ppo"])]
    return []


def table(summaries: list[dict], fresh_from: int) -> tuple[str, list[str]]:
    methods = [m for m in METHODS if all(f"{m}_return" in s["meta_test"] for s in summaries)]
    header = ["seed", *methods, "learned (mean action)", "wall (s)"]
    rows, groups = [], {"tuning": [], "fresh": []}
    for s in sorted(summaries, key=lambda s: s["seed"]):
        mt = s["meta_test"]
        vals = [mt[f"{m}_return"] for m in methods]
        groups["fresh" if s["seed"] >= fresh_from else "tuning"].append(vals)
        rows.append([s["seed"], *[f"{v:.2f}" for v in vals], f"{mt['learned_return_mean_action']:.2f}",
                     f"{s['wall_s']:.0f}"])
    notes = []
    for name, vals in groups.items():
        if not vals:
            continue
        mean = np.mean(vals, axis=0)
        rows.append([f"**mean, {name} seeds**", *[f"**{v:.2f}**" for v in mean], "", ""])
        if name == "fresh":
            m = dict(zip(methods, mean))
            for text, ok in criteria(m, summaries[0]["env"]):
                notes.append(f"- fresh seeds' mean: {text}: **{'holds' if ok else 'does not hold'}**")
            notes.append(f"- fresh seeds' mean: what evolution added, learned - initial loss: "
                         f"**{m['learned'] - m['initial_loss']:+.2f}**")
    return markdown_table(header, rows), notes


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="epg_point")
    ap.add_argument("--objective", default="pure")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seeds", default="0-5")
    ap.add_argument("--fresh-from", type=int, default=3, help="first seed never used in tuning")
    ap.add_argument("--collect", nargs="*", default=None, help="only tabulate these finished run dirs")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.collect is not None:
        dirs = sorted({d for pat in args.collect for d in glob.glob(pat)})
    else:
        dirs = []
        for seed in parse_seeds(args.seeds):
            d = f"runs/seeds/{args.experiment}-{args.objective}-s{seed}"
            run_seed(args.experiment, args.objective, args.preset, seed, d)
            dirs.append(d)
    summaries = [json.load(open(os.path.join(d, "summary.json"))) for d in dirs
                 if os.path.exists(os.path.join(d, "summary.json"))]
    if not summaries:
        print("error: no finished run (summary.json) among the given run dirs", file=sys.stderr)
        raise SystemExit(2)
    body, notes = table(summaries, args.fresh_from)
    s0 = summaries[0]
    title = f"EPG seeds: {args.experiment}, objective {s0.get('objective', args.objective)}, {s0['preset']} preset"
    text = (section_preamble(title) +
            f"- meta-test: {s0['meta_test']['agents']} fresh agents per method on the test split, "
            f"{s0['meta_test'].get('eval_episodes', '?')} evaluation episodes each, "
            f"{s0['meta_test'].get('evaluation', 'sampled actions')}; seeds < {args.fresh_from} were "
            f"used for tuning, the others never\n\n{body}\n\n" + "\n".join(notes) + "\n")
    print(text)
    if not args.no_write:
        write_section(f"epg_seeds-{args.experiment}-{s0.get('objective', args.objective)}", text)


if __name__ == "__main__":
    main()
