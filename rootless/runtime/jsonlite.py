"""JSON output without importing the json package (which pulls in `re` and `enum`,
~6 ms): the hot `run` path writes container records with this. Reading stays with
the json module."""

from __future__ import annotations

from _json import encode_basestring_ascii as _string


def dumps(obj: object) -> str:
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return str(_string(obj))
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError("JSON has no NaN or infinity")
        return float.__repr__(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(dumps(x) for x in obj) + "]"
    if isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: str(kv[0]))
        return "{" + ", ".join(f"{_string(str(k))}: {dumps(v)}" for k, v in items) + "}"
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")
