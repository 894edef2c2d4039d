"""Shared helpers for the benchmark scripts: machine description, timing, RESULTS.md sections.

The benchmarks are run by hand (not in CI). Every figure a script reports is measured side by side
in one process, because the machines they run on are shared and noisy: compare ratios, not runs.
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
import time
from typing import Any, Callable

import jax

RESULTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")

RESULTS_HEADER = """# Benchmark results

Measured figures of the scripts in `benchmarks/` (not run in CI; nothing here is a timed test).
Each script owns one section below and rewrites it in place on every run; the section states the
machine, the command and the date. The machines are shared and noisy, so each script measures the
things it compares side by side in one process: read the ratios, not the absolute figures, and rerun
a baseline on the same machine before comparing with a figure from another one.

Regenerate (CPU quick sizes; `--full` for GPU/TPU sizes):

    python -m benchmarks.env_throughput --quick
    python -m benchmarks.peers --quick

"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description() -> str:
    """One line: CPU model, cores, jax backend and devices, jax/brax versions."""
    try:
        import brax
        brax_v = getattr(brax, "__version__", "?")
    except ImportError:
        brax_v = "not installed"
    devs = jax.devices()
    kinds = sorted({d.device_kind for d in devs})
    return (f"{cpu_model()}, {os.cpu_count()} cores; jax {jax.__version__} backend "
            f"{jax.default_backend()} ({len(devs)} x {', '.join(kinds)}); brax {brax_v}; "
            f"python {platform.python_version()}")


def command_line() -> str:
    mod = sys.argv[0]
    if mod.endswith(".py") and os.path.basename(os.path.dirname(os.path.abspath(mod))) == "benchmarks":
        mod = "-m benchmarks." + os.path.basename(mod)[:-3]
    return "python " + " ".join([mod] + [shlex.quote(a) for a in sys.argv[1:]])


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Runs ``fn`` ``repeats`` times, blocking on its result; returns (best seconds, last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = block(fn())
        best = min(best, time.perf_counter() - t)
    return best, out


def compile_jit(fn: Callable, *args, **jit_kwargs) -> tuple[float, Callable]:
    """jit-lowers and compiles ``fn`` for ``args``; returns (compile seconds, compiled callable)."""
    t = time.perf_counter()
    compiled = jax.jit(fn, **jit_kwargs).lower(*args).compile()
    return time.perf_counter() - t, compiled


def write_section(name: str, body: str, path: str = RESULTS_PATH) -> None:
    """Replaces (or appends) the text between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block_text = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = open(path).read() if os.path.exists(path) else RESULTS_HEADER
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pat.search(text):
        text = pat.sub(lambda _: block_text, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block_text
    with open(path, "w") as f:
        f.write(text)


def section_preamble(title: str) -> str:
    today = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"## {title}\n\n- machine: {machine_description()}\n- command: `{command_line()}`\n"
            f"- date: {today}\n")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def paired_bootstrap(a, b, resamples: int = 10_000, level: float = 0.95, seed: int = 0):
    """Mean of a - b over paired samples (agent i of method a met the same task with the same seed as
    agent i of method b) and its percentile bootstrap interval: the agents are resampled with
    replacement, pairs kept together. a, b: (N,) per-agent returns. Returns (mean, low, high).

    Written here (numpy, a few lines) rather than taken from scipy.stats.bootstrap so that the
    benchmark scripts need no scipy; it is the textbook percentile bootstrap of the paired mean."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(f"paired_bootstrap: expected two equal-length 1-D samples of >= 2, "
                         f"got shapes {a.shape} and {b.shape}")
    d = a - b
    idx = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)


def median_and_worst(returns, worst_fraction: float = 0.05):
    """(median, mean of the worst ``worst_fraction`` of the agents) of per-agent returns (N,)."""
    import numpy as np

    r = np.sort(np.asarray(returns, np.float64))
    k = max(1, int(round(worst_fraction * r.size)))
    return float(np.median(r)), float(r[:k].mean())


def parse_list(text: str | None, allowed, what: str):
    """A comma-separated subset of ``allowed`` (None for an empty text); exits naming any unknown item."""
    if not text:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)}; expected some of {', '.join(allowed)}")
    return items
