"""Image references: `[DOMAIN/]PATH[:TAG][@DIGEST]`, normalised the way docker does.

These five name one image::

    centos
    centos:latest
    library/centos:latest
    docker.io/library/centos:latest
    index.docker.io/library/centos:latest

Rules (distribution/reference): the first `/`-separated component is a domain when it
contains `.` or `:` or is `localhost` (or is an IPv6 literal `[...]`); otherwise the
domain is `docker.io`, and a one-component path on docker.io gets `library/`. The tag
defaults to `latest` unless a digest is given without a tag. Path components are
lowercase `[a-z0-9]` runs separated by `.`, `_`, `__` or dashes; the whole name is at
most 255 characters; a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from rootless.errors import InvalidReferenceError
from rootless.image.types import validate_digest

DEFAULT_DOMAIN = "docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
LEGACY_DOMAINS = frozenset({"index.docker.io"})
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")


def _fail(text: str, why: str, hint: str | None = None) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid reference {text!r}: {why}", hint=hint)


def _split_digest(text: str) -> tuple[str, str | None]:
    name, sep, digest = text.partition("@")
    if not sep:
        return text, None
    try:
        return name, validate_digest(digest)
    except InvalidReferenceError as exc:
        raise _fail(text, exc.message) from None


def _split_tag(text: str, name: str) -> tuple[str, str | None]:
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        return name, None
    tag = name[colon + 1 :]
    if not _TAG_RE.match(tag):
        why = "tag is longer than 128 characters" if len(tag) > 128 else f"bad tag {tag!r}"
        raise _fail(
            text, why, hint="tags are letters, digits, '_', '.' and '-' (not first), at most 128"
        )
    return name[:colon], tag


def _is_domain(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def _split_domain(text: str, name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or not (_is_domain(first) or first.startswith("[")):
        return DEFAULT_DOMAIN, name
    if not _DOMAIN_RE.match(first):
        raise _fail(text, f"bad registry host {first!r}")
    return first, rest


def _normalize_domain(domain: str, path: str) -> tuple[str, str]:
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def _check_path(text: str, path: str) -> None:
    if not path:
        raise _fail(text, "repository name is empty")
    if _PATH_RE.match(path):
        return
    if _PATH_RE.match(path.lower()):
        raise _fail(text, "repository name must be lowercase")
    raise _fail(
        text,
        f"bad repository name {path!r}",
        hint="use lowercase letters, digits and '.', '_', '-' separators between '/'",
    )


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference.

    `domain` is how the name is spelled (`docker.io`); `registry` is the host the
    client talks to (`registry-1.docker.io` for Docker Hub); `repository` is the path
    inside it (`library/centos`).
    """

    domain: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse `NAME[:TAG][@DIGEST]`; raise InvalidReferenceError with the reason."""
        if not text or text != text.strip():
            raise _fail(text, "empty or surrounded by whitespace")
        rest, digest = _split_digest(text)
        name, tag = _split_tag(text, rest)
        domain, path = _split_domain(text, name)
        if _HEX64_RE.match(name):
            raise _fail(text, "a 64-character hexadecimal string is an image ID, not a name")
        _check_path(text, path)
        domain, path = _normalize_domain(domain, path)
        if len(domain) + 1 + len(path) > NAME_MAX:
            raise _fail(text, f"repository name is longer than {NAME_MAX} characters")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(domain, path, tag, digest)

    @property
    def registry(self) -> str:
        """The host[:port] serving the distribution API for this reference."""
        return DOCKER_HUB_REGISTRY if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def name(self) -> str:
        """`domain/repository`, without tag or digest."""
        return f"{self.domain}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise _fail(tag, f"bad tag {tag!r}")
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=validate_digest(digest))

    def familiar_name(self) -> str:
        """Docker's short name: `centos` for docker.io/library/centos. Kept in full
        when the short form would read back as another registry's
        (docker.io/localhost/app, docker.io/a.b/app) or as an image ID
        (docker.io/library/<64 hex digits>)."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.repository.startswith(OFFICIAL_PREFIX):
            short = self.repository[len(OFFICIAL_PREFIX) :]
            if "/" not in short and not _HEX64_RE.match(short):
                return short
        first, sep, _ = self.repository.partition("/")
        if sep and _is_domain(first):
            return self.name
        return self.repository

    def familiar(self) -> str:
        """Docker's short form: `centos:latest`, `user/app:1`, `quay.io/x/y@sha256:...`."""
        return self.familiar_name() + self._suffix()

    def _suffix(self) -> str:
        text = f":{self.tag}" if self.tag else ""
        return text + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def parse_reference(text: str) -> Reference:
    """Shorthand for `Reference.parse`."""
    return Reference.parse(text)
