"""One-line checks of configuration values, shared by every config's ``validate()``."""
from __future__ import annotations


def require_positive(cfg, fields, prefix: str = "") -> None:
    """ValueError "<prefix><field> must be a positive integer, got <value>" for the first of
    ``fields`` of ``cfg`` that is not > 0."""
    for f in fields:
        if getattr(cfg, f) <= 0:
            raise ValueError(f"{prefix}{f} must be a positive integer, got {getattr(cfg, f)}")
