"""Vectorised identifier validators: INSZ (national number) and KBO (enterprise/establishment) numbers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# A validator takes a string array and returns (normalised values, mask of invalid non-null values).
Validator = Callable[[pa.Array], tuple[pa.Array, np.ndarray]]


def _digits(values: pa.Array, start: int, length: int) -> np.ndarray:
    part = pc.utf8_slice_codeunits(values, start, start + length)
    return pc.cast(part, pa.int64()).to_numpy(zero_copy_only=False)


def _valid_shape(values: pa.Array, pattern: str) -> np.ndarray:
    shape = pc.match_substring_regex(values, pattern)
    return pc.fill_null(shape, False).to_numpy(zero_copy_only=False)


def fixed_width_digits(values: pa.Array, width: int) -> np.ndarray | None:
    """The digits of every value as an (n, width) array when all are present and exactly `width`
    ASCII digits, read straight from Arrow's buffers; None otherwise (the caller takes the slow path)."""
    if values.null_count or not len(values) or values.type != pa.string():
        return None
    _validity, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[values.offset : values.offset + len(values) + 1]
    if offsets[-1] - offsets[0] != width * len(values) or not (np.diff(offsets) == width).all():
        return None
    raw = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(-1, width)
    digits = raw - np.uint8(ord("0"))  # one byte per digit; a non-digit wraps to a value above 9
    if (digits > 9).any():
        return None
    return digits


def iso_dates_fast(values: pa.Array) -> np.ndarray | None:
    """Mask of invalid values of a column of `YYYY-MM-DD` dates, read straight from Arrow's buffers;
    None when some present value is not 10 bytes long (the caller then takes the general path)."""
    if values.type != pa.string() or not len(values):
        return None
    _validity, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[values.offset : values.offset + len(values) + 1]
    widths = np.diff(offsets)
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    if not ((widths == 10) | (~present & (widths == 0))).all():
        return None
    # Missing values take no bytes, so the present ones lie back to back, ten bytes each.
    chars = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 10)
    digits = chars - np.uint8(ord("0"))
    shape_ok = (chars[:, 4] == ord("-")) & (chars[:, 7] == ord("-"))
    shape_ok &= (np.delete(digits, [4, 7], axis=1) <= 9).all(axis=1)
    year, month, day = number(digits[:, 0:4]), number(digits[:, 5:7]), number(digits[:, 8:10])
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)]
    month_days = month_days + (leap & (month == 2))
    good = shape_ok & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days) & (year >= 1)
    invalid = np.zeros(len(values), dtype=bool)
    invalid[present] = ~good
    return invalid


def keys_width(values: pa.Array) -> int:
    """The byte length of the first value (what `fixed_width_digits` then expects of every value)."""
    if not len(values) or values.null_count or values.type != pa.string():
        return 0
    _validity, offsets_buf, _data = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[values.offset : values.offset + 2]
    return int(offsets[1] - offsets[0])


def number(digits: np.ndarray) -> np.ndarray:
    """The integers spelled by rows of digits, accumulated column by column to keep memory flat."""
    out = np.zeros(digits.shape[0], dtype=np.int64)
    for i in range(digits.shape[1]):
        out *= 10
        out += digits[:, i]
    return out


def insz(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """11 digits whose last two are 97 − (first nine mod 97), or the same with 2 prefixed (born ≥ 2000)."""
    fast = fixed_width_digits(values, 11)
    if fast is not None:  # the usual case: a whole column of well-formed numbers, checked in numpy
        base, check = number(fast[:, :9]), number(fast[:, 9:])
        good = (97 - base % 97 == check) | (97 - (2_000_000_000 + base) % 97 == check)
        return values, ~good
    ok = _valid_shape(values, r"^[0-9]{11}$")
    invalid = np.zeros(len(values), dtype=bool)
    if ok.any():
        idx = np.flatnonzero(ok)
        sub = values.take(pa.array(idx))
        base, check = _digits(sub, 0, 9), _digits(sub, 9, 2)
        good = (97 - base % 97 == check) | (97 - (2_000_000_000 + base) % 97 == check)
        invalid[idx[~good]] = True
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    invalid |= present & ~ok
    return values, invalid


def kbo_number(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """10 digits, dots and spaces ignored, last two = 97 − (first eight mod 97); written the KBO way.

    Enterprise numbers (first digit 0 or 1) come out as `0403.170.701`, establishment numbers as
    `2.004.869.739`, so `0403170701` and `0403.170.701` are one value.
    """
    digits = pc.replace_substring_regex(values, r"[.\s]", "")
    ok = _valid_shape(digits, r"^[0-9]{10}$")
    invalid = np.zeros(len(values), dtype=bool)
    if ok.any():
        idx = np.flatnonzero(ok)
        sub = digits.take(pa.array(idx))
        good = 97 - _digits(sub, 0, 8) % 97 == _digits(sub, 8, 2)
        invalid[idx[~good]] = True
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    invalid |= present & ~ok
    s = lambda a, b: pc.utf8_slice_codeunits(digits, a, b)  # noqa: E731
    enterprise = pc.binary_join_element_wise(s(0, 4), s(4, 7), s(7, 10), ".")
    establishment = pc.binary_join_element_wise(s(0, 1), s(1, 4), s(4, 7), s(7, 10), ".")
    is_enterprise = pc.match_substring_regex(digits, r"^[01]")
    formatted = pc.if_else(is_enterprise, enterprise, establishment)
    # Invalid values are reported as written, never rewritten.
    normalised = pc.if_else(pa.array(invalid | ~ok), values, formatted)
    return normalised, invalid


def regex(pattern: str) -> Validator:
    """A validator accepting values that match `pattern` (a full-match anchored regex)."""

    def check(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
        present = pc.is_valid(values).to_numpy(zero_copy_only=False)
        return values, present & ~_valid_shape(values, pattern)

    return check


NAMED: dict[str, Validator] = {"insz": insz, "kbo_number": kbo_number}


def validator_for(name: str, pattern: str | None = None) -> Validator:
    """The validator a schema column names."""
    if name == "regex":
        assert pattern is not None
        return regex(pattern)
    return NAMED[name]


def normalise_keys(name: str, keys: list[str]) -> tuple[list[str], list[str]]:
    """Normalise identifiers typed by an operator; return (normalised, invalid as given)."""
    arr = pa.array([k.strip() for k in keys], pa.string())
    out, invalid = validator_for(name)(arr)
    values = out.to_pylist()
    return [v for v, bad in zip(values, invalid, strict=True) if not bad], [
        k for k, bad in zip(keys, invalid, strict=True) if bad
    ]
