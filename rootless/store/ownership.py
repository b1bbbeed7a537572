"""How unpacked files get their owners, chosen from who the caller is.

root      host root: files keep the archive's ids (chown in this process)
userns    a user with subordinate ranges: files get the container's ids as
          mapped by /etc/subuid and /etc/subgid (chown from a child inside a
          new user namespace with the full map, csrc/rl_job.c); deleting such
          trees needs the same namespace
override  no ranges: files belong to the caller; the archive's owner and mode
          are kept in the `user.containers.override_stat` xattr
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from rootless.native.untar import UntarStats
    from rootless.runtime.idmap import IdMapping

ROOT, USERNS, OVERRIDE = "root", "userns", "override"
LAYER_FORMAT = "overlay-userxattr"


@dataclass
class Ownership:
    """The unpack/delete strategy for one store user."""

    mode: str
    mapping: IdMapping | None = None

    @classmethod
    def detect(cls) -> Ownership:
        if os.getuid() == 0:
            return cls(ROOT)
        from rootless.runtime import idmap

        mapping = idmap.plan()
        if mapping.mode == "full":
            return cls(USERNS, mapping)
        return cls(OVERRIDE)

    def _write_maps(self, pid: int) -> None:
        from rootless.runtime import idmap

        assert self.mapping is not None
        idmap.apply(self.mapping, pid)

    def untar(
        self,
        source: Iterable[bytes] | BinaryIO,
        dest: str,
        *,
        max_file_size: int = 0,
        max_total_size: int = 0,
    ) -> UntarStats:
        """Unpack a layer tar stream into `dest` in overlay format (limits: see
        rootless.native.untar; 0 is none)."""
        if self.mode == USERNS:
            from rootless.native.job import untar_in_userns

            return untar_in_userns(
                source,
                dest,
                self._write_maps,
                overlay=True,
                userxattr=True,
                max_file_size=max_file_size,
                max_total_size=max_total_size,
            )
        from rootless.native.untar import untar_stream

        return untar_stream(
            source,
            dest,
            chown=self.mode == ROOT,
            override_stat=self.mode == OVERRIDE,
            overlay=True,
            userxattr=True,
            max_file_size=max_file_size,
            max_total_size=max_total_size,
        )

    def rmtree(self, path: str, mode: str | None = None) -> None:
        """Delete a tree unpacked with ownership `mode` (default: this one's)."""
        if (mode or self.mode) == USERNS and self.mode == USERNS:
            from rootless.native.job import rmtree_in_userns

            rmtree_in_userns(path, self._write_maps)
            return
        from rootless.native.job import rmtree

        rmtree(path)
