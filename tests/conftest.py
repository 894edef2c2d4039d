import os
import tempfile

# Tests run on the CPU. Compiled programs are cached on disk for the session (the experiment CLIs
# and their subprocesses read JAX_COMPILATION_CACHE_DIR), so identical programs compile once.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "metarl-test-xla-cache"))
