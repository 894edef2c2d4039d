"""Per-generation (or per-iteration) metrics of a run: ``metrics.jsonl`` plus tensorboardX events.

On resume the JSONL file is cut back to the records before the resumed step, so a killed and
resumed run's log equals an uninterrupted run's. Only the writer process (process 0) writes.
"""
from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    def __init__(self, run_dir: Path, start: int, enabled: bool = True, step_key: str = "generation"):
        """``start``: the first step this process will log; ``step_key``: the record's step field."""
        self.enabled, self.step_key = enabled, step_key
        if not enabled:
            return
        path = Path(run_dir) / "metrics.jsonl"
        kept = []
        if path.exists():
            kept = [l for l in path.read_text().splitlines() if l and json.loads(l)[step_key] < start]
        path.write_text("".join(l + "\n" for l in kept))
        self.f = open(path, "a")
        from tensorboardX import SummaryWriter

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
