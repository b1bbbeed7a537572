"""Eight commands at once on one user's store, for a few rounds: pulls, runs and
removals of overlapping images and containers, tags, a build FROM an image
being removed. No corruption (helpers.storecheck), no lost tags, no deadlock
(every command is bounded by a timeout), and a removal that loses a race fails
with one clear line ("in use", "no such image"), never a traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Callable

import pytest
from helpers import storecheck
from helpers.images import Layout, TarEntry, gnu_tar_layer, layer_tar, push
from helpers.users import CLI, identity_names

pytestmark = [pytest.mark.needs_userns, pytest.mark.needs_overlay]

ROUNDS = 3
TIMEOUT = 90  # per command: a deadlock fails the test instead of hanging it
# what a command that lost a race may say (exit 125, one line)
RACE_LOST = re.compile(r"in use|is used by container|no such image|no such container|is running|not running")


@pytest.fixture(scope="module")
def image_b(registry, busybox_rootfs, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    """The busybox rootfs layer (shared with busybox_image) plus another top layer."""
    layout = Layout(tmp_path_factory.mktemp("conc-b"))
    top = layer_tar([TarEntry("etc/motd", data=b"image b\n"), TarEntry("b", kind="dir")])
    img = layout.image([(gnu_tar_layer(busybox_rootfs), "gzip"), (top, "gzip")], cmd=["/bin/sh"])
    layout.tag("latest", img.manifest)
    ref = registry.ref("test/conc-b")
    push(layout, "latest", ref)
    return ref


class Outcomes:
    """What every command did, checked when the round is over."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bad: list[str] = []

    def record(self, what: str, proc: subprocess.CompletedProcess[str] | None, *, may_lose: bool,
               exc: BaseException | None = None) -> bool:
        with self.lock:
            if exc is not None:
                self.bad.append(f"{what}: {type(exc).__name__}: {exc}")
                return False
            assert proc is not None
            if proc.returncode == 0:
                return True
            lines = proc.stderr.strip().splitlines()
            clean = proc.returncode == 125 and len(lines) == 1 and "Traceback" not in proc.stderr
            if may_lose and clean and RACE_LOST.search(lines[0]):
                return False
            self.bad.append(f"{what}: exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
            return False


def step(cli: CLI, out: Outcomes, *args: str, may_lose: bool = False) -> subprocess.CompletedProcess[str] | None:
    try:
        proc = cli.run(*args, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out.record(" ".join(args), None, may_lose=False, exc=exc)
        return None
    out.record(" ".join(args), proc, may_lose=may_lose)
    return proc


# the eight workers of a round: (cli, outcomes, round, image A, image B, build context)


def _pull_a(cli: CLI, out: Outcomes, rnd: int, a: str, b: str, ctx: str) -> None:
    step(cli, out, "pull", "-q", a)


def _pull_b(cli: CLI, out: Outcomes, rnd: int, a: str, b: str, ctx: str) -> None:
    step(cli, out, "pull", "-q", b)
    step(cli, out, "pull", "-q", b)  # again: the warm path while others write


def _run_a(cli: CLI, out: Outcomes, rnd: int, a: str, b: str, ctx: str) -> None:
    proc = step(cli, out, "run", "--rm", a, "cat", "/etc/motd")  # pulls A again if rmi won
    if proc is not None and proc.returncode == 0 and proc.stdout != "layer two\n":
        out.bad.append(f"run --rm A printed {proc.stdout!r}")


def _detached_b(cli: CLI, out: Outcomes, rnd: int, a: str, b: str, ctx: str) -> None:
    proc = step(cli, out, "run", "-d", "--name", f"det{rnd}", b, "sleep", "30")
    if proc is not None and proc.returncode == 0:
        step(cli, out, "exec", f"det{rnd}", "cat", "/etc/motd")
        step(cli, out, "rm", "-f", proc.stdout.strip())


def _rmi_a(cli: CLI, out: Outcomes, rnd: int, a: str, b: str, ctx: str) -> None:
    step(cli, out, "rmi", a, may_lose=True)  # in use by _run_a, or already gone


def _tags(cli: CLI, out: Outcomes, rnd: int, a: str, b: str, ctx: str) -> None:
    step(cli, out, "tag", b, f"conc/keep:{rnd}")
    if step(cli, out, "tag", a, f"conc/tmp:{rnd}", may_lose=True) is not None:
        step(cli, out, "rmi", f"conc/tmp:{rnd}", may_lose=True)


def _build(cli: CLI, out: Outcomes, rnd: int, a: str, b: str, ctx: str) -> None:
    step(cli, out, "build", "-q", "-t", f"conc/built:{rnd}", ctx)  # FROM A, which may be going


def _lister(cli: CLI, out: Outcomes, rnd: int, a: str, b: str, ctx: str) -> None:
    for _ in range(3):
        step(cli, out, "images")
        step(cli, out, "ps", "-a")
    step(cli, out, "run", "--rm", b, "cat", "/etc/motd")


def _guarded(fn: Callable[..., None], cli: CLI, out: Outcomes, *args: object) -> None:
    try:
        fn(cli, out, *args)
    except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
        out.record(fn.__name__, None, may_lose=False, exc=exc)


def test_eight_at_once(cli_factory: Callable[[str], CLI], busybox_image: str, image_b: str) -> None:
    names = identity_names()
    cli = cli_factory("sub" if "sub" in names else names[0])
    a, b = busybox_image, image_b
    ctx = cli.mkdir("ctx")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {a}\nRUN echo built > /built\n")
    os.chown(os.path.join(ctx, "Dockerfile"), cli.uid, cli.gid)
    keep: list[str] = []  # tags nobody removes: they must all be there at the end
    cli.run("pull", "-q", b, check=True)  # B stays; A comes and goes

    for rnd in range(ROUNDS):
        out = Outcomes()
        keep += [f"conc/keep:{rnd}", f"conc/built:{rnd}"]
        workers = [threading.Thread(target=_guarded, name=fn.__name__, args=(fn, cli, out, rnd, a, b, ctx))
                   for fn in (_pull_a, _pull_b, _run_a, _detached_b, _rmi_a, _tags, _build, _lister)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=4 * TIMEOUT)
        assert not [w.name for w in workers if w.is_alive()], "deadlock: workers still running"
        assert not out.bad, f"round {rnd}:\n" + "\n\n".join(out.bad)

        found = storecheck.problems(cli.store)
        assert not found, f"round {rnd}: the store is inconsistent:\n" + "\n".join(found)
        listed = cli.run("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout.split()
        missing = [t for t in keep + [b.split("/", 1)[1]] if not any(x.endswith(t) for x in listed)]
        assert not missing, f"round {rnd}: lost tags {missing} (images: {listed})"
        assert not any("conc/tmp" in x for x in listed), listed
        assert cli.run("ps", "-aq", check=True).stdout == "", "a container was left behind"

    # everything still works: A again, and the built images run
    cli.run("pull", "-q", a, check=True)
    for rnd in range(ROUNDS):
        proc = cli.run("run", "--rm", f"conc/built:{rnd}", "cat", "/built", check=True)
        assert proc.stdout == "built\n"
    cli.run("image", "prune", "-f", check=True)
    assert not storecheck.problems(cli.store)


def test_rmi_loses_to_run_cleanly(cli_factory: Callable[[str], CLI], busybox_image: str) -> None:
    """rmi racing container creation: either the image goes first (the run pulls
    it again) or the container is made first (rmi: "in use"); never a container
    whose layers were swept."""
    names = identity_names()
    cli = cli_factory("nosub" if "nosub" in names else names[0])
    cli.run("pull", "-q", busybox_image, check=True)
    for i in range(6):
        out = Outcomes()
        runner = threading.Thread(target=step, args=(cli, out, "run", "-d", "--name", f"r{i}", busybox_image,
                                                     "sleep", "20"))
        remover = threading.Thread(target=step, args=(cli, out, "rmi", busybox_image), kwargs={"may_lose": True})
        runner.start()
        remover.start()
        runner.join()
        remover.join()
        assert not out.bad, "\n".join(out.bad)
        assert not storecheck.problems(cli.store)
        proc = cli.run("exec", f"r{i}", "cat", "/etc/motd")
        assert proc.returncode == 0 and proc.stdout == "layer two\n", proc.stderr
        cli.run("rm", "-f", f"r{i}", check=True)
        cli.run("pull", "-q", busybox_image, check=True)
