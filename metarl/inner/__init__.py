"""Inner-loop learners: the on-policy EPG lifetime and the off-policy TD3 agent."""
