"""Fixed-seed numeric guard: tiny runs of each experiment whose numbers must not drift.

A refactor must leave what the experiments compute unchanged. This module runs each guarded
experiment in-process at a fixed seed and a tiny size, and extracts its numbers: the meta-training
series (EPG fitness mean/max per generation; MetaGenRL return and meta-loss per iteration and
environment) and every meta-test return in ``summary.json``. ``tests/test_numeric_guard.py``
compares them with ``tests/numeric_guard.json``, recorded per jax version (XLA's CPU code differs
between versions, so the numbers do too).

    python tests/numeric_guard.py --record            # (re)record for this jax version
    python tests/numeric_guard.py --record epg_point  # one run only

Where a number changes on purpose, re-record and say why in the commit.
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORD = HERE / "numeric_guard.json"

# name -> (experiment module, argv); each a few seconds of compute after compile
RUNS = {
    "epg_point": ("experiments.epg_point",
                  ["--preset", "smoke", "--seed", "11", "--generations", "2", "--population", "4",
                   "--lifetime-steps", "128", "--test-agents", "2"]),
    "epg_point_residual": ("experiments.epg_point",
                           ["--preset", "smoke", "--seed", "12", "--generations", "2", "--population", "4",
                            "--lifetime-steps", "128", "--test-agents", "2", "--objective", "residual"]),
    "epg_point_lstm": ("experiments.epg_point",
                       ["--preset", "smoke", "--seed", "16", "--generations", "2", "--population", "4",
                        "--lifetime-steps", "128", "--test-agents", "2", "--objective", "lstm"]),
    "epg_point_no_context_gradient": ("experiments.epg_point",
                                      ["--preset", "smoke", "--seed", "17", "--generations", "2",
                                       "--population", "4", "--lifetime-steps", "128", "--test-agents", "2",
                                       "--no-context-gradient"]),
    "epg_reacher": ("experiments.epg_reacher",
                    ["--preset", "smoke", "--seed", "13", "--generations", "1", "--population", "2",
                     "--lifetime-steps", "64", "--test-agents", "1"]),
    "metagenrl": ("experiments.metagenrl",
                  ["--preset", "smoke", "--seed", "14", "--meta-iterations", "2",
                   "--methods", "learned,initial_loss,td3,reinforce,ppo"]),
    "metagenrl_es": ("experiments.metagenrl",
                     ["--preset", "smoke", "--seed", "15", "--outer", "es",
                      "--methods", "learned,initial_loss,td3"]),
}


def run(name: str, run_dir: Path) -> dict:
    """Runs guarded experiment ``name`` into ``run_dir``; returns {series name: [floats]}."""
    import importlib

    module, argv = RUNS[name]
    mod = importlib.import_module(module)
    argv = [*argv, "--run-dir", str(run_dir), "--overwrite"]
    if module == "experiments.metagenrl":
        mod.main(argv)
    else:
        from experiments.epg_common import main

        main(module.split(".")[-1], mod.ENV, mod.PRESETS, argv)
    return numbers(run_dir)


def numbers(run_dir: Path) -> dict:
    """The guarded numbers of a finished run dir, as flat lists of floats (NaN for missing)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    out: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key.endswith("_s") or key in ("generation", "iteration") or "per_s" in key:
                continue  # wall times and counters
            if isinstance(value, dict):
                for sub, v in value.items():
                    out.setdefault(f"train.{key}.{sub}", []).append(_num(v))
            elif isinstance(value, (int, float)) or value is None:
                out.setdefault(f"train.{key}", []).append(_num(value))
    out.update(_meta_test_numbers(summary["meta_test"]))
    return out


def _meta_test_numbers(mt: dict, prefix: str = "test") -> dict:
    out = {}
    for key, value in sorted(mt.items()):
        if isinstance(value, dict):
            out.update(_meta_test_numbers(value, f"{prefix}.{key}"))
        elif key.endswith("_return") or key.endswith("_return_mean_action"):
            out[f"{prefix}.{key}"] = [_num(value)]
    return out


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def mismatches(got: dict, want: dict, rtol: float = 1e-3, atol: float = 1e-3) -> list[str]:
    """Lines naming every series that differs (missing, extra, or a value beyond tolerance)."""
    bad = [f"missing series {k}" for k in sorted(set(want) - set(got))]
    bad += [f"new series {k}" for k in sorted(set(got) - set(want))]
    for k in sorted(set(got) & set(want)):
        g, w = got[k], want[k]
        if len(g) != len(w):
            bad.append(f"{k}: length {len(g)} != recorded {len(w)}")
            continue
        for i, (a, b) in enumerate(zip(g, w)):
            both_nan = math.isnan(a) and math.isnan(b)
            if not both_nan and not (abs(a - b) <= atol + rtol * abs(b)):
                bad.append(f"{k}[{i}]: {a!r} != recorded {b!r}")
    return bad


def jax_key() -> str:
    import jax

    return f"jax-{jax.__version__}"


def load() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


def record(names) -> None:
    data = load()
    key = jax_key()
    data.setdefault(key, {})
    for name in names:
        with tempfile.TemporaryDirectory() as d:
            data[key][name] = run(name, Path(d) / name)
        print(f"recorded {name} for {key}", flush=True)
    RECORD.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    import os

    sys.path.insert(0, str(HERE.parent))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    args = sys.argv[1:]
    if not args or args[0] != "--record":
        sys.exit("usage: python tests/numeric_guard.py --record [name ...]")
    record(args[1:] or list(RUNS))
