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


def start_two_processes(tmp_path, tag: str, module: str, args, root):
    """Starts ``python -m module args`` as processes 0 and 1 of a localhost cluster (one CPU device
    each); returns (procs, [(stdout path, stderr path)]).

    A compilation cache private to the pair: both processes miss it together, then hit it together
    (one hitting while the other compiles would desynchronise them by minutes, past the coordination
    service's barriers). Output goes to files, not pipes: a full, unread pipe would block one process
    while the other waits for it at a barrier."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla"))
    logs = [(tmp_path / f"{tag}-out{i}.txt", tmp_path / f"{tag}-err{i}.txt") for i in range(2)]
    procs = []
    for i, (out, err) in enumerate(logs):
        with open(out, "w") as fo, open(err, "w") as fe:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", module, *args, "--coordinator", f"127.0.0.1:{port}",
                 "--num-processes", "2", "--process-id", str(i)], cwd=root, env=env, stdout=fo, stderr=fe))
    return procs, logs
