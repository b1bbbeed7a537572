"""`rootless info`: what this host allows, with a hint for each missing piece."""

from __future__ import annotations

import sys

from rootless.cli.args import VALUE, Command, Opt, Parsed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "info",
    "Show what this host allows rootless to do, with a hint for each missing piece.",
    "[OPTIONS]",
    [Opt("--format,-f", VALUE, "output format: json, or a Go-style template like '{{.kernel}}'",
         metavar="FORMAT")],
    description="""\
Checks: user namespaces (and the sysctl or AppArmor setting that blocks them),
your subordinate id ranges and newuidmap/newgidmap, kernel overlayfs in a user
namespace (userxattr), fuse-overlayfs, openat2, and cgroup delegation.""",
)

LABELS = {
    "user_namespaces": "User namespaces",
    "id_mapping": "ID mapping",
    "overlay": "Overlay (kernel)",
    "fuse_overlayfs": "fuse-overlayfs",
    "openat2": "openat2",
    "cgroups": "Cgroups",
}


def _ranges(items: object) -> str:
    if not isinstance(items, list) or not items:
        return "none"
    return ", ".join(f"{r['start']}-{r['start'] + r['count'] - 1} ({r['count']})" for r in items)


def render_text(info: dict[str, object]) -> str:
    lines = [
        f"rootless version {info['version']} (C core {info['core_version']})",
        f"Kernel:   {info['kernel']}",
        f"Store:    {info['store']}",
        *[f"Shared:   {d} (read-only)" for d in info.get("shared_stores", [])],  # type: ignore[attr-defined]
        f"Storage driver for new containers: {info['storage_driver']}",
        "",
    ]
    checks = info["checks"]
    assert isinstance(checks, dict)
    width = max(len(v) for v in LABELS.values())
    for key, label in LABELS.items():
        c = checks[key]
        mark = "yes" if c["ok"] else "NO "
        lines.append(f"{label:<{width}}  {mark}  {c['detail']}")
        if key == "id_mapping":
            lines.append(f"{'':<{width}}       subuid: {_ranges(c['subuid'])}; subgid: {_ranges(c['subgid'])}; "
                         f"newuidmap: {c['newuidmap'] or 'missing'}; newgidmap: {c['newgidmap'] or 'missing'}")
        if "hint" in c:
            lines.append(f"{'':<{width}}       hint: {c['hint']}")
    return "\n".join(lines) + "\n"


def main(ctx: Context, p: Parsed) -> int:
    from rootless.runtime.hostinfo import gather

    from rootless.store.shared import image_stores

    info = gather(ctx.root)
    info["shared_stores"] = image_stores()
    fmt = p.get("format")
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    elif isinstance(fmt, str) and fmt:
        from rootless.cli.template import render

        sys.stdout.write(render(fmt, info) + "\n")
    else:
        sys.stdout.write(render_text(info))
    return 0
