"""metarl: meta-learning the objective functions of RL agents (EPG, MetaGenRL) in JAX on Brax."""

__version__ = "0.1.0"
