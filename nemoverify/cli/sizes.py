"""Byte sizes as people write them: `256MiB`, `5GB`, `1.5GiB`, plain bytes, and `-1` for unlimited."""

from __future__ import annotations

import re
from decimal import Decimal

UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = r"\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*"  # compiled by the first size given (re's cache)


def parse_size(text: str) -> int:
    """Bytes from `text`: decimal units (kB, MB, GB, TB: powers of 1000), binary units (KiB, MiB,
    GiB, TiB: powers of 1024), case-insensitive; a bare number is bytes. Only -1 may be negative
    (the streamer's "unlimited"). Raises ValueError saying what is accepted."""
    match = re.fullmatch(_SIZE, text)
    unit = match and UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise ValueError(
            f"{text!r} is not a size: write bytes (5368709120), or a number with a unit: 256MiB, 5GB, 1.5GiB"
        )
    exact = Decimal(match.group(1)) * unit
    if exact < 0 and text.strip() != "-1":
        raise ValueError(f"{text!r}: a size cannot be negative (-1 alone means unlimited)")
    if exact != exact.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(exact)
