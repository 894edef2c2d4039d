"""Hand-designed RL algorithms in the same harness: PPO (and the learners the meta-tests compare with)."""
