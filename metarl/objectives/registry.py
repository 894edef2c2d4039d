"""The on-policy agent's learned objectives by name: what EPG's ``--objective`` picks.

``make(name, lifetime=LifetimeConfig, context_gradient=bool, **options)`` builds one; ``register(name,
factory)`` adds one, ``factory(lifetime, context_gradient, **options) -> OnPolicyObjective``
(``metarl.protocols.OnPolicyObjective``). A new objective is a new file and one entry here.

``options`` (``OPTIONS``; only the ones that differ from their defaults are passed on, so a factory
that takes none keeps working until one is asked for, which then raises a ValueError naming it):

- ``progress_input`` (``--progress-input``): the agent's lifetime progress as one more input of the
  objective's network (every built-in objective; ``drift_t`` is ``drift`` with it on; ``ppo_schedule``
  always reads it);
- ``progress_context`` (``--progress-context``): the conv loss also appends it to the buffer rows its
  context convolutions read (pure, residual; needs ``progress_input``);
- ``mean_penalty`` and ``action_bound`` (``--mean-penalty``): the conv loss's penalty on policy means
  outside [-action_bound, action_bound] (pure, residual).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

from metarl.objectives.backward_lstm import MetaGenRLObjective
from metarl.objectives.epg_conv import EPGLoss, PureConvObjective, ResidualConvObjective
from metarl.objectives.lpo_drift import DriftObjective
from metarl.objectives.lstm_on_policy import LSTMOnPolicyObjective
from metarl.objectives.ppo_schedule import PPOScheduleObjective

# the options and their defaults (off: every objective as before)
OPTIONS = {"progress_input": False, "progress_context": False, "mean_penalty": 0.0, "action_bound": 1.0}


def _refuse(name: str, options: dict, supported: tuple = ()):
    extra = [k for k in options if k not in supported]
    if extra:
        raise ValueError(f"objective {name!r} does not take {', '.join(extra)}")


def _conv(cls):
    def factory(lifetime, context_gradient: bool = True, **options):
        _refuse(cls.__name__, options, tuple(OPTIONS))  # all of them
        o = {**OPTIONS, **options}
        if o["progress_context"] and not o["progress_input"]:
            raise ValueError("progress_context (--progress-context) needs progress_input (--progress-input)")
        if not (math.isfinite(o["mean_penalty"]) and o["mean_penalty"] >= 0):
            raise ValueError(f"mean_penalty (--mean-penalty) must be a finite number >= 0, got {o['mean_penalty']}")
        if not (math.isfinite(o["action_bound"]) and o["action_bound"] > 0):
            raise ValueError(f"action_bound must be a finite number > 0, got {o['action_bound']}")
        obj = cls(buffer_size=lifetime.buffer_size, minibatch_size=lifetime.minibatch_size,
                  context_gradient=context_gradient)
        if o["progress_input"]:
            obj = dataclasses.replace(obj, module=dataclasses.replace(
                obj.module, progress_head=True, progress_context=o["progress_context"]))
        if o["mean_penalty"] > 0:
            obj = dataclasses.replace(obj, mean_penalty=float(o["mean_penalty"]),
                                      action_bound=float(o["action_bound"]))
        return obj

    return factory


def _no_context(name: str, make, supported: tuple = ("progress_input",)):
    def factory(lifetime, context_gradient: bool = True, **options):
        if not context_gradient:
            raise ValueError("context_gradient=False (--no-context-gradient) applies to EPG's conv loss "
                             f"only; objective {name!r} has no buffer context")
        _refuse(name, options, supported)
        return make(lifetime, **options)

    return factory


_FACTORIES: dict[str, Callable] = {
    "pure": _conv(PureConvObjective),  # the paper's (1 - f) L_phi + f L_PPO
    "residual": _conv(ResidualConvObjective),  # L_PPO + L_phi, phi_0 = PPO
    # MetaGenRL's L_alpha on the on-policy agent
    "lstm": _no_context("lstm", lambda lifetime, progress_input=False: LSTMOnPolicyObjective(
        MetaGenRLObjective(progress_input=progress_input))),
    # LPO's learned drift added to PPO's (theta_0 = PPO); "drift_t": with the lifetime progress t/T
    "drift": _no_context("drift", lambda lifetime, progress_input=False: DriftObjective(
        clip_eps=lifetime.clip_eps, progress_input=progress_input)),
    "drift_t": _no_context("drift_t", lambda lifetime, progress_input=True: DriftObjective(
        clip_eps=lifetime.clip_eps, progress_input=True)),
    # PPO plus 5 extra terms with coefficients evolved as functions of t/T (theta_0 = PPO); 15 parameters
    # (always temporally aware, as drift_t)
    "ppo_schedule": _no_context("ppo_schedule", lambda lifetime, progress_input=True: PPOScheduleObjective()),
}


def names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def register(name: str, factory: Callable) -> None:
    """Adds objective ``name``: ``factory(lifetime, context_gradient, **options) -> OnPolicyObjective``
    (a factory without ``**options`` refuses every option)."""
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    """Removes objective ``name`` (a registered one)."""
    _FACTORIES.pop(name, None)


def check(name: str) -> None:
    if name not in _FACTORIES:
        raise ValueError(f"unknown objective {name!r}; expected one of {', '.join(names())}")


def make(name: str, lifetime, context_gradient: bool = True, **options):
    """The objective ``name`` for an agent with the ``lifetime`` config's buffer and minibatch sizes;
    ``options`` (see ``OPTIONS``) at their defaults are not passed on."""
    check(name)
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        raise ValueError(f"unknown objective option(s) {', '.join(unknown)}; expected {', '.join(OPTIONS)}")
    given = {k: v for k, v in options.items() if v != OPTIONS[k]}
    if "mean_penalty" not in given:  # the bound matters only to the penalty
        given.pop("action_bound", None)
    try:
        return _FACTORIES[name](lifetime, context_gradient=context_gradient, **given)
    except TypeError as e:
        if given and "unexpected keyword argument" in str(e):
            raise ValueError(f"objective {name!r} does not take {', '.join(given)}") from None
        raise
