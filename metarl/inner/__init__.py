"""Inner-loop learners: the on-policy EPG lifetime, the off-policy TD3 agent and the
frozen-objective harness (fresh TD3 agents trained by a fixed policy loss: MetaGenRL's meta-test)."""
