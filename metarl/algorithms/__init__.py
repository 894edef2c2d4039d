"""Algorithms: a learner, an objective and an outer loop wired together (MetaGenRL: TD3 learners,
the backward-LSTM objective and the second-order meta-gradient loop)."""
