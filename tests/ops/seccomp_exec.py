"""Run a command under the syscall filter of a systemd unit file, the way systemd would apply it.

    /usr/bin/python3 seccomp_exec.py UNIT_FILE -- COMMAND [ARG ...]

Run by Debian's python3 (its `python3-seccomp` package holds libseccomp's bindings); the filter stays
in force across `exec`, so COMMAND (the bot, under the project's own interpreter) runs confined. What is
applied: every `SystemCallFilter=` line in order (the first one decides allow-list or deny-list; `~`
removes), groups expanded with `systemd-analyze syscall-filter`, and `SystemCallErrorNumber=` (without
it a denied call kills the process with SIGSYS, as systemd does). Other sandboxing lines are not
applied here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys

import seccomp  # type: ignore[import-not-found]


def syscall_groups() -> dict[str, list[str]]:
    text = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and current is not None and not line.strip().startswith("#"):
            current.append(line.strip())
        elif not line.strip():
            current = None
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def unit_filter(path: str) -> tuple[list[tuple[bool, list[str]]], str | None]:
    rules: list[tuple[bool, list[str]]] = []
    error_number = None
    for raw in open(path).read().splitlines():  # noqa: SIM115 - a tiny script for Debian's python
        line = raw.strip()
        if line.startswith("SystemCallFilter="):
            value = line.split("=", 1)[1].strip()
            deny = value.startswith("~")
            rules.append((deny, value.lstrip("~").split()))
        elif line.startswith("SystemCallErrorNumber="):
            error_number = line.split("=", 1)[1].strip()
    return rules, error_number


def main(argv: list[str]) -> None:
    unit, sep, *command = argv
    if sep != "--" or not command:
        raise SystemExit(__doc__)
    rules, error_number = unit_filter(unit)
    assert rules, f"{unit} has no SystemCallFilter="
    groups = syscall_groups()
    allow_list = not rules[0][0]
    chosen: set[str] = set()
    for deny, names in rules:
        names_set = expand(names, groups)
        if allow_list:
            chosen = chosen - names_set if deny else chosen | names_set
        else:
            chosen = chosen | names_set if deny else chosen - names_set
    denied = seccomp.ERRNO(getattr(errno, error_number)) if error_number else seccomp.KILL_PROCESS
    flt = seccomp.SyscallFilter(defaction=denied if allow_list else seccomp.ALLOW)
    for name in sorted(chosen):
        with contextlib.suppress(RuntimeError, ValueError, OSError):  # a name this kernel does not have
            flt.add_rule(seccomp.ALLOW if allow_list else denied, name)
    flt.load()
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
