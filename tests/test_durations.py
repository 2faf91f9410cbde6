from __future__ import annotations

import pytest

from facediff.durations import parse_duration
from facediff.errors import FacediffError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400),
     (" 2H ", 7200), ("1d", 86400), ("0.5", 0.5)],
)  # fmt: skip
def test_parses(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5", "abc", "1x", "1h-5m", "inf", "nan", "1e999"])
def test_refuses_naming_the_option(text):
    with pytest.raises(FacediffError, match="--time-budget"):
        parse_duration(text, "--time-budget")


def test_a_bad_time_budget_is_a_usage_error_exit_2(tmp_path):
    from sampling_helpers import error_lines, invoke

    r = invoke(["train", tmp_path / "data", "--time-budget", "abc"])
    assert r.exit_code == 2, r.output
    assert error_lines(r) == [
        "facediff: error: invalid --time-budget 'abc': use seconds or e.g. 90s, 15m, 2h, 1h30m"
    ]
