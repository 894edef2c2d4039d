"""The on-policy agent's learned objectives by name: what EPG's ``--objective`` picks.

``make(name, lifetime=LifetimeConfig, context_gradient=bool)`` builds one; ``register(name,
factory)`` adds one, ``factory(lifetime, context_gradient) -> OnPolicyObjective``
(``metarl.protocols.OnPolicyObjective``). A new objective is a new file and one entry here.
"""
from __future__ import annotations

from typing import Callable

from metarl.objectives.epg_conv import PureConvObjective, ResidualConvObjective
from metarl.objectives.lpo_drift import DriftObjective
from metarl.objectives.lstm_on_policy import LSTMOnPolicyObjective


def _conv(cls):
    def factory(lifetime, context_gradient: bool = True):
        return cls(buffer_size=lifetime.buffer_size, minibatch_size=lifetime.minibatch_size,
                   context_gradient=context_gradient)

    return factory


def _no_context(name: str, make):
    def factory(lifetime, context_gradient: bool = True):
        if not context_gradient:
            raise ValueError("context_gradient=False (--no-context-gradient) applies to EPG's conv loss "
                             f"only; objective {name!r} has no buffer context")
        return make(lifetime)

    return factory


def _lstm(lifetime, context_gradient: bool = True):
    if not context_gradient:
        raise ValueError("context_gradient=False (--no-context-gradient) applies to EPG's conv loss "
                         "only; objective 'lstm' has no buffer context")
    return LSTMOnPolicyObjective()


_FACTORIES: dict[str, Callable] = {
    "pure": _conv(PureConvObjective),  # the paper's (1 - f) L_phi + f L_PPO
    "residual": _conv(ResidualConvObjective),  # L_PPO + L_phi, phi_0 = PPO
    "lstm": _lstm,  # MetaGenRL's L_alpha on the on-policy agent
    # LPO's learned drift added to PPO's (theta_0 = PPO); "drift_t": with the lifetime progress t/T
    "drift": _no_context("drift", lambda lifetime: DriftObjective(clip_eps=lifetime.clip_eps)),
    "drift_t": _no_context("drift_t", lambda lifetime: DriftObjective(clip_eps=lifetime.clip_eps,
                                                                     lifetime_progress=True)),
}


def names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def register(name: str, factory: Callable) -> None:
    """Adds objective ``name``: ``factory(lifetime, context_gradient) -> OnPolicyObjective``."""
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    """Removes objective ``name`` (a registered one)."""
    _FACTORIES.pop(name, None)


def check(name: str) -> None:
    if name not in _FACTORIES:
        raise ValueError(f"unknown objective {name!r}; expected one of {', '.join(names())}")


def make(name: str, lifetime, context_gradient: bool = True):
    """The objective ``name`` for an agent with the ``lifetime`` config's buffer and minibatch sizes."""
    check(name)
    return _FACTORIES[name](lifetime, context_gradient=context_gradient)
