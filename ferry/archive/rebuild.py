"""Rebuild the JSON members Podman, runc and CRIU act on, from the archive's, for this host.

One entry point for the reader: :func:`rebuild` takes the raw bytes of ``config.dump``,
``spec.dump``, ``network.status`` and ``checkpoint/descriptors.json`` and returns what Podman
gets instead. The same call runs at verify time without host facts, so ``ferry verify`` refuses
what a restore would refuse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ferry.archive import members as m
from ferry.archive import safejson
from ferry.archive.podman_config import named_volumes, rebuild_config, rebuild_descriptors
from ferry.archive.podman_network import rebuild_network_status
from ferry.archive.podman_spec import rebuild_spec
from ferry.archive.rebuild_context import RebuildContext
from ferry.errors import UnsafeArchiveError

MAX_JSON_BYTES = 4 << 20
MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class Rebuilt:
    #: member name -> the bytes Podman gets
    members: dict[str, bytes]
    #: the rebuilt OCI spec: what the CRIU images are checked against
    spec: dict[str, Any]
    name: str
    image_id: str
    image_name: str
    volumes: frozenset[str]


def parse(data: bytes, what: str) -> Any:
    return safejson.loads(data, what=what, max_bytes=MAX_JSON_BYTES, max_depth=MAX_JSON_DEPTH)


def rebuild(raw: Mapping[str, bytes], ctx: RebuildContext, volume_tars: frozenset[str] = frozenset()) -> Rebuilt:
    config_value = parse(raw[m.CONFIG_DUMP], m.CONFIG_DUMP)
    spec_value = parse(raw[m.SPEC_DUMP], m.SPEC_DUMP)
    volumes = named_volumes(config_value)
    by_dest = {v["dest"]: v["volumeName"] for v in volumes}
    names = frozenset(v["volumeName"] for v in volumes)
    stray = sorted(volume_tars - names)
    if stray:
        raise UnsafeArchiveError(
            f"The archive carries volume contents for {', '.join(stray)}, which config.dump does not mount; "
            "refusing the archive."
        )
    spec = rebuild_spec(spec_value, ctx, by_dest)
    config = rebuild_config(config_value, spec, ctx)
    out = {m.CONFIG_DUMP: _dumps(config), m.SPEC_DUMP: _dumps(spec)}
    if m.NETWORK_STATUS in raw:
        out[m.NETWORK_STATUS] = _dumps(rebuild_network_status(parse(raw[m.NETWORK_STATUS], m.NETWORK_STATUS)))
    if m.DESCRIPTORS in raw:
        out[m.DESCRIPTORS] = _dumps(rebuild_descriptors(parse(raw[m.DESCRIPTORS], m.DESCRIPTORS)))
    return Rebuilt(out, spec, config["name"], config["rootfsImageID"], config.get("rootfsImageName", ""), names)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()
