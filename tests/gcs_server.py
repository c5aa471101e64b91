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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

HNS_ENV = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"
os.environ.setdefault(HNS_ENV, "false")

HOST = "127.0.0.1"
PROJECT = "test"

# Runs the emulator's own CLI after making two resumable-upload answers match real GCS (passed to
# ``python -c``):
# - DELETE on an upload session cancels it with 499, which is how gcsfs's GCSFile.discard() cancels an
#   upload. The stock emulator answers 501, which gcsfs retries for ~30 s and then raises HttpError.
# - A request on a session that has already completed answers 200 with the object, instead of 404.
#   gcsfs sends one when a file is closed after commit() (explicitly or by __del__).
_LAUNCHER = """
import sys
import types
from http import HTTPStatus

from gcp_storage_emulator import server, settings
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.storage import RESUMABLE_DIR

CANCELLED = types.SimpleNamespace(value=499, phrase="Client Closed Request")
completed = {}
stock_finalize = objects._finalize_resumable_object
stock_upload_partial = objects.upload_partial


def finalize(response, storage, obj, data, upload_id):
    stock_finalize(response, storage, obj, data, upload_id)
    completed[upload_id] = obj


def upload_partial(request, response, storage, *args, **kwargs):
    upload_id = (request.query.get("upload_id") or [""])[0]
    if upload_id in completed and upload_id not in storage.resumable:
        response.json(completed[upload_id])
        return None
    return stock_upload_partial(request, response, storage, *args, **kwargs)


def cancel_upload(request, response, storage, *args, **kwargs):
    upload_id = (request.query.get("upload_id") or [""])[0]
    if upload_id not in storage.resumable:
        response.status = HTTPStatus.NOT_FOUND
        return
    storage.delete_resumable_file_obj(upload_id)
    storage._delete_file(RESUMABLE_DIR, storage.safe_id(upload_id))
    response.status = CANCELLED


objects._finalize_resumable_object = finalize
objects.upload_partial = upload_partial
upload_route = "^" + settings.UPLOAD_API_ENDPOINT + "/"
server.HANDLERS = tuple(
    (regex, {**handlers, "PUT": upload_partial, "DELETE": cancel_upload})
    if regex.startswith(upload_route)
    else (regex, handlers)
    for regex, handlers in server.HANDLERS
)
main(sys.argv[1:])
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


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
    cmd = [sys.executable, "-c", _LAUNCHER, "start", "--host", HOST, "--port", str(port), "--in-memory", "--quiet"]
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
