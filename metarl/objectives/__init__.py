"""Objectives: hand-made (PPO) and learned (EPG temporal-conv loss, MetaGenRL backward LSTM)."""
