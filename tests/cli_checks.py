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
