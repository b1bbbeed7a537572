"""Single-file images: an image's merged tree in one squashfs file.

`save` (`rootless save --format squashfs -o FILE IMAGE`) streams the image's
layers, merged as overlayfs shows them (whiteouts and opaque directories
applied), as one tar into `sqfstar`; no tree is unpacked anywhere. The walk runs
in the caller's user namespace (`overlay.userns`), so files carry the image's own
owners: real ids for root, the container's ids for a user with subordinate ids,
and the owner and mode kept in `user.containers.override_stat` for a user
without (`overlay.export.TarWriter(override=True)`). Root-owned files are uid 0
in the file whoever saved it.

The file:

    squashfs filesystem (padded to 4 KiB)   the merged tree, plus
                                            /.rootless/config.json (the image config)
    metadata JSON                           {"version", "name", "id", "config",
                                             "etc": {"passwd", "group"}}
    u64 little-endian: the JSON's length
    8 bytes: TRAILER_MAGIC

Squashfs readers (the kernel, squashfuse, unsquashfs) stop at the superblock's
`bytes_used`, so the trailer is invisible to them; `run FILE` reads the config and
the image's /etc/passwd and /etc/group from it without mounting anything. A plain
squashfs (no trailer) also runs: without a config, a command must be given.
"""

from __future__ import annotations

import os
import struct

from rootless.errors import ImageError, StoreError, UnsupportedHostError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.store import Store

SQUASHFS_MAGIC = b"hsqs"
SUPERBLOCK_SIZE = 96
PAD = 4096  # mksquashfs and sqfstar pad the filesystem to a multiple of this
TRAILER_MAGIC = b"RLSQMETA"
TRAILER_SIZE = 16
METADATA_VERSION = 1
METADATA_MAX = 16 << 20
CONFIG_PATH = ".rootless/config.json"  # inside the filesystem
COMPRESSORS = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}
# sqfstar's compressors. lz4 by default: it writes the Debian image about thirty
# times faster than zstd (sqfstar 4.5.1 ignores -X options, so zstd runs at its slow
# default level) and reads back faster; zstd makes the file a quarter smaller (see
# docs/benchmarks.md).
COMPRESSIONS = ("lz4", "zstd", "gzip", "xz", "lzo")
DEFAULT_COMPRESSION = "lz4"
TOOL_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class SquashfsError(ImageError):
    """A file is not a usable squashfs image (missing, not squashfs, truncated)."""


class Metadata:
    """What `run FILE` needs from a squashfs image, read from its trailer."""

    def __init__(self, path: str, obj: dict[str, object] | None) -> None:
        obj = obj or {}
        self.path = path
        config = obj.get("config")
        self.config: dict[str, object] = config if isinstance(config, dict) else {}
        self.name = str(obj.get("name") or path)
        self.id = str(obj.get("id") or "")
        etc = obj.get("etc")
        self.etc: dict[str, str] = {str(k): str(v) for k, v in etc.items()} if isinstance(etc, dict) else {}


def find_tool(name: str) -> str | None:
    """`name` on $PATH or in the usual system directories (no shutil: `run` uses it)."""
    dirs = [d for d in os.environ.get("PATH", "").split(":") if d] + list(TOOL_PATH)
    for d in dirs:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


# ---------------------------------------------------------------- reading


def _superblock(fd: int, path: str, size: int) -> int:
    """Check the superblock; returns bytes_used (the filesystem's own length)."""
    head = os.pread(fd, SUPERBLOCK_SIZE, 0)
    if len(head) < SUPERBLOCK_SIZE or head[:4] != SQUASHFS_MAGIC:
        raise SquashfsError(f"{path} is not a squashfs image")
    block_size, = struct.unpack_from("<I", head, 12)
    comp, block_log, _flags, _ids, major, _minor = struct.unpack_from("<HHHHHH", head, 20)
    bytes_used, = struct.unpack_from("<Q", head, 40)
    if major != 4 or block_size != 1 << block_log or not 4096 <= block_size <= 1 << 20:
        raise SquashfsError(f"{path} is not a squashfs 4.0 image (or its superblock is damaged)")
    if comp not in COMPRESSORS:
        raise SquashfsError(f"{path}: unknown squashfs compression (id {comp})")
    tables = struct.unpack_from("<6Q", head, 48)
    if bytes_used < SUPERBLOCK_SIZE or any(t != 2**64 - 1 and t >= bytes_used for t in tables):
        raise SquashfsError(f"{path}: the squashfs superblock is damaged")
    if bytes_used > size:
        raise SquashfsError(f"{path} is truncated ({size} of {bytes_used} bytes)")
    return int(bytes_used)


def read_metadata(path: str) -> Metadata:
    """Validate the squashfs file at `path` and read its trailer (if any)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SquashfsError(f"cannot open image file {path}: {exc.strerror}") from None
    try:
        import stat

        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SquashfsError(f"{path} is not a regular file")
        used = _superblock(fd, path, st.st_size)
        tail = os.pread(fd, TRAILER_SIZE, st.st_size - TRAILER_SIZE) if st.st_size >= used + TRAILER_SIZE else b""
        if len(tail) != TRAILER_SIZE or tail[8:] != TRAILER_MAGIC:
            if st.st_size > -(-used // PAD) * PAD:  # more than the padding follows
                raise SquashfsError(f"{path}: the image metadata after the filesystem is "
                                    "damaged (truncated?)")
            return Metadata(path, None)
        length, = struct.unpack_from("<Q", tail, 0)
        start = st.st_size - TRAILER_SIZE - length
        if length > METADATA_MAX or start < used:
            raise SquashfsError(f"{path}: the image metadata is damaged")
        data = os.pread(fd, length, start)
    finally:
        os.close(fd)
    import json

    try:
        obj = json.loads(data)
    except ValueError:
        raise SquashfsError(f"{path}: the image metadata is damaged (not JSON)") from None
    if not isinstance(obj, dict):
        raise SquashfsError(f"{path}: the image metadata is damaged")
    if int(obj.get("version") or 0) > METADATA_VERSION:
        raise SquashfsError(f"{path} was written by a newer rootless (metadata version {obj.get('version')})")
    return Metadata(path, obj)


# ---------------------------------------------------------------- writing


def save(store: Store, text: str, path: str, compression: str = DEFAULT_COMPRESSION) -> str:
    """Write image `text` as a squashfs file at `path` (a temporary name renamed at the
    end); returns the image's name."""
    sqfstar = find_tool("sqfstar")
    if sqfstar is None:
        raise UnsupportedHostError("sqfstar is not installed (needed for --format squashfs)",
                                   hint="apt install squashfs-tools (4.5.1 or later)")
    if compression not in COMPRESSIONS:
        raise UsageError(f"unknown squashfs compression {compression!r}: use {', '.join(COMPRESSIONS)}")
    record = store.image(text)
    from rootless.store.locking import replacing

    with store.lock(shared=True):
        layers = list(reversed(store.layer_dirs(record)))  # top down
        config = store.blobs.read(record.config_digest)
        name = record.names[0] if record.names else record.short_id
        meta = _meta_layer(store, config, _created(config))
        try:
            with replacing(path) as tmp:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644))
                _write(sqfstar, compression, [meta, *layers], tmp, path, _created(config))
                with open(tmp, "ab") as f:
                    f.write(_trailer(name, record.id, config, layers))
        finally:
            _rmtree(meta)
    return name


def _meta_layer(store: Store, config: bytes, when: int) -> str:
    """A directory used as the topmost layer: /.rootless/config.json."""
    import tempfile

    base = store.paths.tmp
    os.makedirs(base, mode=0o700, exist_ok=True)
    top = tempfile.mkdtemp(prefix="squashfs-", dir=base)
    os.chmod(top, 0o755)
    os.mkdir(os.path.join(top, ".rootless"), 0o755)
    cfg = os.path.join(top, CONFIG_PATH)
    with open(cfg, "wb") as f:
        f.write(config)
    os.chmod(cfg, 0o644)
    for p in (cfg, os.path.join(top, ".rootless")):
        os.utime(p, (when, when))
    return top


def _write(sqfstar: str, compression: str, layers_top_down: list[str], out: str, label: str,
           when: int) -> None:
    """The merged tar piped into sqfstar, both in the caller's user namespace: there
    the files show the image's owners, and sqfstar, as uid 0, makes the root
    directory root's (sqfstar 4.5.1 ignores -root-uid/-root-gid)."""
    from rootless.overlay import userns

    argv = [sqfstar, "-comp", compression, "-reproducible", "-quiet", "-no-progress", "-force",
            "-root-mode", "755", "-root-time", str(when), "-mkfs-time", str(when), out]
    userns.spawn(lambda: _pack_into(argv, layers_top_down, label),
                 mapping=userns.caller_mapping()).wait()


def _pack_into(argv: list[str], layers_top_down: list[str], label: str) -> None:
    """(In the namespace child) run sqfstar and feed it the merged tree."""
    import signal
    import subprocess
    import tempfile

    from rootless.overlay.export import pack_merged

    # sqfstar exits as soon as it has read the end-of-archive block, maybe before the
    # second one is written: a broken pipe is sqfstar's to report (its status).
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    r, w = os.pipe2(os.O_CLOEXEC)
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, stdin=r, stdout=subprocess.DEVNULL, stderr=errors)
        except OSError as exc:
            os.close(w)
            raise UnsupportedHostError(f"cannot run sqfstar: {exc.strerror}") from None
        finally:
            os.close(r)
        pack_error: BaseException | None = None
        try:
            pack_merged(layers_top_down, w, override=True)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # noqa: BLE001 - raised once sqfstar has stopped
            pack_error = exc
        finally:
            os.close(w)
        proc.wait()
        if pack_error is not None:
            raise pack_error
        if proc.returncode != 0:
            errors.seek(0)
            lines = [x for x in errors.read().decode("utf-8", "replace").splitlines() if x.strip()]
            what = lines[-1].strip() if lines else f"exit status {proc.returncode}"
            raise StoreError(f"cannot write {label}: sqfstar: {what}")


def _created(config: bytes) -> int:
    """The image's creation time (seconds), for the times the file adds of its own
    (the filesystem's, /.rootless's, the root directory's: sqfstar 4.5.1 ignores
    -root-time and stamps it with the current time, so two saves still differ there)."""
    import json
    from datetime import datetime

    try:
        text = json.loads(config).get("created") or ""
        when = int(datetime.fromisoformat(str(text)).timestamp())
    except (ValueError, TypeError, AttributeError, OverflowError):
        return 0
    return min(max(when, 0), 2**32 - 1)


def _trailer(name: str, image_id: str, config: bytes, layers_top_down: list[str]) -> bytes:
    import json

    etc = _etc_files(layers_top_down)
    obj = {"version": METADATA_VERSION, "name": name, "id": image_id,
           "config": json.loads(config), "etc": etc}
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    return b"\n" + data + struct.pack("<Q", len(data)) + TRAILER_MAGIC


def _etc_files(layers_top_down: list[str]) -> dict[str, str]:
    """/etc/passwd and /etc/group of the merged tree (read where the owners can)."""
    import json

    from rootless.overlay import userns
    from rootless.overlay.view import LayerView

    def work() -> bytes:
        view = LayerView(layers_top_down)
        out: dict[str, str] = {}
        for name in ("passwd", "group"):
            found = view.lookup(f"etc/{name}")
            if found is None:
                continue
            import stat

            if not stat.S_ISREG(found[1].st_mode):
                continue  # a symlink or worse: not followed out of the image
            with open(os.path.join(found[0], "etc", name), "rb") as f:
                out[name] = f.read(4 << 20).decode("utf-8", "replace")
        return json.dumps(out).encode()

    data = userns.collect(work, mapping=userns.caller_mapping())
    result = json.loads(data)
    return {str(k): str(v) for k, v in result.items()}


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
