"""A real Google Cloud Storage emulator on loopback, for tests that drive gcsfs.

The emulator is ``gcp-storage-emulator`` (PyPI), run as a subprocess in in-memory mode on a free
127.0.0.1 port. Use it as::

    with gcs_emulator() as endpoint:
        fs = fsspec.filesystem("gcs", **gcs_storage_options(endpoint))
        fs.mkdir("bucket")

or ``proc, endpoint = start_gcs_emulator()`` ... ``stop_gcs_emulator(proc)``.

gcsfs must be imported with ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in the environment,
otherwise its experimental file system probes bucket layouts the emulator does not serve and
each call stalls for about a minute. Importing this module sets that variable (unless the caller
already set it); :func:`check_gcsfs_usable` tells when gcsfs was imported too early for that.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HNS_ENV = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"
os.environ.setdefault(HNS_ENV, "false")

HOST = "127.0.0.1"
PROJECT = "test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _emulator_command() -> list[str]:
    """The console script installed beside this interpreter, else the one on PATH, else ``-m``."""
    beside = Path(sys.executable).parent / "gcp-storage-emulator"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("gcp-storage-emulator")
    if found:
        return [found]
    return [sys.executable, "-m", "gcp_storage_emulator"]


def _answers(endpoint_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint_url}/", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop_gcs_emulator(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Kill the emulator started by :func:`start_gcs_emulator` and reap it. Idempotent."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def start_gcs_emulator(timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start the emulator on a free loopback port and wait until it answers.

    Returns the process and its endpoint URL (``http://127.0.0.1:PORT``). Data lives in memory
    only and is gone when the process stops. Raises RuntimeError if it exits or does not answer
    within ``timeout`` seconds (its output is in the message).
    """
    port = _free_port()
    endpoint_url = f"http://{HOST}:{port}"
    cmd = [*_emulator_command(), "start", "--host", HOST, "--port", str(port), "--in-memory", "--quiet"]
    # Output goes to an unlinked temporary file (never a pipe nobody drains, which could block the
    # server); it is read only to explain a failed start.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _answers(endpoint_url):
                return proc, endpoint_url
            time.sleep(0.05)
        stop_gcs_emulator(proc)
        log.seek(0)
        out = log.read().decode(errors="replace")
    raise RuntimeError(
        f"gcp-storage-emulator did not answer on {endpoint_url} within {timeout} s (exit code {proc.returncode}): {out}"
    )


def gcs_storage_options(endpoint_url: str) -> dict[str, str]:
    """``storage_options`` for gcsfs / ``fsspec.filesystem("gcs", ...)`` against the emulator."""
    return {"endpoint_url": endpoint_url, "token": "anon", "project": PROJECT}


def check_gcsfs_usable() -> None:
    """Raise RuntimeError if gcsfs was imported with its experimental (stalling) file system."""
    if os.environ.get(HNS_ENV, "true").lower() in ("true", "1"):
        raise RuntimeError(f"set {HNS_ENV}=false before gcsfs is imported")
    gcsfs = sys.modules.get("gcsfs")
    if gcsfs is not None and gcsfs.GCSFileSystem.__name__ != "GCSFileSystem":
        raise RuntimeError(f"gcsfs was imported before {HNS_ENV}=false was set; import tests.gcs_server first")


@contextmanager
def gcs_emulator(timeout: float = 30.0) -> Iterator[str]:
    """Run the emulator for the ``with`` block; yields its endpoint URL."""
    proc, endpoint_url = start_gcs_emulator(timeout)
    try:
        yield endpoint_url
    finally:
        stop_gcs_emulator(proc)
