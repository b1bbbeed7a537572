"""Build an image from a Dockerfile.

Stages are built in Dockerfile order, only those the target needs (its FROM
chain and `COPY --from` sources). Each stage starts from `scratch`, an earlier
stage, or an image (pulled when missing, or always with `--pull`), and runs the
base image's ONBUILD triggers first.

Every instruction turns the current image config into the next one:
  - RUN: a fresh overlay upper dir over the current layers (the store's short
    layer links), the command in a container of this runtime (`runner.run`,
    host network unless `--network none`, root emulation with a single-id
    mapping), the upper dir packed as a layer in the user namespace;
  - COPY/ADD/WORKDIR: a layer tar made from the sources (`copier`);
  - the others edit the config only (an `empty_layer` history entry).
Every step goes through the build cache (`cache.py`), so an unchanged rebuild
only reads small files and yields the same image ID.
"""

from __future__ import annotations

import json
import os
import posixpath
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from rootless.build import steps
from rootless.build.cache import BuildCache, step_key
from rootless.build.dockerfile import Dockerfile, DockerfileError, Instruction, expand, parse, words
from rootless.errors import RootlessError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.build.context import Context
    from rootless.build.copier import CopyJob, Item
    from rootless.store import Store

Config = dict[str, object]
SCRATCH = "scratch"
SUPPORTED_COPY_FLAGS = frozenset({"from", "chown", "chmod", "link"})
SUPPORTED_ADD_FLAGS = frozenset({"chown", "chmod", "link", "checksum"})


class BuildRunError(RootlessError):
    """A RUN step exited non-zero (docker exits 1)."""

    exit_code = 1


@dataclass
class BuildOptions:
    context: str
    dockerfile: str | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    network: str = "host"
    platform: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    root: str = ""
    runroot: str = ""


@dataclass
class State:
    config: Config
    digest: str  # config digest, or "scratch:<platform>"

    @property
    def short(self) -> str:
        return self.digest.split(":", 1)[-1][:12] if self.digest.startswith("sha256:") else self.digest


@dataclass
class Stage:
    index: int
    name: str | None
    base: str
    from_ins: Instruction
    body: list[Instruction]
    platform: str | None = None


@dataclass
class StageRun:
    stage: Stage
    state: State
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False


class Builder:
    def __init__(self, opts: BuildOptions, store: Store, context: Context, out: TextIO) -> None:
        self.opts = opts
        self.store = store
        self.context = context
        self.out = out
        self.cache = BuildCache(store)
        self.df: Dockerfile | None = None
        self.escape = "\\"
        self.global_args: dict[str, str] = {}
        self.results: dict[int, State] = {}
        self.used_args: set[str] = set()
        self.step = 0
        self.total = 0
        self.stages_by_index: dict[int, Stage] = {}
        from rootless.runtime import idmap

        self.mapping_mode = idmap.plan().mode

    # ---------------------------------------------------------------- output

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            self.out.write(text + "\n")
            self.out.flush()

    # ---------------------------------------------------------------- planning

    def load(self, text: str, path: str) -> list[Stage]:
        df = parse(text, path)
        self.df = df
        self.escape = df.escape
        auto = steps.platform_args(self.opts.platform)
        i = 0
        ins = df.instructions
        while ins[i].keyword == "ARG":
            for name, value in self._arg_decls(ins[i], {**auto, **self.global_args}):
                if name in self.opts.build_args:
                    value = self.opts.build_args[name]
                    self.used_args.add(name)
                elif name in auto and value is None:
                    value = auto[name]
                self.global_args[name] = value if value is not None else ""
            i += 1
        stages: list[Stage] = []
        for item in ins[i:]:
            if item.keyword == "FROM":
                stages.append(self._stage(item, len(stages)))
            else:
                stages[-1].body.append(item)
        return stages

    def _arg_decls(self, ins: Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
        where = f"{ins.path}:{ins.line}"
        out: list[tuple[str, str | None]] = []
        for word in _split_keep_quotes(ins.value):
            name, eq, raw = word.partition("=")
            if not name or not name.replace("_", "a").isalnum():
                raise ins.error(f"invalid ARG name {name!r}")
            out.append((name, expand(raw, env, escape=self.escape, where=where) if eq else None))
        if not out:
            raise ins.error("ARG requires exactly one argument: ARG NAME[=default]")
        return out

    def _stage(self, ins: Instruction, index: int) -> Stage:
        where = f"{ins.path}:{ins.line}"
        parts = words(ins.value, self.global_args, escape=self.escape, where=where)
        if len(parts) == 3 and parts[1].lower() == "as":
            base, name = parts[0], parts[2].lower()
        elif len(parts) == 1:
            base, name = parts[0], None
        else:
            raise ins.error("FROM requires either one or three arguments: FROM IMAGE [AS NAME]")
        if not base:
            raise ins.error("FROM needs an image (an ARG used in FROM is empty?)")
        unknown = set(ins.flags) - {"platform"}
        if unknown:
            raise ins.error(f"unknown flag --{min(unknown)} for FROM")
        plat = ins.flags.get("platform")
        plat = expand(plat, self.global_args, escape=self.escape, where=where) if plat else None
        return Stage(index, name, base, ins, [], plat)

    def _find_stage(self, stages: list[Stage], ref: str, before: int) -> Stage | None:
        for st in stages[:before]:
            if (st.name is not None and st.name == ref.lower()) or str(st.index) == ref:
                return st
        return None

    def needed(self, stages: list[Stage]) -> list[Stage]:
        target = stages[-1]
        if self.opts.target:
            match = [s for s in stages if s.name == self.opts.target.lower()]
            if not match:
                raise UsageError(f"target stage {self.opts.target!r} could not be found in the Dockerfile")
            target = match[0]
        want: set[int] = set()
        todo = [target]
        while todo:
            st = todo.pop()
            if st.index in want:
                continue
            want.add(st.index)
            dep = self._find_stage(stages, st.base, st.index)
            if dep is not None:
                todo.append(dep)
            for ins in st.body:
                src = ins.flags.get("from") if ins.keyword in ("COPY", "ADD") else None
                if src:
                    dep = self._find_stage(stages, _expand_loose(src, self.global_args), st.index)
                    if dep is not None:
                        todo.append(dep)
        return [s for s in stages if s.index in want and s.index <= target.index]

    # ---------------------------------------------------------------- run

    def build(self, text: str, path: str) -> str:
        stages = self.load(text, path)
        plan = self.needed(stages)
        self.stages_by_index = {s.index: s for s in stages}
        self.total = sum(1 + len(s.body) for s in plan)
        state: State | None = None
        for stage in plan:
            state = self._build_stage(stages, stage)
            self.results[stage.index] = state
        assert state is not None
        if self.opts.labels:
            state = self._labels(state)
        unused = sorted(set(self.opts.build_args) - self.used_args - steps.PROXY_ARGS)
        if unused:
            self.say(f"[Warning] One or more build-args {unused} were not consumed")
        image_id = self._write_image(state)
        return image_id

    def _build_stage(self, stages: list[Stage], stage: Stage) -> State:
        self.step += 1
        self.say(f"Step {self.step}/{self.total} : {stage.from_ins.original}")
        run = StageRun(stage, self._base_state(stages, stage))
        self.say(f" ---> {run.state.short}")
        self._onbuild(run)
        for ins in stage.body:
            self.step += 1
            self.say(f"Step {self.step}/{self.total} : {ins.original}")
            self._instruction(run, ins)
            self.say(f" ---> {run.state.short}")
        return run.state

    def _base_state(self, stages: list[Stage], stage: Stage) -> State:
        if stage.base.lower() == SCRATCH:
            plat = stage.platform or self.opts.platform
            return State(steps.scratch_config(plat), f"{SCRATCH}:{plat or 'linux/' + steps.host_arch()}")
        dep = self._find_stage(stages, stage.base, stage.index)
        if dep is not None:
            return self.results[dep.index]
        return self._image_state(stage.base, stage.platform or self.opts.platform, stage.from_ins)

    def _image_state(self, ref: str, plat: str | None, ins: Instruction) -> State:
        from rootless.store.store import NoSuchImageError

        try:
            if self.opts.pull:
                self._pull(ref, plat)
            try:
                record = self.store.image(ref)
            except NoSuchImageError:
                self._pull(ref, plat)
                record = self.store.image(ref)
            self.store.layer_dirs(record)  # every layer complete
            cfg = dict(record.config.raw)  # parsed and sanitized by the store
        except RootlessError as exc:
            raise RootlessError(f"{ins.path}:{ins.line}: {exc.message}", hint=exc.hint) from exc
        if not isinstance(cfg, dict):
            raise ins.error(f"the image config of {ref} is not a JSON object")
        return State(cfg, record.config_digest)

    def _pull(self, ref: str, plat: str | None) -> None:
        from rootless.image.pull import registry_timeout as _timeout
        from rootless.image.pull import PullOptions, pull

        self.say(f"Pulling {ref}")
        pull(self.store, ref, PullOptions(platform=plat, timeout=_timeout()))

    def _onbuild(self, run: StageRun) -> None:
        from rootless.build.dockerfile import parse_instruction

        rt = steps.runtime(run.state.config)
        triggers = rt.get("OnBuild")
        if not isinstance(triggers, list) or not triggers:
            return
        self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
        cleared = dict(run.state.config)
        cleared["config"] = {k: v for k, v in rt.items() if k != "OnBuild"}
        run.state = State(cleared, run.state.digest)
        for text in triggers:
            ins = parse_instruction(str(text), run.stage.from_ins.path, run.stage.from_ins.line, self.escape)
            self._instruction(run, ins)

    # ---------------------------------------------------------------- instructions

    def _env(self, run: StageRun) -> dict[str, str]:
        """Values for substitution: the stage's ARGs, overridden by ENV."""
        return {**run.args, **steps.env_map(run.state.config)}

    def _instruction(self, run: StageRun, ins: Instruction) -> None:
        kw = ins.keyword
        if kw == "ARG":
            self._arg(run, ins)
        elif kw == "RUN":
            self._run(run, ins)
        elif kw in ("COPY", "ADD"):
            self._copy(run, ins)
        elif kw == "WORKDIR":
            self._workdir(run, ins)
        else:
            self._metadata(run, ins)

    def _arg(self, run: StageRun, ins: Instruction) -> None:
        for name, value in self._arg_decls(ins, self._env(run)):
            if name in self.opts.build_args:
                value = self.opts.build_args[name]
                self.used_args.add(name)
            elif value is None and name in self.global_args:
                value = self.global_args[name]
            elif value is None:
                value = steps.platform_args(self.opts.platform).get(name)
            if value is not None:
                run.args[name] = value
            else:
                run.args.pop(name, None)

    def _metadata(self, run: StageRun, ins: Instruction) -> None:
        import copy

        if ins.flags and ins.keyword != "HEALTHCHECK":
            raise ins.error(f"{ins.keyword} takes no flags")
        cfg = copy.deepcopy(run.state.config)
        text = steps.apply_metadata(ins, cfg, self._env(run), self.escape)
        rt = steps.runtime(cfg)
        if ins.keyword == "CMD":
            run.cmd_set = True
        elif ins.keyword == "ENTRYPOINT" and not run.cmd_set:
            rt.pop("Cmd", None)

        def make() -> State:
            return self._commit_config(run.state, cfg, f"/bin/sh -c #(nop) {text}", None)

        run.state = self._cached(run, text, [], make)

    def _workdir(self, run: StageRun, ins: Instruction) -> None:
        from rootless.build.copier import CopyJob

        self._metadata(run, ins)
        path = str(steps.runtime(run.state.config).get("WorkingDir") or "/")
        job = CopyJob([], path, True, below=self._layer_dirs(run.state), mkdir_only=True)
        text = f"WORKDIR-MKDIR {path}"
        run.state = self._cached(run, text, [], lambda: self._layer_step(run, job, f"WORKDIR {path}", True),
                                 quiet=True)

    # ---------------------------------------------------------------- cache

    def _cached(self, run: StageRun, text: str, inputs: list[str], make: Callable[[], State],
                *, quiet: bool = False) -> State:
        key = step_key(run.state.digest, text, inputs)
        if not self.opts.no_cache:
            digest = self.cache.get(key)
            if digest is not None:
                state = self._load_state(digest)
                if state is not None:
                    if not quiet:
                        self.say(" ---> Using cache")
                    return state
        state = make()
        self.cache.put(key, state.digest)
        return state

    def _load_state(self, digest: str) -> State | None:
        try:
            cfg = json.loads(self.store.blobs.read(digest))
        except (RootlessError, ValueError, OSError):
            return None
        if not isinstance(cfg, dict):
            return None
        for diff_id in steps.diff_ids(cfg):
            info = self.store.layers.info(diff_id)
            if info is None or not info.compressed_digest or not self.store.blobs.has(info.compressed_digest):
                return None
        return State(cfg, digest)

    def _commit_config(self, parent: State, cfg: Config, created_by: str, diff_id: str | None) -> State:
        new = steps.next_config(cfg, created_by, diff_id)
        data = json.dumps(new, separators=(",", ":")).encode()
        return State(new, self.store.blobs.put(data))

    # ---------------------------------------------------------------- layers

    def _layer_dirs(self, state: State) -> list[str]:
        """The state's layer directories, topmost first (real paths)."""
        return [os.path.realpath(self.store.layers.diff_dir(d)) for d in reversed(steps.diff_ids(state.config))]

    def _layer_step(self, run: StageRun, job: CopyJob, created_by: str, optional: bool) -> State:
        from rootless.build import layers
        from rootless.build.copier import CopyError, write_layer

        def writer(fd: int) -> int:
            try:
                return write_layer(job, fd)
            except CopyError as exc:
                raise RootlessError(f"{created_by.split(' ', 1)[0]} failed: {exc}") from exc

        made = layers.produce_tar(self.store, writer, created_by)
        if made is None:
            if optional:
                return run.state
            raise RootlessError(f"{created_by.split(' ', 1)[0]} failed: nothing to copy")
        tmp, _, diff_id = made
        layers.ingest(self.store, tmp, diff_id, f"the layer of {created_by[:60]}")
        return self._commit_config(run.state, run.state.config, created_by, diff_id)

    # ---------------------------------------------------------------- RUN

    def _run(self, run: StageRun, ins: Instruction) -> None:
        for flag in ins.flags:
            if flag != "network":
                raise ins.error(f"RUN --{flag} is not supported by rootless build")
        network = ins.flags.get("network", "default")
        if network not in ("default", "host", "none"):
            raise ins.error(f"RUN --network={network}: use default, host or none")
        network = self.opts.network if network == "default" else network
        argv = self._run_argv(run, ins)
        arg_env = [f"{k}={v}" for k, v in sorted(run.args.items())]
        proxy = [f"{k}={v}" for k, v in sorted(self.opts.build_args.items())
                 if k in steps.PROXY_ARGS and k not in run.args]
        self.used_args.update(k for k in self.opts.build_args if k in steps.PROXY_ARGS)
        shown = " ".join(argv)
        prefix = f"|{len(arg_env)} {' '.join(arg_env)} " if arg_env else ""
        text = f"RUN {json.dumps(argv)} {json.dumps(arg_env)} network={network}"
        run.state = self._cached(run, text, [], lambda: self._run_layer(run, ins, argv, arg_env + proxy,
                                                                         network, prefix + shown))

    def _run_argv(self, run: StageRun, ins: Instruction) -> list[str]:
        if ins.json_args is not None:
            if not ins.json_args:
                raise ins.error("RUN needs a command")
            return list(ins.json_args)
        shell = steps.shell_of(run.state.config)
        if not ins.heredocs:
            if not ins.value.strip():
                raise ins.error("RUN needs a command")
            return [*shell, ins.value]
        first = ins.heredocs[0]
        if ins.value.strip() in (f"<<{first.name}", f"<<-{first.name}", f'<<"{first.name}"',
                                 f"<<'{first.name}'") and len(ins.heredocs) == 1:
            body = first.content
            return [*shell, body]
        # the shell reads the heredocs itself (and expands unquoted ones)
        script = ins.value
        for doc in ins.heredocs:
            script += "\n" + doc.content + doc.name
        return [*shell, script + "\n"]

    def _run_layer(self, run: StageRun, ins: Instruction, argv: list[str], env: list[str], network: str,
                   created_by: str) -> State:
        from rootless.build import layers

        work = self._new_workdir()
        try:
            self._execute_in(run, ins, argv, env, network, work)
            lowers = self._layer_dirs(run.state)
            made = layers.produce_tar(self.store, layers.pack_upper_writer(os.path.join(work, "upper"), lowers),
                                      "RUN")
        finally:
            self._remove_workdir(work)
        assert made is not None
        tmp, _, diff_id = made
        layers.ingest(self.store, tmp, diff_id, f"the layer of RUN {' '.join(argv)[:60]}")
        return self._commit_config(run.state, run.state.config, created_by, diff_id)

    def _new_workdir(self) -> str:
        base = self.store.paths.tmp
        os.makedirs(base, mode=0o700, exist_ok=True)
        work = os.path.join(base, f"build-{os.getpid()}-{os.urandom(4).hex()}")
        os.mkdir(work, 0o700)
        for d in ("upper", "work", "merged", "empty"):
            os.mkdir(os.path.join(work, d), 0o755)
        return work

    def _remove_workdir(self, work: str) -> None:
        try:
            self.store.ownership.rmtree(work)
        except (OSError, RootlessError):
            from rootless import log

            log.warning(f"could not remove the build directory {work}")

    def _execute_in(self, run: StageRun, ins: Instruction, argv: list[str], env: list[str], network: str,
                    work: str) -> None:
        from rootless.native.spawn import OP_OVERLAY, MountOp
        from rootless.runtime import runner

        links = [os.path.join("l", self._link(d)) for d in steps.diff_ids(run.state.config)]
        lower = ":".join(reversed(links)) if links else os.path.join(work, "empty")
        data = f"lowerdir={lower},upperdir={work}/upper,workdir={work}/work,userxattr"
        if len(data) > 4000:
            raise ins.error("too many layers for one overlay mount: squash the base image")
        merged = os.path.join(work, "merged")
        rt = steps.runtime(run.state.config)
        opts = runner.RunOptions(merged, argv)
        opts.pre_ops = [MountOp(OP_OVERLAY, merged, source=self.store.paths.layers, data=data)]
        opts.image_env = [str(e) for e in rt.get("Env") or []]  # type: ignore[attr-defined]
        opts.env = list(env)
        opts.workdir = str(rt.get("WorkingDir") or "/")
        opts.user = self._numeric_user(run, str(rt.get("User") or ""), opts)
        opts.network = network
        opts.fakeroot = self.mapping_mode == "single"
        opts.runroot = self.opts.runroot
        cid = opts.container_id
        self.say(f" ---> Running in {cid[:12]}")
        status = self._run_quietly(opts) if self.opts.quiet else runner.run(opts)
        if status != 0:
            shown = json.dumps(argv) if ins.json_args is not None else " ".join(argv)
            raise BuildRunError(f"{ins.path}:{ins.line}: The command '{shown}' returned a non-zero code: {status}")
        self.say(f" ---> Removed intermediate container {cid[:12]}")

    def _run_quietly(self, opts: object) -> int:
        from rootless.runtime import runner

        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
            os.dup2(null, 2)
            return runner.run(opts)  # type: ignore[arg-type]
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, null):
                os.close(fd)

    def _link(self, diff_id: str) -> str:
        info = self.store.layers.info(diff_id)
        if info is None:
            raise RootlessError(f"layer {diff_id[7:19]} is missing from the store", hint="pull the base image again")
        return info.link

    def _numeric_user(self, run: StageRun, spec: str, opts: object) -> str | None:
        """USER as numbers (the container's /etc/passwd is read from the layers here,
        since the overlay root exists only inside the container); HOME set to match."""
        if not spec:
            return None
        from rootless.build.copier import ViewTree, resolve_user

        try:
            uid, gid, home = resolve_user(ViewTree(self._layer_dirs(run.state)), spec)
        except PermissionError:
            return spec
        except LookupError as exc:
            raise RootlessError(f"unable to find user for USER {spec}: {exc}") from exc
        if home:
            opts.env.insert(0, f"HOME={home}")  # type: ignore[attr-defined]
        return f"{uid}:{gid}"

    # ---------------------------------------------------------------- COPY / ADD

    def _copy(self, run: StageRun, ins: Instruction) -> None:
        from rootless.build.copier import CopyJob

        allowed = SUPPORTED_COPY_FLAGS if ins.keyword == "COPY" else SUPPORTED_ADD_FLAGS
        for flag in ins.flags:
            if flag not in allowed:
                raise ins.error(f"{ins.keyword} --{flag} is not supported by rootless build")
        env = self._env(run)
        where = f"{ins.path}:{ins.line}"
        args = ins.json_args if ins.json_args is not None else words(ins.value, env, escape=self.escape,
                                                                      where=where)
        if ins.json_args is not None:
            args = [expand(a, env, escape=self.escape, where=where) for a in args]
        if len(args) < 2:
            raise ins.error(f"{ins.keyword} requires at least two arguments: {ins.keyword} SRC... DEST")
        srcs, dest = args[:-1], args[-1]
        workdir = str(steps.runtime(run.state.config).get("WorkingDir") or "/")
        dest_is_dir = dest.endswith(("/", "/.")) or dest in (".", "..")
        abs_dest = posixpath.normpath(dest if dest.startswith("/") else posixpath.join(workdir, dest))
        abs_dest += "/" if dest_is_dir and abs_dest != "/" else ""
        chmod = self._chmod(ins, env)
        chown = ins.flags.get("chown")
        chown = expand(chown, env, escape=self.escape, where=where) if chown else None
        items, inputs, multi = self._sources(run, ins, srcs, env)
        if multi and not dest_is_dir:
            raise ins.error(f"When using {ins.keyword} with more than one source file, the destination "
                            "must be a directory and end with a /")
        job = CopyJob(items, abs_dest, dest_is_dir, chmod=chmod, below=self._layer_dirs(run.state))
        job.owner_spec = chown
        text = (f"{ins.keyword} from={ins.flags.get('from', '')} chown={chown or ''} "
                f"chmod={'' if chmod is None else oct(chmod)} {json.dumps(srcs)} {abs_dest}")
        created_by = f"/bin/sh -c #(nop) {ins.keyword} {' '.join(srcs)} {abs_dest}"
        run.state = self._cached(run, text, inputs, lambda: self._layer_step(run, job, created_by, False))

    def _chmod(self, ins: Instruction, env: dict[str, str]) -> int | None:
        raw = ins.flags.get("chmod")
        if raw is None:
            return None
        value = expand(raw, env, escape=self.escape, where=f"{ins.path}:{ins.line}")
        try:
            mode = int(value, 8)
        except ValueError:
            raise ins.error(f"invalid --chmod={value}: use an octal mode such as 755") from None
        if not 0 <= mode <= 0o7777:
            raise ins.error(f"invalid --chmod={value}")
        return mode

    def _sources(self, run: StageRun, ins: Instruction, srcs: list[str],
                 env: dict[str, str]) -> tuple[list[Item], list[str], bool]:
        from rootless.build.context import clean_source
        from rootless.build.copier import Item, ViewTree
        from rootless.build.dockerfile import expand_heredoc

        items: list[Item] = []
        inputs: list[str] = []
        multi = len(srcs) > 1
        docs = {d.name: d for d in ins.heredocs}
        from_ref = ins.flags.get("from")
        tree: object = self.context
        if from_ref:
            if ins.keyword == "ADD":
                raise ins.error("ADD --from is not supported: use COPY --from")
            from_ref = expand(from_ref, env, escape=self.escape, where=f"{ins.path}:{ins.line}")
            state = self._from_state(from_ref, ins)
            tree = ViewTree(self._layer_dirs(state))
            inputs.append("from:" + state.digest)
        for src in srcs:
            name = _heredoc_name(src)
            if name is not None and name in docs:
                doc = docs[name]
                data = (expand_heredoc(doc.content, env) if doc.expand else doc.content).encode()
                items.append(Item(data=data, name=name, mode=0o644))
                inputs.append("heredoc:" + data.hex())
                continue
            if ins.keyword == "ADD" and src.startswith(("http://", "https://")):
                item, digest = self._download(ins, src)
                items.append(item)
                inputs.append("url:" + digest)
                continue
            if ins.keyword == "ADD" and (src.startswith("git@") or src.endswith(".git")):
                raise ins.error(f"ADD of a git repository ({src}) is not supported")
            if from_ref:
                items.append(Item(tree=tree, rel=clean_source(src), pattern=True))  # type: ignore[arg-type]
                multi = multi or _has_glob(src)
                continue
            matches = self.context.match(src)
            if not matches:
                raise ins.error(f"{ins.keyword} failed: file not found in build context or excluded by "
                                f".dockerignore: {src}")
            multi = multi or len(matches) > 1 or _has_glob(src)
            for rel in matches:
                inputs.append(f"ctx:{rel}:{self.context.tree_hash(rel)}")
                if ins.keyword == "ADD" and _is_local_archive(self.context, rel):
                    items.append(Item(archive=os.path.join(self.context.root, rel)))
                else:
                    items.append(Item(tree=self.context, rel=rel))
        return items, inputs, multi

    def _from_state(self, ref: str, ins: Instruction) -> State:
        for index, state in self.results.items():
            stage = self._stage_by_index(index)
            if (stage is not None and stage.name == ref.lower()) or str(index) == ref:
                return state
        return self._image_state(ref, self.opts.platform, ins)

    def _stage_by_index(self, index: int) -> Stage | None:
        return self.stages_by_index.get(index)

    def _download(self, ins: Instruction, url: str) -> tuple[Item, str]:
        import hashlib
        import posixpath
        import urllib.error
        import urllib.parse
        import urllib.request
        from email.utils import parsedate_to_datetime

        from rootless.build.copier import Item

        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                data = resp.read()
                modified = resp.headers.get("Last-Modified")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ins.error(f"ADD failed: cannot download {url}: {getattr(exc, 'reason', exc)}") from None
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        want = ins.flags.get("checksum")
        if want and want != digest:
            raise ins.error(f"ADD failed: checksum mismatch for {url}: expected {want}, got {digest}")
        mtime = 0
        if modified:
            try:
                mtime = int(parsedate_to_datetime(modified).timestamp())
            except (TypeError, ValueError):
                mtime = 0
        name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
        return Item(data=data, name=name, mode=0o600, mtime=mtime or 1), digest

    # ---------------------------------------------------------------- the image

    def _labels(self, state: State) -> State:
        import copy

        cfg = copy.deepcopy(state.config)
        rt = steps.runtime(cfg)
        labels = rt.get("Labels")
        merged = dict(labels) if isinstance(labels, dict) else {}
        merged.update(self.opts.labels)
        rt["Labels"] = merged
        text = "LABEL " + " ".join(f"{k}={v}" for k, v in sorted(self.opts.labels.items()))
        key = step_key(state.digest, text)
        digest = None if self.opts.no_cache else self.cache.get(key)
        cached = self._load_state(digest) if digest else None
        if cached is not None:
            return cached
        new = self._commit_config(state, cfg, f"/bin/sh -c #(nop) {text}", None)
        self.cache.put(key, new.digest)
        return new

    def _write_image(self, state: State) -> str:
        from rootless.image import types as t
        from rootless.image.manifest import manifest_to_json
        from rootless.image.types import Descriptor, Manifest
        from rootless.runtime.commit import _base_layers, _platform
        from rootless.store import normalize_name

        if not state.digest.startswith("sha256:"):
            state = self._commit_config(state, state.config, "/bin/sh -c #(nop) FROM scratch", None)
        names = [normalize_name(n) for n in self.opts.tags]
        layers = _base_layers(self.store, steps.diff_ids(state.config))
        config = self.store.blobs.read(state.digest)
        manifest = manifest_to_json(Manifest(t.OCI_MANIFEST, Descriptor(t.OCI_CONFIG, state.digest, len(config)),
                                             tuple(layers)))
        digest = self.store.blobs.put(manifest)
        plat = _platform(state.config)
        targets: list[str | None] = list(names) or [None]
        for name in targets:
            self.store.index.add(digest, t.OCI_MANIFEST, len(manifest), name, platform=plat)
        return state.digest


def _split_keep_quotes(text: str) -> list[str]:
    """ARG words (quotes kept for the later expansion)."""
    out: list[str] = []
    cur: list[str] = []
    quote = ""
    for ch in text.strip():
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch.isspace():
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def _expand_loose(text: str, env: dict[str, str]) -> str:
    try:
        return expand(text, env)
    except DockerfileError:
        return text


def _heredoc_name(src: str) -> str | None:
    if not src.startswith("<<"):
        return None
    name = src[2:].lstrip("-").strip("'\"")
    return name or None


def _has_glob(src: str) -> bool:
    return any(c in src for c in "*?[")


def _is_local_archive(context: Context, rel: str) -> bool:
    import stat
    import tarfile

    st = context.lstat(rel)
    if st is None or not stat.S_ISREG(st.st_mode):
        return False
    path = os.path.join(context.root, rel)
    with open(path, "rb") as f:
        head = f.read(6)
    compressed = head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))
    try:
        return tarfile.is_tarfile(path) and (compressed or _plain_tar(path))
    except OSError:
        return False


def _plain_tar(path: str) -> bool:
    with open(path, "rb") as f:
        block = f.read(512)
    return len(block) == 512 and block[257:262] == b"ustar"


def build(opts: BuildOptions, out: TextIO) -> str:
    """Build; returns the image ID (`sha256:<config digest>`)."""
    from rootless.build.context import Context
    from rootless.store import Store

    context = Context(opts.context)
    path = opts.dockerfile or os.path.join(context.root, "Dockerfile")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise UsageError(f"cannot read the Dockerfile: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the Dockerfile {path}: {exc}") from None
    shown = os.path.relpath(path, context.root) if path.startswith(context.root + os.sep) else path
    store = Store.open(opts.root)
    builder = Builder(opts, store, context, out)
    try:
        with store.lock(shared=True):
            return builder.build(text, shown)
    except OSError as exc:
        import errno

        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from rootless.errors import StoreError

        raise StoreError(f"no space left on the device holding {store.root}",
                         hint="free some space (rootless image prune) and build again") from exc
