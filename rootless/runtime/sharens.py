"""`run --sharens`: the ranks of one job on one node share one container.

The first rank to arrive (the leader) starts the container as usual, with a PID 1
that lingers (RL_SF_LINGER) until every process in its PID namespace is gone. The
others (followers) find it in a small registry under the runroot and join its user,
mount, PID, IPC and UTS namespaces, like `exec`. All ranks then see each other's
PIDs, one /dev/shm and one /tmp, so MPI's shared-memory transports (OpenMPI's
vader/sm, and CMA's process_vm_readv) work between them.

The registry entry `<runroot>/sharens/<key>.json` names the leader's PID 1 (with its
start time, so a recycled PID is never joined) and what it runs; `<key>.lock` is
held while one rank decides whether to lead or to join, so two ranks never both
lead. The leader's `rootless run` returns only when the last rank has left, so no
process stays behind once every rank's command has returned.

The key comes from the launcher: Slurm's job and step ids, or the MPI job's PMIx
namespace, or $ROOTLESS_SHARENS_KEY (see docs/hpc.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import re

from rootless.errors import ContainerError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

REGISTRY_DIR = "sharens"


def job_key(env: Mapping[str, str] | None = None) -> str:
    """The key the ranks of one job step share, from the launcher's environment."""
    env = os.environ if env is None else env
    explicit = env.get("ROOTLESS_SHARENS_KEY")
    if explicit:
        return explicit
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if job:
        return f"slurm-{job}.{env.get('SLURM_STEP_ID') or env.get('SLURM_STEPID') or 'batch'}"
    pmix = env.get("PMIX_NAMESPACE")
    if pmix:
        return f"pmix-{pmix}"
    ompi = env.get("OMPI_MCA_orte_ess_jobid") or env.get("OMPI_MCA_ess_base_jobid")
    if ompi:
        return f"ompi-{ompi}"
    raise UsageError(
        "--sharens needs a job to share: run it under srun or mpirun, or set ROOTLESS_SHARENS_KEY "
        "to the same value for every process that should share the container")


def _file_name(key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:100]
    return safe.lstrip(".") or "_"


class Entry:
    """The leader's registry entry."""

    def __init__(self, pid: int, pid_start: int, what: str, idmap_mode: str, pidns: str = "") -> None:
        self.pid = pid
        self.pid_start = pid_start
        self.what = what  # the image id or rootfs the leader runs
        self.idmap_mode = idmap_mode
        self.pidns = pidns  # its pid namespace, to find a process to join once its command is gone

    def alive(self) -> bool:
        from rootless.runtime.state import pid_start_time

        return self.pid > 0 and pid_start_time(self.pid) == self.pid_start


class Registry:
    """`<runroot>/sharens`: one lock file and one entry per key."""

    def __init__(self, runroot: str, key: str) -> None:
        from rootless.paths import ensure_private_dir

        directory = ensure_private_dir(os.path.join(ensure_private_dir(runroot), REGISTRY_DIR))
        base = os.path.join(directory, _file_name(key))
        self.entry_path = base + ".json"
        self.lock_path = base + ".lock"
        self._lock_fd = -1

    def lock(self) -> None:
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            # LOCK_UN first: a child cloned meanwhile may share the open file
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def read(self) -> Entry | None:
        try:
            with open(self.entry_path, "rb") as f:
                obj = json.load(f)
            return Entry(int(obj["pid"]), int(obj["pid_start"]), str(obj["what"]), str(obj["idmap_mode"]),
                         str(obj.get("pidns", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, entry: Entry) -> None:
        tmp = f"{self.entry_path}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"pid": entry.pid, "pid_start": entry.pid_start, "what": entry.what,
                       "idmap_mode": entry.idmap_mode, "pidns": entry.pidns}, f)
        os.rename(tmp, self.entry_path)

    def remove_if(self, pid: int) -> None:
        entry = self.read()
        if entry is not None and entry.pid == pid:
            try:
                os.unlink(self.entry_path)
            except FileNotFoundError:
                pass


def run_shared(registry: Registry, what: str, idmap_mode: str,
               lead: Callable[[Callable[[int], None]], int],
               join: Callable[[Entry, Callable[[], None]], int]) -> int:
    """Join the running leader of `registry`'s key, or become it.

    `lead(started)` runs the container with a lingering PID 1 and calls
    `started(pid)` once it runs; `join(entry, joined)` runs this rank's command in
    the leader's namespaces and calls `joined()` once it runs."""
    from rootless.native import NativeError
    from rootless.runtime.execute import NoProcessToJoin

    registry.lock()
    try:
        entry = registry.read()
        if entry is not None and entry.alive():
            if entry.what != what:
                raise ContainerError(
                    f"the shared container of this job runs {entry.what}, not {what}",
                    hint="every rank that uses --sharens must run the same image or rootfs")
            if entry.idmap_mode != idmap_mode:
                raise ContainerError(
                    f"the shared container of this job uses the {entry.idmap_mode} id mapping, "
                    f"this rank asks for {idmap_mode}",
                    hint="give every rank the same --userns and --user options")
            try:
                return join(entry, registry.unlock)
            except NoProcessToJoin:
                pass  # its PID 1 is about to go (nothing left inside): lead a new one
            except NativeError:
                # The leader's namespace emptied between our check and the join:
                # it is gone, so lead a new one.
                if entry.alive():
                    raise
        leader_pid = 0

        def started(pid: int) -> None:
            from rootless.runtime.execute import pid_namespace
            from rootless.runtime.state import pid_start_time

            nonlocal leader_pid
            leader_pid = pid
            registry.write(Entry(pid, pid_start_time(pid) or 0, what, idmap_mode, pid_namespace(pid)))
            registry.unlock()

        try:
            return lead(started)
        finally:
            if leader_pid:
                registry.lock()
                try:
                    registry.remove_if(leader_pid)
                finally:
                    registry.unlock()
    finally:
        registry.unlock()
