"""Entry points (python -m ...): the known-harmless import messages of brax/mujoco are silenced here."""
from metarl.runs.quiet import silence_known_warnings

silence_known_warnings()
