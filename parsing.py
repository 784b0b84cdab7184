"""Option values written as text ("0.1,0.5,inf", "0:1:11", "1000,10000"), parsed with errors that name the option.

Bottom layer: the sampler, the certifier and the command line all parse
lists the same way, so the rule lives once, below all of them.
"""
from __future__ import annotations


def parse_float_list(text, name: str) -> list[float]:
    """'0.1,0.5,inf' or 'start:stop:count' (count equidistant values, both ends included), or both: '0:1:11,inf'."""
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        return [float(v) for v in text]
    s = str(text).strip()
    try:
        out = []
        for item in (v.strip() for v in s.split(",")):
            if item == "":
                continue
            if item.count(":") == 2:
                a, b, c = item.split(":")
                a, b, c = float(a), float(b), int(c)
                if c < 1:
                    raise ValueError
                out += [a] if c == 1 else [a + (b - a) * i / (c - 1) for i in range(c)]
            else:
                out.append(float(item))
        return out
    except ValueError:
        raise ValueError(f"--{name}: expected a comma-separated list of numbers and start:stop:count grids, got {s!r}") from None


def parse_int_list(text, name: str) -> list[int]:
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    try:
        return [int(v) for v in str(text).replace("+", ",").split(",") if v.strip() != ""]
    except ValueError:
        raise ValueError(f"--{name}: expected a comma-separated list of integers, got {text!r}") from None


def parse_names(text, name: str, allowed: tuple[str, ...]) -> list[str]:
    if text is None:
        return []
    vals = list(text) if isinstance(text, (list, tuple)) else [v.strip() for v in str(text).split(",") if v.strip()]
    for v in vals:
        if v not in allowed:
            raise ValueError(f"--{name}: {v!r} is not one of {', '.join(allowed)}")
    return vals
