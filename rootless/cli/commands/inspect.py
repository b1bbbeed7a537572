"""`rootless inspect`: docker-like JSON for containers (and images)."""

from __future__ import annotations

import json
import sys
import time

from rootless.cli.args import VALUE, Command, Opt, Parsed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.runtime.containers import Container

COMMAND = Command(
    "inspect",
    "Show low-level information about containers or images as JSON.",
    "[OPTIONS] NAME|ID [NAME|ID...]",
    [Opt("--format,-f", VALUE, "a Go template, e.g. '{{.State.Status}}'", metavar="FORMAT"),
     Opt("--type", VALUE, "container or image", metavar="TYPE", choices=("container", "image"))],
)


def _iso(ts: float | None) -> str:
    if not ts:
        return "0001-01-01T00:00:00Z"
    frac = f"{ts % 1:.9f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + frac + "Z"


def container_json(c: Container) -> dict[str, object]:
    from rootless.runtime import lifecycle

    st = c.status()
    run = c.config["run"]
    assert isinstance(run, dict)
    mounts = []
    for spec in run.get("volumes", []):
        parts = str(spec).split(":")
        mounts.append({"Type": "bind", "Source": parts[0], "Destination": parts[1],
                       "RW": not (len(parts) > 2 and "ro" in parts[2].split(",")), "Propagation": "rprivate"})
    graph: dict[str, object] = {"Name": str(c.config.get("rootfs_mode"))}
    if c.config.get("rootfs_mode") == "overlay":
        import os

        layers = str(c.config["layers_dir"])
        graph["Data"] = {
            "LowerDir": ":".join(os.path.join(layers, str(x)) for x in reversed(c.config["lower"])),  # type: ignore[call-overload]
            "UpperDir": c.path("upper"), "WorkDir": c.path("work"), "MergedDir": c.path("merged"),
        }
    elif c.config.get("rootfs_mode") == "rootfs":
        graph["Data"] = {"RootDir": c.config.get("rootfs")}
    return {
        "Id": c.id,
        "Created": _iso(float(c.config["created"])),  # type: ignore[arg-type]
        "Path": run["argv"][0] if run["argv"] else "",
        "Args": run["argv"][1:],
        "State": {
            "Status": st.state, "Running": st.running, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": st.pid, "ExitCode": st.exit_code or 0,
            "Error": "", "StartedAt": _iso(st.started_at), "FinishedAt": _iso(st.finished_at),
        },
        "Image": f"sha256:{c.config['image_id']}" if c.config.get("image_id") else "",
        "ImageName": c.config.get("image", ""),
        "Name": "/" + c.name,
        "LogPath": c.log_path,
        "Driver": c.config.get("rootfs_mode"),
        "Mounts": mounts,
        "GraphDriver": graph,
        "Config": {
            "Hostname": run.get("hostname") or "", "User": run.get("user") or "",
            "Tty": run.get("tty"), "OpenStdin": run.get("interactive"),
            "Env": list(run.get("image_env", [])) + list(run.get("env", [])),
            "Cmd": run["argv"], "WorkingDir": run.get("workdir") or "",
            "Image": c.config.get("image", ""),
        },
        "HostConfig": {"NetworkMode": run.get("network"), "ReadonlyRootfs": run.get("read_only"),
                       "Init": run.get("init"), "Tmpfs": run.get("tmpfs"), "Binds": run.get("volumes"),
                       "UsernsMode": "keep-id" if run.get("keep_id") else ""},
        "AttachSocket": lifecycle.socket_path(c),
        "IdMapping": c.config.get("idmap_mode"),
    }


def main(ctx: Context, p: Parsed) -> int:
    from rootless.cli.commands._common import store
    from rootless.errors import RootlessError, UsageError

    if not p.args:
        raise UsageError("'rootless inspect' requires at least one name or id")
    s = store(ctx)
    results: list[dict[str, object]] = []
    for ref in p.args:
        if p.type != "image":  # type: ignore[attr-defined]
            try:
                results.append(container_json(s.get(ref)))
                continue
            except RootlessError:
                if p.type == "container":  # type: ignore[attr-defined]
                    raise
        try:
            from rootless.cli.commands.image import inspect_image  # type: ignore[attr-defined]
        except ImportError:
            raise UsageError(f"no such container: {ref}") from None
        results.append(inspect_image(ctx, ref))
    fmt = p.get("format")
    if isinstance(fmt, str) and fmt:
        from rootless.cli.template import render

        for r in results:
            sys.stdout.write(render(fmt, r) + "\n")
    else:
        sys.stdout.write(json.dumps(results, indent=4) + "\n")
    return 0
