"""A read-only union of layer directories, as overlayfs would show it.

`LayerView(top_down)` answers "what is at this path below the upper dir?" with a
cost proportional to the number of layers, not to their size: a directory's
visible layers (top down, cut at an opaque directory or at a non-directory) are
resolved once per directory and cached.
"""

from __future__ import annotations

import os
import stat

from rootless.overlay.whiteout import is_opaque, is_whiteout_stat

Found = tuple[str, os.stat_result]  # (layer root, lstat of the entry)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


class LayerView:
    """Layer directories, topmost first. Paths are relative ("etc/passwd"; "" = root)."""

    def __init__(self, top_down: list[str]) -> None:
        self.layers = list(top_down)
        self._dirs: dict[str, list[str] | None] = {"": self.layers}

    def dir_layers(self, rel: str) -> list[str] | None:
        """The layers in which `rel` is a visible directory (top down); None if it is not one."""
        if rel in self._dirs:
            return self._dirs[rel]
        parent, _, _ = rel.rpartition("/")
        above = self.dir_layers(parent)
        found: list[str] = []
        for root in above or ():
            path = os.path.join(root, rel)
            st = _lstat(path)
            if st is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break  # a whiteout or a file hides this path in every layer below
            found.append(root)
            if is_opaque(path):
                break
        result = found or None
        self._dirs[rel] = result
        return result

    def lookup(self, rel: str) -> Found | None:
        """The topmost visible entry at `rel`, or None when absent or whited out."""
        parent, _, _ = rel.rpartition("/")
        for root in self.dir_layers(parent) or ():
            st = _lstat(os.path.join(root, rel))
            if st is None:
                continue
            return None if is_whiteout_stat(st) else (root, st)
        return None

    def is_dir(self, rel: str) -> bool:
        return self.dir_layers(rel) is not None

    def listdir(self, rel: str) -> dict[str, Found]:
        """The merged listing of directory `rel`: name -> its topmost entry."""
        out: dict[str, Found] = {}
        hidden: set[str] = set()
        for root in self.dir_layers(rel) or ():
            with os.scandir(os.path.join(root, rel)) as it:
                for entry in it:
                    if entry.name in out or entry.name in hidden:
                        continue
                    st = entry.stat(follow_symlinks=False)
                    if is_whiteout_stat(st):
                        hidden.add(entry.name)
                    else:
                        out[entry.name] = (root, st)
        return out
