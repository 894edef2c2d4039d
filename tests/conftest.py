import os
import shutil
import tempfile

# Tests run on the CPU.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# XLA compilation cache. Compiled programs are cached on disk so that identical programs compile
# once per session: in the tests, in the xdist workers and in the experiment CLIs' subprocesses
# (they all read JAX_COMPILATION_CACHE_DIR from the environment).
#   - JAX_COMPILATION_CACHE_DIR set: that folder is used and kept (a warm run when it is reused;
#     `.ci/run` gives each tier a fresh one, so CI always runs cold).
#   - not set: a fresh folder for this session, made by the controlling process before the xdist
#     workers start (they inherit the environment, so they share it) and removed at its end. So
#     every plain `pytest` run is cold, as a newcomer's first run is.
_SESSION_CACHE = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR") and "PYTEST_XDIST_WORKER" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="metarl-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None and not hasattr(config, "workerinput"):
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
