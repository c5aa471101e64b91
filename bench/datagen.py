"""Seeded synthetic checkpoint data, half incompressible and half text, in Podman's layout.

Used by the archive-stage and the peak-RSS benchmarks, which need no container: the members
are named like a CRIU dump (checkpoint/pages-N.img, inventory.img, config.dump, spec.dump).
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

from tests.archive_forge import real_config, real_spec

CHUNK = 32 << 20
POOL = 16 << 20
WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "checkpoint",
    "restore",
    "ferry",
    "podman",
    "criu",
    "container",
]
SMALL = {
    "checkpoint/inventory.img": b"inventory",
    # a real Podman 4.3.1 export's config and spec (verify rebuilds both, as a restore does)
    "config.dump": json.dumps(real_config(name="bench", rootfsImageName="bench")).encode(),
    "spec.dump": json.dumps(real_spec()).encode(),
}


def _text_pool(rng: random.Random) -> bytes:
    words = rng.choices(WORDS, k=POOL // 5)
    lines = (" ".join(words[i : i + 10]) for i in range(0, len(words), 10))
    return "\n".join(f"{n} {line}" for n, line in enumerate(lines)).encode()[:POOL]


def chunks(total: int, seed: int = 7) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes): alternately pseudo-random and text, ``total`` bytes in all."""
    rng = random.Random(seed)  # noqa: S311 - seeded benchmark data, not secrets
    pool = _text_pool(rng)
    done = index = 0
    while done < total:
        size = min(CHUNK, total - done)
        if index % 2 == 0:
            data = rng.randbytes(size)
        else:
            parts, need = [], size
            while need:
                start = rng.randrange(0, len(pool) - (1 << 20))
                piece = pool[start : start + min(need, 1 << 20)]
                parts.append(piece)
                need -= len(piece)
            data = b"".join(parts)
        yield f"checkpoint/pages-{index + 1}.img", data
        done += size
        index += 1


def write_dir(root: Path, total: int, seed: int = 7) -> int:
    (root / "checkpoint").mkdir(parents=True, exist_ok=True)
    for name, data in [*SMALL.items(), *chunks(total, seed)]:
        (root / name).write_bytes(data)
    return total


def write_tar(path: Path, total: int, seed: int = 7) -> int:
    """An uncompressed tar like Podman's `checkpoint --export --compress none`."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("checkpoint")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for name, data in [*SMALL.items(), *chunks(total, seed)]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return total
