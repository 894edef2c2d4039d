"""benchmarks/peers.py without rejax: its tables, its RESULTS.md parsing and its exit codes."""
import sys

import pytest

from benchmarks import peers


@pytest.mark.parametrize("algo", ["ppo", "td3"])
def test_parity_rows_cover_the_settings(algo):
    rows = peers.parity_rows(algo, peers.QUICK)
    assert all(len(r) == 3 and all(isinstance(x, str) and x for x in r) for r in rows)
    names = [r[0] for r in rows]
    for want in ("env", "backend, episode length", "envs", "env steps", "batch", "networks",
                 "activations", "layer norm", "time-limit handling", "extra work per env step",
                 "evaluation (same for both, untimed)", "timed"):
        assert want in names, want


def test_earlier_brax_figure_is_read_from_its_section():
    text = ("<!-- begin ppo_vs_brax -->\n- machine: AMD EPYC, 2 cores; jax 0.9.2 backend cpu (1 x cpu);"
            " brax 0.14.2; python 3.11.7\n- date: 2026-11-25 14:42\n\n"
            "| steady-state training wall (s), mean over seeds | 6.07 | 11.30 | 0.54 |\n"
            "<!-- end ppo_vs_brax -->\n")
    got = peers.earlier_brax_figure(text)
    assert got.startswith("0.54 ") and "jax 0.9.2" in got and "brax 0.14.2" in got
    assert peers.earlier_brax_figure("no such section") == "no earlier figure recorded"


def test_missing_rejax_exits_2_with_the_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rejax", None)  # import rejax -> ImportError
    with pytest.raises(SystemExit) as e:
        peers.main(["--quick", "--no-write"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[bench]'" in err[0]


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as e:
        peers.main(["--quick", "--full"])
    assert e.value.code == 2
