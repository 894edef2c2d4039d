"""Objectives as objects: the registry, the PPO mixing each objective owns, and the README's example of
adding one (executed here)."""
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from metarl.epg import EPGConfig
from metarl.inner.epg_lifetime import LifetimeConfig
from metarl.objectives import registry
from metarl.objectives.epg_loss import PureConvObjective, ResidualConvObjective
from metarl.objectives.lstm_on_policy import LSTMOnPolicyObjective
from metarl.protocols import OnPolicyObjective

ROOT = Path(__file__).resolve().parents[2]


def test_registry_builds_each_objective_with_its_mixing():
    life = LifetimeConfig(buffer_size=128, minibatch_size=16)
    pure, residual, lstm = (registry.make(n, life) for n in ("pure", "residual", "lstm"))
    assert isinstance(pure, PureConvObjective) and isinstance(residual, ResidualConvObjective)
    assert isinstance(lstm, LSTMOnPolicyObjective)
    for obj in (pure, residual, lstm):
        assert isinstance(obj, OnPolicyObjective)
    assert (pure.buffer_size, pure.minibatch_size) == (128, 16)
    assert pure.weights(0.25) == (0.75, 0.25) and residual.weights(0.25) == (1.0, 1.0)
    assert not pure.ppo_always and residual.ppo_always and not lstm.ppo_always
    assert lstm.value_always and not pure.value_always
    assert registry.make("pure", life, context_gradient=False).context_gradient is False
    assert residual.module.zero_output and not pure.module.zero_output
    with pytest.raises(ValueError, match="unknown objective 'mixed'; expected one of pure, residual, lstm"):
        registry.make("mixed", life)
    with pytest.raises(ValueError, match="unknown objective 'mixed'"):
        EPGConfig(objective="mixed").validate()


def test_readme_new_objective_snippet_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- on-policy-objective:start -->\s*```python\n(.*?)```\s*<!-- on-policy-objective:end -->",
                      text, re.S).group(1)
    ns = {}
    try:
        exec(compile(block, "README.md:on-policy-objective", "exec"), ns)
        theta = ns["theta"]
        assert set(theta) == {"w", "c"} and all(np.isfinite(np.asarray(v)).all() for v in theta.values())
        assert float(theta["w"]) != 0.0 or float(theta["c"]) != 0.0  # ES moved it
        assert "reward_weighted" in registry.names()
        assert isinstance(ns["epg"].objective, OnPolicyObjective)
    finally:
        registry.unregister("reward_weighted")
