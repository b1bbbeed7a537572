"""A small subset of Go templates for `--format`, as docker users write them.

Supported: literal text, `{{.Field}}` and `{{.Field.Sub}}` lookups (on dicts and
attributes), `{{json .Field}}` / `{{json .}}`, and `\\t` / `\\n` escapes. Anything
else is a clear error rather than silent output.
"""

from __future__ import annotations

import re

from rootless.errors import UsageError

_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def _lookup(obj: object, path: str) -> object:
    if path in (".", ""):
        return obj
    cur = obj
    for part in path.lstrip(".").split("."):
        if isinstance(cur, dict):
            if part not in cur:
                raise UsageError(f"template: no field {part!r} (fields: {', '.join(map(str, cur))})")
            cur = cur[part]
        elif hasattr(cur, part):
            cur = getattr(cur, part)
        else:
            raise UsageError(f"template: no field {part!r}")
    return cur


def _show(value: object) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_show(v)}" for k, v in value.items()) + "]"
    return str(value)


def _action(expr: str, obj: object) -> str:
    words = expr.split()
    if len(words) == 1 and words[0].startswith("."):
        return _show(_lookup(obj, words[0]))
    if len(words) == 2 and words[0] == "json" and words[1].startswith("."):
        import json

        return json.dumps(_lookup(obj, words[1]))
    if len(words) == 2 and words[0] in ("upper", "lower") and words[1].startswith("."):
        text = _show(_lookup(obj, words[1]))
        return text.upper() if words[0] == "upper" else text.lower()
    raise UsageError(f"template: unsupported action {{{{{expr}}}}}")


def render(template: str, obj: object) -> str:
    text = template.replace("\\t", "\t").replace("\\n", "\n")
    return _ACTION.sub(lambda m: _action(m.group(1), obj), text)
