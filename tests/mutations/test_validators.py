"""INSZ and KBO number checks, including the born-in-2000-or-later rule and dotted KBO numbers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from mutapub.mutations.validators import insz, kbo_number, normalise_keys


def _insz(yymmdd: str, serial: str, born_2000: bool) -> str:
    base = int(yymmdd + serial)
    check = 97 - ((2_000_000_000 + base) if born_2000 else base) % 97
    return f"{yymmdd}{serial}{check:02d}"


@pytest.mark.parametrize(
    "value, valid",
    [
        (_insz("850730", "033", False), True),
        (_insz("010203", "123", True), True),  # born 2001: leading zero and the 2000 rule
        (_insz("000101", "001", True), True),
        (_insz("850730", "033", False)[:-1] + "0", False),
        ("1234567890", False),
        ("8507300332A", False),
        ("", False),
    ],
)
def test_insz(value: str, valid: bool) -> None:
    _, invalid = insz(pa.array([value], pa.string()))
    assert bool(invalid[0]) is (not valid)


def test_insz_fast_and_slow_paths_agree() -> None:
    good = [_insz("850730", f"{i:03d}", False) for i in range(1, 50)]
    bad = good[:10]
    bad = [v[:-2] + f"{(int(v[-2:]) + 1) % 100:02d}" for v in bad]
    fast = insz(pa.array(good + bad, pa.string()))[1]  # all 11 digits: numpy path
    slow = insz(pa.array(good + bad + [None], pa.string()))[1][:-1]  # a null forces the regex path
    assert list(fast) == list(slow) == [False] * len(good) + [True] * len(bad)


def test_kbo_numbers_are_normalised_to_the_dotted_form() -> None:
    values, invalid = kbo_number(
        pa.array(["0403170701", "0403.170.701", "2.004.869.739", "2004869739", None])
    )
    assert values.to_pylist() == ["0403.170.701", "0403.170.701", "2.004.869.739", "2.004.869.739", None]
    assert not invalid.any()


def test_invalid_kbo_numbers_are_kept_as_written() -> None:
    values, invalid = kbo_number(pa.array(["0403.170.702", "403170701", "abc"]))
    assert values.to_pylist() == ["0403.170.702", "403170701", "abc"]
    assert invalid.tolist() == [True, True, True]


def test_normalise_keys_for_operators() -> None:
    ok, bad = normalise_keys("kbo_number", ["0403170701", " 0403.170.701 ", "0403.170.799"])
    assert ok == ["0403.170.701", "0403.170.701"]
    assert bad == ["0403.170.799"]


def test_iso_date_fast_path_agrees_with_parsing() -> None:
    import datetime as dt

    from mutapub.mutations.validators import iso_dates_fast

    samples = [
        "2024-02-29",
        "2023-02-29",
        "1900-02-29",
        "2000-02-29",
        "2025-12-31",
        "2025-13-01",
        "2025-00-10",
        "2025-04-31",
        "2025-04-30",
        "0000-01-01",
        "2025/01/01",
        "20a5-01-01",
        None,
    ]
    fast = iso_dates_fast(pa.array(samples, pa.string()))
    assert fast is not None

    def invalid(v: str | None) -> bool:
        if v is None:
            return False
        try:
            return dt.datetime.strptime(v, "%Y-%m-%d").strftime("%Y-%m-%d") != v
        except ValueError:
            return True

    assert fast.tolist() == [invalid(v) for v in samples]
    assert iso_dates_fast(pa.array(["2025-1-1"], pa.string())) is None  # other widths: general path
