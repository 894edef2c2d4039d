"""The fixed-seed numeric guard (tests/numeric_guard.py): tiny runs give the recorded numbers."""
import pytest

import numeric_guard


@pytest.mark.e2e  # a whole experiment run (cold: minutes of compiling); not in the fast tier
@pytest.mark.parametrize("name", sorted(numeric_guard.RUNS))
def test_fixed_seed_run_gives_the_recorded_numbers(name, tmp_path):
    recorded = numeric_guard.load().get(numeric_guard.jax_key(), {})
    if name not in recorded:
        pytest.skip(f"no numbers recorded for {name} on {numeric_guard.jax_key()} "
                    f"(python tests/numeric_guard.py --record); recorded: {sorted(numeric_guard.load())}")
    got = numeric_guard.run(name, tmp_path / name)
    bad = numeric_guard.mismatches(got, recorded[name])
    assert not bad, f"{name} drifted from tests/numeric_guard.json:\n" + "\n".join(bad[:20])


def test_mismatches_names_each_difference():
    want = {"a": [1.0, 2.0], "b": [float("nan")], "c": [0.0]}
    assert numeric_guard.mismatches({"a": [1.0, 2.0000001], "b": [float("nan")], "c": [0.0]}, want) == []
    bad = numeric_guard.mismatches({"a": [1.0, 2.5], "b": [0.0], "d": [1.0]}, want)
    assert bad == ["missing series c", "new series d", "a[1]: 2.5 != recorded 2.0",
                   "b[0]: 0.0 != recorded nan"]
