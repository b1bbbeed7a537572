"""kill -9 at any point of pull, commit, build, rm and rmi leaves a store that
the next command repairs or ignores: no half layer is used, no image refers to
a missing blob, and running the command again finishes the job.

Two ways to hit "any point":
- ROOTLESS_CRASH_AT=*:N (rootless/store/crash.py): the command SIGKILLs itself
  at the N-th named point between two steps that must stay atomic (blob
  written/renamed, layer.json, short link, marker, index.json, sweep, rename of
  a container); N = 1, 2, ... until the command gets through;
- SIGKILL from outside after delays spread over the command's measured
  duration (mostly inside the C unpacker, the network reads, the deletes).

After each kill: `images` and `ps -a` work, `helpers.storecheck` finds the
store consistent, and the command run again succeeds with a runnable result.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from helpers import storecheck
from helpers.checks import ok
from helpers.users import CLI, identity_names, kill_all

pytestmark = [pytest.mark.needs_userns, pytest.mark.needs_overlay]

MAX_POINTS = 60


def one_identity(cli_factory: Callable[[str], CLI], preferred: str) -> CLI:
    """A CLI of `preferred` if selected ($ROOTLESS_TEST_IDENTITIES), else the first selected."""
    names = identity_names()
    return cli_factory(preferred if preferred in names else names[0])


def settle(cli: CLI, keep: frozenset[int] = frozenset()) -> None:
    """Wait until what the killed command started has died with it (unpack
    children die by PDEATHSIG); kill stragglers after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        left = [p for p in cli.leftover_pids() if p not in keep]
        if not left:
            return
        if time.monotonic() > deadline:
            kill_all(left)
            return
        time.sleep(0.02)


def assert_consistent(cli: CLI, when: str) -> None:
    found = storecheck.problems(cli.store)
    assert not found, f"{when}: the store is inconsistent:\n" + "\n".join(found)
    for args in (("images",), ("ps", "-a")):
        proc = cli.run(*args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, f"{when}: {args}: {proc.stderr}"


class Snapshot:
    """The store and runroot as they were before the command (restored before each kill)."""

    def __init__(self, cli: CLI) -> None:
        self.cli = cli
        self.saved = os.path.join(cli.workdir, "snapshot")
        os.mkdir(self.saved)
        for d in (cli.store, cli.runroot):
            subprocess.run(["cp", "-a", d, os.path.join(self.saved, os.path.basename(d))], check=True)

    def restore(self) -> None:
        for d in (self.cli.store, self.cli.runroot):
            shutil.rmtree(d)
            subprocess.run(["cp", "-a", os.path.join(self.saved, os.path.basename(d)), d], check=True)


def crash_points(cli: CLI, args: tuple[str, ...], restore: Callable[[], None],
                 after: Callable[[str], None], *, timeout: float = 60, points: str = "*") -> int:
    """Run `rootless args` killed at crash point 1, 2, ... (of those matching
    `points`), restoring the store before each, until it gets through;
    `after(when)` checks the repair. Returns how many points were hit."""
    for n in range(1, MAX_POINTS):
        restore()
        proc = cli.run(*args, env={"ROOTLESS_CRASH_AT": f"{points}:{n}"}, timeout=timeout)
        if proc.returncode == 0:
            assert "crash point" not in proc.stderr
            return n - 1
        when = f"{' '.join(args[:1])} killed at point {n}"
        assert proc.returncode == -signal.SIGKILL, f"{when}: exit {proc.returncode}: {proc.stderr}"
        assert "rootless: crash point" in proc.stderr, proc.stderr
        when += f" ({proc.stderr.strip().splitlines()[-1].split('crash point ')[1]})"
        settle(cli)
        assert_consistent(cli, when)
        after(when)
    raise AssertionError(f"{args}: more than {MAX_POINTS} crash points?")


def killed_after(cli: CLI, args: tuple[str, ...], delays: list[float], restore: Callable[[], None],
                 after: Callable[[str], None]) -> None:
    """SIGKILL `rootless args` after each delay (from a restored store)."""
    for delay in delays:
        restore()
        proc = cli.popen(*args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        when = f"{args[0]} killed after {delay * 1000:.0f} ms (exit {proc.returncode})"
        settle(cli)
        assert_consistent(cli, when)
        after(when)


def measure(cli: CLI, args: tuple[str, ...], restore: Callable[[], None]) -> float:
    restore()
    start = time.monotonic()
    ok(cli.run(*args))
    return time.monotonic() - start


def spread(duration: float, n: int = 10) -> list[float]:
    return [duration * (i + 0.5) / n for i in range(n)]


# ---------------------------------------------------------------- pull


def every(n: int) -> Callable[[], bool]:
    """True on every n-th call (and the first): the costlier checks run on a sample."""
    calls = [0]

    def due() -> bool:
        calls[0] += 1
        return calls[0] % n == 1 or n == 1

    return due


def test_pull_killed_anywhere(cli: CLI, busybox_image: str) -> None:
    run_due = every(4)

    def fresh() -> None:
        shutil.rmtree(cli.store)
        os.mkdir(cli.store, 0o700)
        os.chown(cli.store, cli.uid, cli.gid)

    def repaired(when: str) -> None:
        # the next pull finishes the job, and the image runs
        out = cli.run("pull", "-q", busybox_image)
        assert out.returncode == 0, f"{when}: re-pull failed: {out.stderr}"
        assert not storecheck.problems(cli.store), f"{when}: after the re-pull"
        if run_due():
            run = cli.run("run", "--rm", busybox_image, "cat", "/etc/motd")
            assert run.returncode == 0 and run.stdout == "layer two\n", f"{when}: run: {run.stderr}"

    args = ("pull", "-q", busybox_image)
    names = identity_names()
    if cli.name == ("sub" if "sub" in names else names[0]):
        # every point; the other identities differ only in how layers are
        # unpacked and deleted: the points with a half-made layer
        assert crash_points(cli, args, fresh, repaired) >= 10  # blobs, layers, config, manifest, index
        kills = 6
    else:
        assert crash_points(cli, args, fresh, repaired, points="layer-*") == 6  # 3 per layer
        kills = 4
    killed_after(cli, args, spread(measure(cli, args, fresh), kills), fresh, repaired)


# ---------------------------------------------------------------- rmi


def test_rmi_killed_anywhere(cli_factory: Callable[[str], CLI], busybox_image: str) -> None:
    cli = one_identity(cli_factory, "sub")  # layers owned by subordinate ids: removed in a user namespace
    ok(cli.run("pull", "-q", busybox_image))
    ok(cli.run("run", "--name", "c1", busybox_image, "sh", "-c", "echo changed > /etc/motd"))
    ok(cli.run("commit", "c1", "crash/committed:1"))
    ok(cli.run("rm", "c1"))
    snap = Snapshot(cli)
    run_due = every(3)

    def finished(when: str) -> None:
        # rmi again finishes the job (or says there is no such image); prune
        # sweeps what the kill left; the other image is intact
        proc = cli.run("rmi", "crash/committed:1")
        assert proc.returncode in (0, 125) and "Traceback" not in proc.stderr, f"{when}: {proc.stderr}"
        if proc.returncode:
            assert "no such image" in proc.stderr, f"{when}: {proc.stderr}"
        ok(cli.run("image", "prune", "-f"))
        left = storecheck.leftovers(cli.store)
        assert not left, f"{when}: prune left {left}"
        assert not storecheck.problems(cli.store), when
        images = ok(cli.run("images", "--format", "{{.Repository}}")).split()
        assert images == [busybox_image.rsplit(":", 1)[0]], f"{when}: {images}"
        if run_due():
            run = cli.run("run", "--rm", busybox_image, "cat", "/etc/motd")
            assert run.returncode == 0 and run.stdout == "layer two\n", f"{when}: {run.stderr}"

    # the committed image's layer, config and manifest go; the base stays
    args = ("rmi", "crash/committed:1")
    assert crash_points(cli, args, snap.restore, finished) >= 5
    killed_after(cli, args, spread(measure(cli, args, snap.restore), 4), snap.restore, finished)


# ---------------------------------------------------------------- commit


def test_commit_killed_anywhere(cli_factory: Callable[[str], CLI], busybox_image: str) -> None:
    cli = one_identity(cli_factory, "nosub")
    ok(cli.run("pull", "-q", busybox_image))
    ok(cli.run("run", "--name", "c1", busybox_image, "sh", "-c", "mkdir /new && echo made > /new/file"))
    snap = Snapshot(cli)
    run_due = every(3)

    def repaired(when: str) -> None:
        ok(cli.run("commit", "c1", "crash/commit:1"))
        assert not storecheck.problems(cli.store), when
        if run_due():
            run = cli.run("run", "--rm", "crash/commit:1", "cat", "/new/file", "/etc/motd")
            assert run.returncode == 0 and run.stdout == "made\nlayer two\n", f"{when}: {run.stderr}"

    args = ("commit", "c1", "crash/commit:1")
    assert crash_points(cli, args, snap.restore, repaired) >= 5  # layer, config, manifest, index
    killed_after(cli, args, spread(measure(cli, args, snap.restore), 3), snap.restore, repaired)


# ---------------------------------------------------------------- build


def test_build_killed_anywhere(cli_factory: Callable[[str], CLI], busybox_image: str) -> None:
    cli = one_identity(cli_factory, "root")
    ok(cli.run("pull", "-q", busybox_image))
    ctx = cli.mkdir("ctx")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {busybox_image}\nRUN echo built > /built\n")
    os.chown(os.path.join(ctx, "Dockerfile"), cli.uid, cli.gid)
    snap = Snapshot(cli)
    args = ("build", "-q", "-t", "crash/built:1", ctx)
    run_due = every(4)

    def repaired(when: str) -> None:
        ok(cli.run(*args, timeout=120))
        assert not storecheck.problems(cli.store), when
        if run_due():
            run = cli.run("run", "--rm", "crash/built:1", "cat", "/built")
            assert run.returncode == 0 and run.stdout == "built\n", f"{when}: {run.stderr}"

    assert crash_points(cli, args, snap.restore, repaired, timeout=120) >= 6  # layer, config, cache, image
    killed_after(cli, args, spread(measure(cli, args, snap.restore), 3), snap.restore, repaired)
    # what killed builds left (work directories, temporary files) goes with the next sweep
    snap.restore()
    proc = cli.run(*args, env={"ROOTLESS_CRASH_AT": "layer-unpacked:1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert storecheck.leftovers(cli.store)
    ok(cli.run("image", "prune", "-f"))
    assert not storecheck.leftovers(cli.store)


# ---------------------------------------------------------------- rm


def test_rm_killed_anywhere(cli_factory: Callable[[str], CLI], busybox_image: str) -> None:
    cli = one_identity(cli_factory, "sub")  # files of subordinate ids: deleted in a user namespace
    ok(cli.run("pull", "-q", busybox_image))
    ok(cli.run("run", "--name", "c1", busybox_image, "sh", "-c",
               "mkdir -p /data && for i in $(seq 300); do echo $i > /data/f$i; done; chown -R 1000:1000 /data"))
    snap = Snapshot(cli)

    def finished(when: str) -> None:
        if "c1" in ok(cli.run("ps", "-a", "--format", "{{.Names}}")).split():
            ok(cli.run("rm", "c1"))  # killed before the container went: rm finishes it
        # else it left `ps` whole; the next rm (here: of a --rm container) deletes what is left,
        # and its name is free again
        ok(cli.run("run", "--rm", "--name", "c1", busybox_image, "true"))
        assert not storecheck.leftovers(cli.store), when
        assert ok(cli.run("ps", "-aq")) == "", when

    assert crash_points(cli, ("rm", "c1"), snap.restore, finished) >= 1
    killed_after(cli, ("rm", "c1"), spread(measure(cli, ("rm", "c1"), snap.restore), 4), snap.restore, finished)
