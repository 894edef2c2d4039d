"""A lifetime is ``scan(update)``: the one place every inner learner's learning loop is written.

``learn(update, state, num_updates, key)`` applies ``update(state, key_i) -> (state, metric)``
``num_updates`` times in one ``jax.lax.scan`` (compiled whole, no host round-trips) and returns the
final state and the stacked metrics (``(num_updates, ...)``, e.g. a learning curve). With ``key`` the
update gets its own subkey ``key_i`` of ``jax.random.split(key, num_updates)``; without, ``key_i``
is None and the learner draws from the RNG it carries in its state (TD3 agents, PPO's trainer).

Users: the EPG agent's lifetime (``metarl.inner.on_policy_agent``: one update = a rollout of M steps and
its minibatch epochs under the learned loss), the frozen-objective TD3 harness
(``metarl.inner.frozen_objective``: one update = a chunk of TD3 blocks under L_alpha) and the PPO
baseline (``metarl.baselines.ppo``: one update = a rollout and its epochs).
"""
from __future__ import annotations

from typing import Any, Callable

import jax


def learn(update: Callable[[Any, Any], tuple[Any, Any]], state: Any, num_updates: int,
          key: jax.Array | None = None) -> tuple[Any, Any]:
    """(final state, metrics stacked over the ``num_updates`` updates)."""
    keys = None if key is None else jax.random.split(key, num_updates)
    return jax.lax.scan(update, state, keys, length=num_updates)
