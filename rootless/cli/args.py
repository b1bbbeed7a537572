"""A small docker-style option parser.

Why not argparse: docker's grammar stops option parsing at the first positional
(`run [OPTIONS] IMAGE [COMMAND] [ARG...]`, so `run img ls -l` passes `-l` to ls),
accepts combined short flags (`-it`), `--flag=value` and `--bool=false`; and argparse
costs ~6 ms of start-up, a third of our whole budget for `run`.
"""

from __future__ import annotations

from rootless.errors import UsageError

FLAG, VALUE, LIST = "flag", "value", "list"


class Opt:
    __slots__ = ("names", "dest", "kind", "metavar", "help", "default", "choices")

    def __init__(
        self,
        names: str,
        kind: str,
        help: str,
        metavar: str = "",
        default: object = None,
        choices: tuple[str, ...] = (),
        dest: str | None = None,
    ) -> None:
        self.names = names.split(",")
        self.kind = kind
        self.help = help
        self.metavar = metavar or ("VALUE" if kind != FLAG else "")
        self.choices = choices
        long = [n for n in self.names if n.startswith("--")]
        self.dest = dest or (long[0] if long else self.names[0]).lstrip("-").replace("-", "_")
        if default is None:
            default = False if kind == FLAG else ([] if kind == LIST else None)
        self.default = default


class Command:
    """One verb: its options, usage line and help text."""

    def __init__(
        self,
        name: str,
        summary: str,
        usage: str,
        opts: list[Opt],
        description: str = "",
        stop_at_positional: bool = True,
        examples: str = "",
    ) -> None:
        self.name = name
        self.summary = summary
        self.usage = usage
        self.opts = opts
        self.description = description
        self.stop_at_positional = stop_at_positional
        self.examples = examples
        self.by_name = {n: o for o in opts for n in o.names}

    def help_text(self) -> str:
        lines = [f"Usage:  rootless {self.name} {self.usage}".rstrip(), "", self.summary]
        if self.description:
            lines += ["", self.description.strip("\n")]
        if self.opts:
            lines += ["", "Options:"]
            for o in self.opts:
                names = ", ".join(o.names)
                if o.kind != FLAG:
                    names += " " + o.metavar
                text = o.help
                if o.choices:
                    text += " (" + "|".join(o.choices) + ")"
                if o.kind == VALUE and o.default not in (None, ""):
                    text += f" (default {o.default})"
                lines.append(f"  {names:<28} {text}" if len(names) < 28 else f"  {names}\n  {'':<28} {text}")
        if self.examples:
            lines += ["", "Examples:", self.examples.rstrip("\n")]
        return "\n".join(lines) + "\n"


class Parsed:
    """Parsed options as attributes, plus the positional arguments."""

    def __init__(self, values: dict[str, object], args: list[str]) -> None:
        self.__dict__.update(values)
        self.args = args
        self.help = bool(values.get("help"))

    def get(self, name: str) -> object:
        return self.__dict__.get(name)


_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _set(values: dict[str, object], opt: Opt, value: str | None, name: str) -> None:
    if opt.kind == FLAG:
        if value is None:
            values[opt.dest] = True
        elif value.lower() in _BOOL:
            values[opt.dest] = _BOOL[value.lower()]
        else:
            raise UsageError(f"invalid boolean {value!r} for {name}")
        return
    assert value is not None
    if opt.choices and value not in opt.choices:
        raise UsageError(f"invalid value {value!r} for {name}: choose from {', '.join(opt.choices)}")
    if opt.kind == LIST:
        lst = values[opt.dest]
        assert isinstance(lst, list)
        lst.append(value)
    else:
        values[opt.dest] = value


def parse(cmd: Command, argv: list[str]) -> Parsed:
    values: dict[str, object] = {o.dest: (list(o.default) if isinstance(o.default, list) else o.default)
                                 for o in cmd.opts}
    values["help"] = False
    args: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if args and cmd.stop_at_positional:
            args.append(a)
            continue
        if a == "--":
            args.extend(argv[i:])
            break
        if a in ("-h", "--help"):
            values["help"] = True
            continue
        if a.startswith("--"):
            name, eq, val = a.partition("=")
            opt = cmd.by_name.get(name)
            if opt is None:
                raise UsageError(f"unknown flag: {name}\nSee 'rootless {cmd.name} --help'.")
            if opt.kind != FLAG and not eq:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                val = argv[i]
                i += 1
            _set(values, opt, val if eq else None if opt.kind == FLAG else val, name)
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                name = "-" + a[j]
                opt = cmd.by_name.get(name)
                if opt is None:
                    raise UsageError(f"unknown shorthand flag: {a[j]!r} in {a}\nSee 'rootless {cmd.name} --help'.")
                if opt.kind == FLAG:
                    _set(values, opt, None, name)
                    j += 1
                    continue
                rest = a[j + 1:]
                if rest.startswith("="):
                    rest = rest[1:]
                if not rest:
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: {name}")
                    rest = argv[i]
                    i += 1
                _set(values, opt, rest, name)
                break
            continue
        args.append(a)
    return Parsed(values, args)
