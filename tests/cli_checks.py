"""Shared check of the experiments' refusal contract: exit 2, one 'error:' line, nothing written."""
import pytest


def exit_code_and_stderr(main, argv, capsys):
    """Runs an experiment's CLI ``main(argv)`` in-process (the code path of python -m) to its exit."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


def assert_refused(main, argv, message, run_dir, capsys):
    code, err = exit_code_and_stderr(main, argv, capsys)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert not run_dir.exists()


def kill_after_checkpoint(module: str, args, run_dir, step: int, root, timeout: float = 600):
    """Starts ``python -m module args --run-dir run_dir`` and SIGKILLs it as soon as checkpoint
    ``step`` exists; asserts that it was killed before writing summary.json."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    p = subprocess.Popen([sys.executable, "-m", module, *args, "--run-dir", str(run_dir)], cwd=root, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not (run_dir / "checkpoints" / str(step)).exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (run_dir / "summary.json").exists()
