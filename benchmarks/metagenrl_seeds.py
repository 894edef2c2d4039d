"""MetaGenRL meta-test tables over seeds on one body: every method beside doing nothing.

    python -m benchmarks.metagenrl_seeds --collect 'runs/seeds/metagenrl-*-s*' --env hopper --tag cpu

Reads finished runs' ``summary.json["meta_test"]["per_env"][env]`` and prints one row per seed of
each method's return and, on locomotion bodies, its forward-progress return (the return less the
survival bonus and control cost: brax's hopper pays +1 per step for staying up, so a policy that
only balances must not pass for one that moves). Then the means of the tuning seeds (below
``--fresh-from``) and of the fresh seeds, the issue's criteria on the fresh seeds' mean, and its
RESULTS.md section (``metagenrl_seeds-<tag>-<env>``).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

from benchmarks.common import (markdown_table, median_and_worst, paired_bootstrap, section_preamble,
                               write_section)

METHODS = ("learned", "initial_loss", "td3", "reinforce", "ppo", "no_update", "zero_action")


def rows_of(summary: dict, env: str, kind: str) -> dict:
    per = summary["meta_test"]["per_env"][env]
    suffix = "_forward_return" if kind == "forward" else "_return"
    return {m: per[f"{m}{suffix}"] for m in METHODS if f"{m}{suffix}" in per}


def criteria(ret: dict, fwd: dict | None) -> list[tuple[str, bool]]:
    """The issue's claims on the fresh seeds' mean: [(text, holds)]."""
    out = []
    for name, m in (("return", ret), ("forward return", fwd)):
        if not m:
            continue
        gap = m["td3"] - m["no_update"]
        out.append((f"{name}: TD3 beats no-update ({m['td3']:.2f} vs {m['no_update']:.2f})", gap > 0))
        out.append((f"{name}: learned - no-update = {m['learned'] - m['no_update']:.2f} >= a quarter of "
                    f"TD3 - no-update = {gap / 4:.2f}", m["learned"] - m["no_update"] >= gap / 4))
        out.append((f"{name}: learned beats REINFORCE ({m['reinforce']:.2f})", m["learned"] > m["reinforce"]))
        out.append((f"{name}: learned beats zero action ({m['zero_action']:.2f})",
                    m["learned"] > m["zero_action"]))
    return out


def per_agent(run_dir: str, env: str, kind: str) -> dict:
    """{method: (agents,) returns} (``kind`` "forward": forward-progress returns) from meta_test.json."""
    path = os.path.join(run_dir, "meta_test.json")
    if not os.path.exists(path):
        return {}
    key = "forward_returns" if kind == "forward" else "returns"
    return {m: np.asarray(v[key], np.float64) for m, v in json.load(open(path)).get(env, {}).items() if key in v}


def table(summaries: list[dict], env: str, fresh_from: int, kind: str, agents: list[dict] | None = None):
    """Per-seed means, and learned - initial with its paired bootstrap 95% interval over the meta-test
    agents (every method trains the same seeds on the same tasks). Returns (markdown, means by group,
    {group: [interval above 0 per seed]})."""
    agents = agents or [{} for _ in summaries]
    methods = [m for m in METHODS if all(m in rows_of(s, env, kind) for s in summaries)]
    header = ["seed", *methods, "learned - initial [95% CI]", "wall (s)"]
    rows, groups, above = [], {"tuning": [], "fresh": []}, {"tuning": [], "fresh": []}
    for s, ag in sorted(zip(summaries, agents), key=lambda p: p[0]["seed"]):
        r = rows_of(s, env, kind)
        vals = [r[m] for m in methods]
        group = "fresh" if s["seed"] >= fresh_from else "tuning"
        groups[group].append(vals)
        if "learned" in ag and "initial_loss" in ag and ag["learned"].size >= 2:
            d, lo, hi = paired_bootstrap(ag["learned"], ag["initial_loss"])
            cell = f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
            above[group].append(lo > 0)
        else:
            cell = f"{r['learned'] - r['initial_loss']:+.2f} [n/a]" if "initial_loss" in r else "n/a"
        rows.append([s["seed"], *[f"{v:.2f}" for v in vals], cell, f"{s['wall_s']:.0f}"])
    means = {}
    for name, vals in groups.items():
        if vals:
            mean = np.mean(vals, axis=0)
            means[name] = dict(zip(methods, mean.tolist()))
            m = means[name]
            delta = f"**{m['learned'] - m['initial_loss']:+.2f}**" if "initial_loss" in m else ""
            rows.append([f"**mean, {name} seeds**", *[f"**{v:.2f}**" for v in mean], delta, ""])
    return markdown_table(header, rows), means, above


def spread_table(summaries: list[dict], agents: list[dict]) -> str | None:
    """Per seed and method: the median agent / the worst agent (the mean of the worst 5%: one of 8),
    from meta_test.json's per-agent returns; None without them."""
    pairs = sorted(((s, ag) for s, ag in zip(summaries, agents) if ag), key=lambda p: p[0]["seed"])
    if not pairs:
        return None
    methods = [m for m in METHODS if all(m in ag for _, ag in pairs)]
    rows = [[s["seed"], *["{:.2f} / {:.2f}".format(*median_and_worst(ag[m])) for m in methods]]
            for s, ag in pairs]
    return markdown_table(["seed", *methods], rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collect", nargs="+", required=True, help="finished run dirs (globs)")
    ap.add_argument("--env", default="hopper", help="the meta-test body to tabulate")
    ap.add_argument("--tag", default="cpu", help="names the RESULTS.md section")
    ap.add_argument("--fresh-from", type=int, default=3, help="first seed never used in tuning")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    dirs = sorted({d for pat in args.collect for d in glob.glob(pat)})
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, "summary.json"))]
    pairs = [(d, json.load(open(os.path.join(d, "summary.json")))) for d in dirs]
    pairs = [(d, s) for d, s in pairs if args.env in s["meta_test"].get("per_env", {})]
    dirs, summaries = [d for d, _ in pairs], [s for _, s in pairs]
    if not summaries:
        print(f"error: no finished MetaGenRL run with a meta-test on {args.env!r} among {args.collect}",
              file=sys.stderr)
        raise SystemExit(2)
    s0 = summaries[0]
    unseen = args.env not in s0["train_envs"]
    ret_table, ret_means, ret_above = table(summaries, args.env, args.fresh_from, "return",
                                            [per_agent(d, args.env, "return") for d in dirs])
    parts = [f"Return per episode (first episode of each of {s0['meta_test']['eval_envs']} evaluation "
             f"envs, deployed policy):\n\n{ret_table}\n"]
    fwd_means, fwd_above = {}, {}
    if any(k.endswith("_forward_return") for k in s0["meta_test"]["per_env"][args.env]):
        fwd_table, fwd_means, fwd_above = table(summaries, args.env, args.fresh_from, "forward",
                                                [per_agent(d, args.env, "forward") for d in dirs])
        parts.append(f"Forward-progress return (the return without survival bonus and control cost):\n\n"
                     f"{fwd_table}\n")
    for kind, name in (("return", "return"), ("forward", "forward-progress return")):
        spread = spread_table(summaries, [per_agent(d, args.env, kind) for d in dirs])
        if spread and (kind == "return" or fwd_means):
            parts.append(f"Median / worst agent per seed, {name} (the criteria read the means):\n\n{spread}\n")
    notes = []
    if "fresh" in ret_means:
        for text, ok in criteria(ret_means["fresh"], fwd_means.get("fresh")):
            notes.append(f"- fresh seeds' mean, {text}: **{'holds' if ok else 'does not hold'}**")
        m = ret_means["fresh"]
        notes.append(f"- fresh seeds' mean: what meta-training added, learned - initial objective: "
                     f"return **{m['learned'] - m['initial_loss']:+.2f}**" +
                     (f", forward **{fwd_means['fresh']['learned'] - fwd_means['fresh']['initial_loss']:+.2f}**"
                      if fwd_means else ""))
        for name, above in (("return", ret_above), ("forward return", fwd_above)):
            if above and above.get("fresh"):
                notes.append(f"- fresh seeds whose paired 95% interval of learned - initial ({name}) lies above 0: "
                             f"**{sum(above['fresh'])} of {len(above['fresh'])}**")
    cfg = s0["config"]
    backends = s0.get("backends")
    title = f"MetaGenRL seeds: {args.env} ({'unseen' if unseen else 'seen'} body), {args.tag}"
    text = (section_preamble(title) +
            f"- meta-training: {', '.join(s0['train_envs'])}; {cfg['meta']['agents_per_env']} agents per "
            f"body, {s0.get('meta_iterations', s0.get('outer_steps', s0.get('generations')))} meta-iterations of "
            f"{cfg['meta']['steps_per_iteration']} steps, lookahead step {cfg['meta']['lookahead_step']}, "
            f"meta lr {cfg['meta'].get('meta_lr')}, warm start {cfg['meta'].get('warm_start_steps')} steps\n"
            + (f"- backends: {', '.join(f'{k}={v}' for k, v in backends.items())}\n" if backends else "") +
            f"- meta-test: {s0['meta_test']['seeds']} fresh agents per method, {cfg['test']['total_steps']} env "
            f"steps each; seeds < {args.fresh_from} were used for tuning, the others never\n\n"
            + "\n".join(parts) + "\n" + "\n".join(notes) + "\n")
    print(text)
    if not args.no_write:
        write_section(f"metagenrl_seeds-{args.tag}-{args.env}", text)


if __name__ == "__main__":
    main()
