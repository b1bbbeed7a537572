"""`rootless save`: write images to a docker-archive or oci-archive, or one image to a squashfs file."""

from __future__ import annotations

import sys

from rootless.cli.args import VALUE, Command, Opt, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "save",
    "Save one or more images to a tar archive.",
    "[OPTIONS] IMAGE [IMAGE...]",
    [
        Opt("--output,-o", VALUE, "write to a file instead of standard output", metavar="FILE"),
        Opt(
            "--format",
            VALUE,
            "archive format (squashfs: one image as a single squashfs file, needs -o)",
            default="docker-archive",
            choices=("docker-archive", "oci-archive", "squashfs"),
        ),
        Opt(
            "--compression",
            VALUE,
            "squashfs compression: lz4 (default: quick to write and read), zstd (a quarter "
            "smaller, much slower to write), gzip, xz or lzo",
            metavar="ALGO",
            default="lz4",
            choices=("lz4", "zstd", "gzip", "xz", "lzo"),
        ),
    ],
    description="""\
docker-archive (the default) is what `docker load` and `podman load` read: one
uncompressed tar per layer and manifest.json. oci-archive is an OCI image layout
in a tar, with the stored manifests and compressed layers byte for byte (digests
are kept). Without -o the archive goes to standard output, which must not be a
terminal. A file is written under a temporary name and renamed when complete.

squashfs writes one image, its layers merged (deleted files gone) with the
image's owners and modes, as a single squashfs file (made by sqfstar):
`rootless run FILE` runs it directly, the way to ship an image to a parallel
filesystem. The image config is inside it (/.rootless/config.json).""",
    examples="  rootless save -o busybox.tar busybox\n"
    "  rootless save --format oci-archive app:1 app:2 | gzip > app.tar.gz\n"
    "  rootless save --format squashfs -o app.sqfs app:1 && rootless run --rm ./app.sqfs\n",
    stop_at_positional=False,
)


def main(ctx: Context, parsed: Parsed) -> int:
    if not parsed.args:
        raise UsageError(
            "\"rootless save\" requires at least 1 argument\nSee 'rootless save --help'."
        )
    from rootless.image.archive import save, save_to_path
    from rootless.store import Store

    fmt = str(parsed.get("format"))
    output = parsed.get("output")
    if fmt == "squashfs":
        return _save_squashfs(ctx, list(parsed.args), str(output or ""), str(parsed.get("compression")))
    store = Store.open(ctx.root)
    if output:
        save_to_path(store, list(parsed.args), fmt, str(output))
        return 0
    if sys.stdout.isatty():
        raise UsageError(
            "refusing to write an archive to a terminal",
            hint="use -o FILE or redirect standard output",
        )
    sys.stdout.flush()
    save(store, list(parsed.args), fmt, sys.stdout.buffer)
    return 0


def _save_squashfs(ctx: Context, images: list[str], output: str, compression: str) -> int:
    if not output:
        raise UsageError("--format squashfs needs an output file: use -o FILE")
    if len(images) != 1:
        raise UsageError("--format squashfs saves exactly one image")
    from rootless.overlay.squashfs import save as save_squashfs
    from rootless.store import Store

    save_squashfs(Store.open(ctx.root), images[0], output, compression)
    return 0
