"""Silences the known-harmless messages that brax and mujoco print on import, at entry points only.

Three messages precede every run's first line and say nothing about it:
- mujoco.mjx prints "Failed to import warp" twice (an optional GPU backend we do not use);
- brax warns (UserWarning) that it is no longer actively maintained, on every model load;
- mujoco's compiler warns that half_cheetah.xml's ``settotalmass`` attribute is deprecated.

``silence_known_warnings()`` imports mujoco.mjx with its stdout captured, filters exactly that brax
warning, and routes mujoco's user warnings through a hook that drops only the ``settotalmass`` one
(anything else still reaches stderr). Library code never calls it; experiments and benchmarks do.
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings

_DONE = False


def silence_known_warnings() -> None:
    global _DONE
    if _DONE:
        return
    _DONE = True
    warnings.filterwarnings("ignore", message=r"Brax System, piplines and environments", category=UserWarning)
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        try:
            import mujoco
            import mujoco.mjx  # noqa: F401  (prints the warp messages on first import)
        except ImportError:
            return
    for line in captured.getvalue().splitlines():
        if "warp" not in line:
            print(line)

    def on_warning(message: str) -> None:
        if "settotalmass" not in message:
            print(f"WARNING: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(on_warning)
