"""Real storage servers on loopback for the tests: a moto S3 server (as s3fs's own suite runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

MOTO = str(Path(sys.executable).with_name("moto_server"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def options(self, key: str = "testing", secret: str = "testing") -> dict[str, object]:
        return {
            "key": key,
            "secret": secret,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def make_bucket(self, name: str, key: str = "testing", secret: str = "testing") -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        client.create_bucket(Bucket=name)

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()


@contextmanager
def moto_server(**env: str) -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1; extra env configures it (e.g. enforced IAM auth)."""
    assert Path(MOTO).exists(), "moto_server missing: pip install 'moto[server]'"
    port = free_port()
    proc = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{endpoint}/moto-api/")
        yield S3Server(endpoint, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class FlakyProxy:
    """A TCP proxy on loopback that cuts connections mid-stream: the first ``drops`` times more
    than ``after`` bytes cross it in one direction on one connection, that connection is reset."""

    def __init__(self, target_port: int, *, after: int, drops: int, direction: str = "up") -> None:
        import threading

        self.target_port, self.after, self.drops, self.direction = target_port, after, drops, direction
        self.dropped = 0
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._server.close()
        with self._lock:
            left, self._open = list(self._open), set()
        for s in left:  # connections a client kept alive: their pumps end on the error
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open.update((client, upstream))
            state = {"up": 0, "down": 0, "dead": False, "ended": 0}
            for src, dst, way in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pump, args=(src, dst, way, state, client, upstream), daemon=True).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        way: str,
        state: dict[str, object],
        client: socket.socket,
        upstream: socket.socket,
    ) -> None:
        import struct

        try:
            while data := src.recv(65536):
                state[way] = int(state[way]) + len(data)  # type: ignore[call-overload]
                if way == self.direction and int(state[way]) > self.after and self._take_drop():  # type: ignore[call-overload]
                    for s in (client, upstream):
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        s.close()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                state["ended"] = int(state["ended"]) + 1  # type: ignore[call-overload]
                last = state["ended"] == 2
                if last:
                    self._open.difference_update((client, upstream))
            if last:  # both directions are done: the connection's sockets are closed, not left to GC
                for s in (client, upstream):
                    s.close()

    def _take_drop(self) -> bool:
        with self._lock:
            if self.dropped < self.drops:
                self.dropped += 1
                return True
            return False
