"""Explain why a kernel feature is unavailable, naming the setting that blocks it."""

from __future__ import annotations

SYSCTLS = (
    ("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces is 0",
     "raise it: sysctl -w user.max_user_namespaces=15000"),
    ("/proc/sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone is 0",
     "enable it: sysctl -w kernel.unprivileged_userns_clone=1"),
    ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
     "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)",
     "allow them: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or add an AppArmor profile "
     "with 'userns,' for rootless"),
)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def userns_blocker() -> tuple[str, str] | None:
    """(what blocks user namespaces, how to fix it), or None if no known setting does."""
    for path, bad, what, hint in SYSCTLS:
        if _read(path) == bad:
            return what, hint
    return None


def explain_userns_failure(errnum: int) -> tuple[str, str]:
    found = userns_blocker()
    if found is not None:
        return f"user namespaces are disabled: {found[0]}", found[1]
    import os

    if errnum == 28:  # ENOSPC
        return ("user namespaces are disabled or exhausted: user.max_user_namespaces reached "
                "(in this namespace or a parent)", "raise user.max_user_namespaces")
    return (f"cannot create a user namespace: {os.strerror(errnum)}",
            "check seccomp/AppArmor policy and container nesting (see docs/rootless-setup.md)")
