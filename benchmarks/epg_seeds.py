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

from benchmarks.common import (markdown_table, median_and_worst, paired_bootstrap, section_preamble,
                               write_section)

METHODS = ("learned", "ppo", "initial_loss", "no_update", "zero_action", "oracle")


def parse_seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def run_seed(experiment: str, objective: str | None, preset: str, seed: int, run_dir: str,
             extra: list[str] = ()) -> None:
    cmd = [sys.executable, "-m", f"experiments.{experiment}", "--preset", preset, "--seed", str(seed),
           "--run-dir", run_dir, "--overwrite", *(["--objective", objective] if objective else []), *extra]
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


def meta_test_entries(run_dir: str, env: str) -> dict:
    """{method: entry} of a finished run's meta_test.json for ``env`` ({} where there is none)."""
    path = os.path.join(run_dir, "meta_test.json")
    return json.load(open(path))[env] if os.path.exists(path) else {}


def per_agent(run_dir: str, env: str) -> dict:
    """{method: (N,) per-agent sampled-action returns} from a finished run's meta_test.json."""
    mt = meta_test_entries(run_dir, env)
    return {m: np.asarray(v["returns"], np.float64) for m, v in mt.items() if "returns" in v}


def curve_auc(run_dir: str, env: str) -> dict:
    """{method: mean return over the meta-test lifetime} (the mean of its learning curve: the agents'
    mean return of the episodes completed in each update's rollout; "trains faster" reads this, the
    criteria read the final return) from a finished run's meta_test.json, for methods with a curve."""
    mt = meta_test_entries(run_dir, env)
    return {m: float(np.nanmean(np.array([np.nan if x is None else x for x in v["curve"]], np.float64)))
            for m, v in mt.items() if v.get("curve")}


def table(summaries: list[dict], fresh_from: int, agents: list[dict] | None = None,
          aucs: list[dict] | None = None) -> tuple[str, list[str]]:
    """The per-seed table of means, learned - initial with its paired bootstrap 95% interval over the
    agents (agent i of both methods met the same task with the same seed), and each method's median and
    worst 5% where the per-agent returns are at hand. ``agents``: one per_agent dict per summary."""
    agents = agents or [{} for _ in summaries]
    aucs = aucs or [{} for _ in summaries]
    methods = [m for m in METHODS if all(f"{m}_return" in s["meta_test"] for s in summaries)]
    header = ["seed", *methods, "learned - initial [95% CI]", "learned (mean action)",
              "lifetime mean return, learned / initial", "wall (s)"]
    rows, groups, spread, deltas = [], {"tuning": [], "fresh": []}, [], {"tuning": [], "fresh": []}
    for s, ag, auc in sorted(zip(summaries, agents, aucs), key=lambda p: p[0]["seed"]):
        mt = s["meta_test"]
        vals = [mt[f"{m}_return"] for m in methods]
        group = "fresh" if s["seed"] >= fresh_from else "tuning"
        groups[group].append(vals)
        delta = mt["learned_return"] - mt["initial_loss_return"]
        if "learned" in ag and "initial_loss" in ag:
            d, lo, hi = paired_bootstrap(ag["learned"], ag["initial_loss"])
            cell = f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
            deltas[group].append(lo > 0)
        else:
            cell = f"{delta:+.2f} [n/a]"
        auc_cell = (f"{auc['learned']:.2f} / {auc['initial_loss']:.2f}"
                    if "learned" in auc and "initial_loss" in auc else "n/a")
        rows.append([s["seed"], *[f"{v:.2f}" for v in vals], cell,
                     f"{mt['learned_return_mean_action']:.2f}", auc_cell, f"{s['wall_s']:.0f}"])
        if ag:
            spread.append([s["seed"], *[("{:.2f} / {:.2f}".format(*median_and_worst(ag[m])) if m in ag else "")
                                        for m in methods]])
    notes = []
    for name, vals in groups.items():
        if not vals:
            continue
        mean = np.mean(vals, axis=0)
        m = dict(zip(methods, mean))
        rows.append([f"**mean, {name} seeds**", *[f"**{v:.2f}**" for v in mean],
                     f"**{m['learned'] - m['initial_loss']:+.2f}**", "", "", ""])
        if name == "fresh":
            for text, ok in criteria(m, summaries[0]["env"]):
                notes.append(f"- fresh seeds' mean: {text}: **{'holds' if ok else 'does not hold'}**")
            notes.append(f"- fresh seeds' mean: what evolution added, learned - initial loss: "
                         f"**{m['learned'] - m['initial_loss']:+.2f}**")
            if "oracle" in m:
                bar = 0.25 * (m["oracle"] - m["initial_loss"])
                notes.append(f"- fresh seeds' mean: learned - initial >= 0.25 (oracle - initial) = {bar:.2f}: "
                             f"**{'holds' if m['learned'] - m['initial_loss'] >= bar else 'does not hold'}**")
            if deltas["fresh"]:
                notes.append(f"- fresh seeds whose paired 95% interval of learned - initial lies above 0: "
                             f"**{sum(deltas['fresh'])} of {len(deltas['fresh'])}**")
    text = markdown_table(header, rows)
    if spread:
        text += ("\n\nMedian / mean of the worst 5% of the agents, per seed (the criteria read the means: "
                 "a user pays for every agent that runs away):\n\n" + markdown_table(["seed", *methods], spread))
    return text, notes


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="epg_point")
    ap.add_argument("--objective", default=None, help="passed on to the experiment (default: its preset's)")
    ap.add_argument("--tag", default=None, help="run dirs runs/seeds/<experiment>-<tag>-s<S> (default: the objective "
                                                  "or 'preset')")
    ap.add_argument("--extra", default="", help="more flags for the experiment, one string, e.g. '--sigma 0.03'")
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
            d = f"runs/seeds/{args.experiment}-{args.tag or args.objective or 'preset'}-s{seed}"
            run_seed(args.experiment, args.objective, args.preset, seed, d, args.extra.split())
            dirs.append(d)
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, "summary.json"))]
    summaries = [json.load(open(os.path.join(d, "summary.json"))) for d in dirs]
    agents = [per_agent(d, s["env"]) for d, s in zip(dirs, summaries)]
    aucs = [curve_auc(d, s["env"]) for d, s in zip(dirs, summaries)]
    if not summaries:
        print("error: no finished run (summary.json) among the given run dirs", file=sys.stderr)
        raise SystemExit(2)
    body, notes = table(summaries, args.fresh_from, agents, aucs)
    s0 = summaries[0]
    objective = s0.get("objective") or s0.get("config", {}).get("objective") or args.objective
    tag = args.tag or objective
    title = (f"EPG seeds: {args.experiment}, objective {objective}, {s0['preset']} preset"
             + (f", {args.tag}" if args.tag else "") + (f" ({args.extra})" if args.extra else ""))
    text = (section_preamble(title) +
            f"- meta-test: {s0['meta_test']['agents']} fresh agents per method on the test split, "
            f"{s0['meta_test'].get('eval_episodes', '?')} evaluation episodes each, "
            f"{s0['meta_test'].get('evaluation', 'sampled actions')}; seeds < {args.fresh_from} were "
            f"used for tuning, the others never\n\n{body}\n\n" + "\n".join(notes) + "\n")
    print(text)
    if not args.no_write:
        write_section(f"epg_seeds-{args.experiment}-{tag}", text)


if __name__ == "__main__":
    main()
