import os

# Tests run on the CPU with a few virtual devices available for sharding tests.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
