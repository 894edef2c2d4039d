"""Per-generation (or per-iteration) metrics of a run: ``metrics.jsonl`` plus tensorboardX events.

On resume the JSONL file is cut back to the records before the resumed step, so a killed and
resumed run's log equals an uninterrupted run's; a torn last line (a kill mid-write) is dropped, and
the file is replaced atomically (a kill during the cut leaves the old file). Only the writer process
(process 0) writes.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tensorboardX import SummaryWriter


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl ([] when absent); lines that do not parse as a JSON object (a
    torn last line) are skipped."""
    return [rec for _, rec in _parsed_lines(path)]


def _parsed_lines(path: Path) -> list[tuple[str, dict]]:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append((line, rec))
    return out


def _step(rec: dict, key: str) -> float:
    step = rec.get(key)
    return step if isinstance(step, (int, float)) else float("inf")  # no step: not kept


class MetricsLog:
    def __init__(self, run_dir: Path, start: int, enabled: bool = True, step_key: str = "generation"):
        """``start``: the first step this process will log; ``step_key``: the record's step field."""
        self.enabled, self.step_key = enabled, step_key
        if not enabled:
            return
        path = Path(run_dir) / "metrics.jsonl"
        kept = [line for line, r in _parsed_lines(path) if _step(r, step_key) < start]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write("".join(l + "\n" for l in kept))
        os.replace(tmp, path)
        self.f = open(path, "a")
        self.tb = SummaryWriter(str(Path(run_dir) / "tb"))

    def write(self, rec: dict) -> None:
        """``rec``: the step under ``step_key`` and scalar (or list-of-scalar) metrics."""
        if not self.enabled:
            return
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        step = rec[self.step_key]
        for k, v in rec.items():
            if k == self.step_key or v is None or isinstance(v, str):
                continue
            if isinstance(v, dict):
                for kk, vv in v.items():
                    self.tb.add_scalar(f"{k}/{kk}", vv, step)
            else:
                self.tb.add_scalar(k, v, step)

    def close(self):
        if self.enabled:
            self.f.close()
            self.tb.close()
