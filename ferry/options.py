"""Network and lock state options for dump and restore, with Podman's option names.

A snapshot dumps established TCP connections and file locks by default, so a container never
fails to checkpoint because it has a client connected or a database holds a lock. What a
restore does with them depends on why it runs:

* a **migration** moves the container: it keeps its connections (``tcp-established``), its IP
  and its MAC address;
* a plain ``ferry restore`` (disaster recovery, or a ``--name`` copy next to the original)
  closes the connections (``tcp-close``) and lets the network hand out a fresh IP and MAC, so
  it never claims an address or a connection that another container holds on the target.

File locks are restored in both cases. Podman 4.3.1 has no ``restore --tcp-close``: ferry asks
CRIU for it through a per-container CRIU configuration file (:mod:`ferry.archive.criu_config`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ferry.errors import UsageError

Use = Literal["migrate", "restore"]

DEFAULT_RESTORE_TIMEOUT_S = 600


@dataclass(frozen=True)
class DumpOptions:
    """``podman container checkpoint`` options that decide what state CRIU may dump."""

    tcp_established: bool = True
    file_locks: bool = True

    def podman_args(self) -> list[str]:
        flags = (("--tcp-established", self.tcp_established), ("--file-locks", self.file_locks))
        return [flag for flag, on in flags if on]

    def as_record(self) -> dict[str, bool]:
        """What the manifest records."""
        return {"tcp_established": self.tcp_established, "file_locks": self.file_locks}


@dataclass(frozen=True)
class RestoreOptions:
    """``podman container restore`` options, plus ``tcp_close`` (a CRIU option Podman lacks)."""

    tcp_established: bool = False
    tcp_close: bool = True
    file_locks: bool = True
    ignore_static_ip: bool = True
    ignore_static_mac: bool = True
    publish: tuple[str, ...] = ()

    def podman_args(self) -> list[str]:
        args = []
        if self.tcp_established:
            args.append("--tcp-established")
        if self.file_locks:
            args.append("--file-locks")
        if self.ignore_static_ip:
            args.append("--ignore-static-ip")
        if self.ignore_static_mac:
            args.append("--ignore-static-mac")
        # One argv element per value, with '=': a value is never read as an option.
        args += [f"--publish={p}" for p in self.publish]
        return args


#: Per-use defaults, as documented in README ("Network state").
_DEFAULTS: dict[str, RestoreOptions] = {
    "migrate": RestoreOptions(tcp_established=True, tcp_close=False, ignore_static_ip=False, ignore_static_mac=False),
    "restore": RestoreOptions(tcp_established=False, tcp_close=True, ignore_static_ip=True, ignore_static_mac=True),
}


def restore_options(
    use: Use,
    *,
    tcp_established: bool | None = None,
    tcp_close: bool | None = None,
    file_locks: bool | None = None,
    ignore_static_ip: bool | None = None,
    ignore_static_mac: bool | None = None,
    publish: list[str] | tuple[str, ...] | None = None,
) -> RestoreOptions:
    """The options for one restore: the use's defaults, overridden by what was asked (None: not asked).

    Asking for one of tcp-established / tcp-close turns the other off unless it was asked for
    too; asking for both is a usage error (CRIU cannot both keep and close a connection)."""
    base = _DEFAULTS[use]
    if tcp_established and tcp_close:
        raise UsageError(
            "--tcp-established and --tcp-close contradict each other: tcp-established restores the "
            "archived TCP connections as they were, tcp-close restores them closed. Choose one."
        )
    if tcp_established is not None and tcp_close is None:
        tcp_close = False if tcp_established else base.tcp_close
    if tcp_close is not None and tcp_established is None:
        tcp_established = False if tcp_close else base.tcp_established
    return RestoreOptions(
        tcp_established=base.tcp_established if tcp_established is None else tcp_established,
        tcp_close=base.tcp_close if tcp_close is None else tcp_close,
        file_locks=base.file_locks if file_locks is None else file_locks,
        ignore_static_ip=base.ignore_static_ip if ignore_static_ip is None else ignore_static_ip,
        ignore_static_mac=base.ignore_static_mac if ignore_static_mac is None else ignore_static_mac,
        publish=tuple(check_publish(p) for p in publish or ()),
    )


def check_rename(options: RestoreOptions, name: str | None, what: str = "--name") -> None:
    """Podman refuses ``--tcp-established`` with ``--name`` (after everything else was done):
    refused here, before anything runs."""
    if name and options.tcp_established:
        raise UsageError(
            f"Podman cannot restore established TCP connections under a new name ({what} {name!r}). Keep "
            "the container's name, or close the connections on restore (tcp-close)."
        )


_PORTS = re.compile(r"\d{1,5}(-\d{1,5})?")
_PROTOCOLS = {"tcp", "udp", "sctp"}


def check_publish(spec: str) -> str:
    """Check one ``--publish`` value in Podman's syntax: ``[[ip:][hostPort]:]containerPort[/protocol]``."""
    bad = UsageError(
        f"Cannot read --publish {spec!r}: use Podman's syntax [[ip:][hostPort]:]containerPort[/protocol], "
        "e.g. 8080:80, 127.0.0.1:8080:80/tcp or 80."
    )
    if not spec or spec != spec.strip() or any(c.isspace() for c in spec) or spec.startswith("-"):
        raise bad
    ports, _, protocols = spec.partition("/")
    if protocols and not set(protocols.split(",")) <= _PROTOCOLS:
        raise bad
    head, _, container_port = ports.rpartition(":")
    if not _PORTS.fullmatch(container_port):
        raise bad
    if head:
        ip, _, host_port = head.rpartition(":")
        if host_port and not _PORTS.fullmatch(host_port):
            raise bad
        if ip and not re.fullmatch(r"[0-9A-Fa-f.:\[\]]+", ip):
            raise bad
    return spec
