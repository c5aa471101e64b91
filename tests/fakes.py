"""A fake :class:`ferry.runtime.Runtime` for unit tests of tasks and flows: it records every call
and keeps containers, images and volumes in memory. It runs nothing: what Podman, runc and CRIU
really do is proven by the end-to-end tests (tests/e2e), never here.

Its checkpoint writes a Podman-layout export of the container (config.dump and spec.dump of a real
Podman 4.3.1 export, stand-in CRIU images), so ferry's own stages (archive, upload, download,
verify, rewrite) run for real on its output; its restore reads the container's name back from the
import.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import zstandard

from ferry.archive.manifest import Source
from ferry.errors import CheckpointError, ContainerNotFoundError, ContainerStateError, FerryError, RuntimeCommandError
from ferry.options import DumpOptions, RestoreOptions
from ferry.runtime import Changes, CheckpointStats, ContainerInfo, Mount
from tests.archive_forge import MIN_MEMBERS, real_config, real_spec

IMAGE_ID = "f" * 64
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
IMAGE_NAME = "img"
SOURCE = Source(host="fake-host", kernel="6.0.0", criu="4.2", podman="4.3.1", runtime="runc 1.1")


@dataclass
class FakeContainer:
    name: str
    id: str
    image_id: str = IMAGE_ID
    image_name: str = IMAGE_NAME
    state: str = "running"
    checkpointed: bool = False
    mounts: tuple[Mount, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    #: the root file-system: path -> content (None: a directory)
    files: dict[str, bytes | None] = field(default_factory=dict)
    changes: Changes = field(default_factory=Changes)

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            name=self.name,
            state=self.state,
            pid=4242 if self.state == "running" else 0,
            image_id=self.image_id,
            image_name=self.image_name,
            static_dir="",
            checkpointed=self.checkpointed,
            mounts=self.mounts,
        )


class FakeExport:
    """Podman's export as :meth:`FakeRuntime.checkpoint_stream` yields it: bytes, then an outcome."""

    def __init__(self, runtime: FakeRuntime, data: bytes, name: str, *, died: bool) -> None:
        self._runtime = runtime
        self._data = io.BytesIO(data)
        self._name = name
        self._died = died
        self.finished = self.abandoned = False

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(min(size, 4096) if size > 0 else 4096)  # a pipe's short reads

    def size_hint(self) -> int:
        return len(self._data.getbuffer())

    def finish(self) -> CheckpointStats:
        self._runtime._call("export_finish", self._name)
        self.finished = True
        if self._died:
            raise CheckpointError(f"Cannot checkpoint container {self._name!r}: podman was killed (signal 9) (fake).")
        return CheckpointStats(frozen_us=1500, runtime_us=1000, total_us=2000)


class FakeRuntime:
    """Satisfies :class:`ferry.runtime.Runtime`; ``fail[method] = error`` makes a method raise."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.containers: dict[str, FakeContainer] = {}
        self.images: dict[str, str] = {IMAGE_ID: IMAGE_NAME}
        self.volumes: set[str] = set()
        self.frozen: set[str] = set()
        self.fail: dict[str, FerryError] = {}
        self.export_dies_after: int | None = None  # Podman dies after writing this many bytes of its export
        self._ids = 0

    # -- test helpers -------------------------------------------------------------------------

    def add(self, name: str, **kwargs: Any) -> FakeContainer:
        self._ids += 1
        ctr = FakeContainer(name=name, id=f"{self._ids:064x}", **kwargs)
        self.containers[name] = ctr
        return ctr

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if method in self.fail:
            raise self.fail[method]

    def _find(self, ref: str) -> FakeContainer:
        for ctr in self.containers.values():
            if ref in (ctr.name, ctr.id):
                return ctr
        raise ContainerNotFoundError(f"There is no container {ref!r} on this host (fake).")

    # -- containers ---------------------------------------------------------------------------

    def inspect(self, container: str) -> ContainerInfo:
        self._call("inspect", container)
        return self._find(container).info()

    def running_containers(self, label: str | None = None) -> list[str]:
        self._call("running_containers", label)
        key, _, value = (label or "").partition("=")
        return sorted(
            c.name
            for c in self.containers.values()
            if c.state == "running" and (not label or (key in c.labels and (not value or c.labels[key] == value)))
        )

    def exists(self, container: str) -> bool:
        self._call("exists", container)
        return any(container in (c.name, c.id) for c in self.containers.values())

    def diff(self, container: str) -> Changes:
        self._call("diff", container)
        return self._find(container).changes

    @contextlib.contextmanager
    def mounted(self, container: str) -> Iterator[Path]:
        self._call("mounted", container)
        ctr = self._find(container)
        root = self.workdir / "mounts" / ctr.id
        for path, data in ctr.files.items():
            target = root / path.lstrip("/")
            if data is None:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        root.mkdir(parents=True, exist_ok=True)
        yield root

    def remove(self, container: str, *, force: bool = False) -> None:
        self._call("remove", container, force)
        del self.containers[self._find(container).name]

    # -- images and volumes ---------------------------------------------------------------------

    @contextlib.contextmanager
    def image_mounted(self, image: str) -> Iterator[Path]:
        self._call("image_mounted", image)
        root = self.workdir / "images" / image
        root.mkdir(parents=True, exist_ok=True)
        yield root

    def image_exists(self, image: str) -> bool:
        self._call("image_exists", image)
        return image in self.images

    def save_image(self, image: str, dest: Path) -> None:
        self._call("save_image", image, dest)
        dest.write_text(json.dumps({"image_id": image, "image_name": self.images[image]}))

    def load_image(self, archive: Path) -> None:
        self._call("load_image", archive)
        data = archive.read_bytes()
        if data.startswith(ZSTD_MAGIC):  # podman load takes compressed archives too
            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        saved = json.loads(data)
        self.images[saved["image_id"]] = saved["image_name"]

    def tag_image(self, image: str, name: str) -> None:
        self._call("tag_image", image, name)
        self.images[image] = name

    def volume_exists(self, name: str) -> bool:
        self._call("volume_exists", name)
        return name in self.volumes

    # -- freezing, checkpoint, restore --------------------------------------------------------

    def freeze(self, info: ContainerInfo, timeout: float = 30) -> Path:
        self._call("freeze", info.name)
        if self._find(info.id).state != "running":
            raise ContainerStateError(f"Container {info.name!r} has no running process to freeze (fake).")
        self.frozen.add(info.id)
        knob = self.workdir / f"freeze-{info.id[:12]}"
        knob.write_text("FROZEN")
        return knob

    def thaw(self, knob: Path) -> None:
        self._call("thaw", knob)
        self.frozen = {cid for cid in self.frozen if not knob.name.endswith(cid[:12])}
        knob.write_text("THAWED")

    def _export(self, info: ContainerInfo, leave_running: bool) -> bytes:
        ctr = self._find(info.id)
        members = dict(MIN_MEMBERS)
        config = real_config(name=ctr.name, rootfsImageID=ctr.image_id, rootfsImageName=ctr.image_name)
        members["config.dump"] = json.dumps(config).encode()
        members["spec.dump"] = json.dumps(real_spec()).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members.items():
                entry = tarfile.TarInfo(name)
                entry.size = len(data)
                tar.addfile(entry, io.BytesIO(data))
        if not leave_running:
            ctr.state, ctr.checkpointed = "exited", True
        return buffer.getvalue()

    @contextlib.contextmanager
    def checkpoint_stream(
        self,
        info: ContainerInfo,
        fifo: Path,
        *,
        leave_running: bool,
        options: DumpOptions | None = None,
        timeout: float = 600,
        while_dumping: Callable[[], None] | None = None,
    ) -> Iterator[FakeExport]:
        self._call("checkpoint", info.name, fifo, leave_running, options)
        if while_dumping is not None:
            while_dumping()
        data = self._export(info, leave_running)
        if self.export_dies_after is not None:
            data = data[: self.export_dies_after]
        export = FakeExport(self, data, info.name, died=self.export_dies_after is not None)
        try:
            yield export
        finally:
            export.abandoned = not export.finished
            self._call("export_closed", info.name)

    def restore_import(
        self,
        archive: Path,
        *,
        name: str | None,
        options: RestoreOptions | None = None,
        timeout: float = 300,
        target: str = "",
    ) -> tuple[str, CheckpointStats]:
        self._call("restore_import", archive, name, options, timeout, target)
        with tarfile.open(archive, "r:") as tar:
            f = tar.extractfile("config.dump")
            if f is None:
                raise RuntimeCommandError("the import has no config.dump (fake)")
            config = json.loads(f.read())
        ctr = self.add(name or str(config["name"]), image_id=str(config["rootfsImageID"]))
        ctr.image_name = str(config.get("rootfsImageName") or "")
        return ctr.id, CheckpointStats(total_us=3000)

    def restore_local(self, container: str) -> None:
        self._call("restore_local", container)
        ctr = self._find(container)
        if not ctr.checkpointed:
            raise RuntimeCommandError(f"container {container!r} has no local checkpoint (fake)")
        ctr.state = "running"

    # -- this host ------------------------------------------------------------------------------

    def store_info(self) -> tuple[str, str, str]:
        self._call("store_info")
        return "/var/lib/containers/storage/volumes", "cgroupfs", "runc"

    def reference_spec(self, workdir: Path) -> dict[str, Any]:
        self._call("reference_spec", workdir)
        return real_spec()

    def source(self) -> Source:
        self._call("source")
        return replace(SOURCE)

    # -- CRIU and crit --------------------------------------------------------------------------

    def criu_version(self) -> str:
        self._call("criu_version")
        return SOURCE.criu

    def criu_check(self) -> tuple[bool, str]:
        self._call("criu_check")
        return True, "Looks good."

    def cpuinfo_check(self, folder: Path) -> tuple[bool, str]:
        self._call("cpuinfo_check", folder)
        return True, "fake: compatible"

    def crit_decode(self, path: Path) -> dict[str, Any]:
        self._call("crit_decode", path)
        return {"magic": "FAKE", "entries": []}
