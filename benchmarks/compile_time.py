"""Compile time of the first EPG generation for each experiment's presets.

Lowers and compiles exactly the program an experiment runs first (one jitted ES generation at the
preset's sizes), without running it. Target: <= 60 s for the reacher ``cpu`` preset on 2 cores.
Headline: ``compile_time epg_reacher cpu: <seconds> s``.

    python -m benchmarks.compile_time --quick     # smoke and cpu presets
    python -m benchmarks.compile_time --full      # paper presets too (GPU/TPU)
"""
from __future__ import annotations

import argparse
import importlib
import os
import time

os.environ.setdefault("METARL_NO_COMPILATION_CACHE", "1")  # measure real compiles, not cache hits

EXPERIMENTS = ("epg_reacher", "epg_ant", "epg_halfcheetah", "epg_hopper")


def compile_seconds(exp_name: str, preset: str) -> tuple[float, float]:
    import jax

    from metarl import envs
    from metarl.algorithms.epg.algorithm import EPG

    mod = importlib.import_module(f"experiments.{exp_name}")
    p = mod.PRESETS[preset]
    env = envs.make(mod.ENV, episode_length=p.episode_length)
    epg = EPG(env, p.epg)
    es, params, state, gen = epg.make_es(jax.random.PRNGKey(0))
    t = time.perf_counter()
    lowered = jax.jit(gen).lower(state, jax.random.PRNGKey(1))
    t_trace = time.perf_counter() - t
    lowered.compile()
    return t_trace, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--experiments", default=",".join(EXPERIMENTS))
    args = ap.parse_args()
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    from benchmarks.common import markdown_table, section_preamble, write_section

    presets = ("smoke", "cpu", "paper") if args.full else ("smoke", "cpu")
    rows, head = [], None
    for exp in args.experiments.split(","):
        for preset in presets:
            tr, total = compile_seconds(exp, preset)
            rows.append([exp, preset, f"{tr:.1f}", f"{total:.1f}"])
            print(rows[-1], flush=True)
            if exp == "epg_reacher" and preset == "cpu":
                head = f"compile_time epg_reacher cpu: {total:.1f} s"
    body = section_preamble("Compile time of the first generation (`compile_time.py`)") + (
        "- trace = Python tracing and lowering; total = trace + XLA compile, no persistent cache.\n"
        "- target: <= 60 s for the reacher `cpu` preset.\n\n"
        + markdown_table(["experiment", "preset", "trace (s)", "trace + compile (s)"], rows) + "\n")
    write_section("compile_time", body)
    if head:
        print(head)


if __name__ == "__main__":
    main()
