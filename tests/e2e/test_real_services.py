"""Real services from Debian's packages (tests/images.py), snapshotted and restored on another host.

"Another host" is faithful: the source container is removed and the source store's directories
are moved out of the way (tests/workloads.py `gone`) before the restore starts, so nothing on
the target can lean on the source's Podman paths. Each service runs once through the CLI and
once through Prefect deployments run by process workers (tests/prefect_stack.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.helpers import Host, env_with, wait_for
from tests.images import MARIADB, REDIS, ServiceImages
from tests.prefect_stack import Stack, prefect_stack
from tests.servers import S3Server
from tests.workloads import (
    check_mariadb,
    check_redis,
    gone,
    install_image,
    recorded_ids,
    start_mariadb,
    start_redis,
)

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu]


# -- through the CLI ---------------------------------------------------------------------------


@pytest.fixture
def api(prefect_harness: None) -> str:
    return str(PREFECT_API_URL.value())


def ferry(host: Host, api: str, staging: Path, *args: str) -> str:
    """`ferry ARGS` against host's store; returns stdout's last line, fails with stderr."""
    env = env_with(host, PREFECT_API_URL=api, FERRY_STAGING=str(staging))
    proc = subprocess.run(
        [sys.executable, "-m", "ferry.cli", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"ferry {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


def test_cli_redis_on_another_host_keeps_its_keys_and_its_client_connection(
    host: Host, other_host: Host, service_images: ServiceImages, api: str, tmp_path: Path
) -> None:
    image = install_image(host, [other_host], REDIS, service_images.tar(REDIS))
    counted = start_redis(host, "redis", image)
    store = f"file://{tmp_path}/store"

    url = ferry(host, api, tmp_path / "staging-1", "snapshot", "redis", "--to", store)
    host.podman("rm", "-f", "-t", "0", "redis")

    with gone(host):
        ferry(other_host, api, tmp_path / "staging-2", "restore", url, "--tcp-established")
        check_redis(other_host, "redis", counted)


def test_cli_mariadb_under_load_leave_running_restored_on_another_host_loses_no_commit(
    host: Host, other_host: Host, service_images: ServiceImages, api: str, tmp_path: Path
) -> None:
    image = install_image(host, [other_host], MARIADB, service_images.tar(MARIADB))
    start_mariadb(host, "db", image)
    store = f"file://{tmp_path}/store"

    committed = len(recorded_ids(host, "db"))
    url = ferry(host, api, tmp_path / "staging-1", "snapshot", "db", "--to", store, "--leave-running")
    after = len(recorded_ids(host, "db"))
    wait_for(lambda: len(recorded_ids(host, "db")) > after + 20, what="the source to go on committing")
    host.podman("rm", "-f", "-t", "0", "db")

    with gone(host):
        ferry(other_host, api, tmp_path / "staging-2", "restore", url)
        check_mariadb(other_host, "db", committed)


# -- through Prefect deployments on workers ----------------------------------------------------


@dataclass
class Deployed:
    stack: Stack
    host1: Host
    host2: Host
    store: str
    logs: Path

    def run(self, name: str, **params: Any) -> Any:
        with temporary_settings({PREFECT_API_URL: self.stack.api}):
            run = run_deployment(name, parameters=params, timeout=900, poll_interval=1)
        assert run.state.is_completed(), f"{name}: {run.state}\n{self.worker_logs()}"
        return run

    def worker_logs(self) -> str:
        return "".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.logs.glob("worker-*.log")))


@pytest.fixture(scope="module")
def deployed(real_criu: None, s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    base = tmp_path_factory.mktemp("services-deployed")
    hosts = {name: Host(Path(f"/var/tmp/fth/{os.getpid()}-s{n}")) for n, name in ((1, "host1"), (2, "host2"))}
    bucket = f"ferry-services-{uuid.uuid4().hex[:8]}"
    store = f"s3://{bucket}/ferry"
    try:
        s3.make_bucket(bucket)
        with prefect_stack(base / "prefect") as stack:
            for name, host in hosts.items():
                stack.deploy_host(name, store)
                stack.start_worker(
                    name,
                    base / f"worker-{name}.log",
                    PATH=os.environ["PATH"],
                    FERRY_PODMAN=host.env_value,
                    FERRY_STAGING=str(base / f"staging-{name}"),
                    FERRY_STORAGE_OPTIONS=json.dumps(s3.options()),
                )
            yield Deployed(stack, hosts["host1"], hosts["host2"], store, base)
    finally:
        for host in hosts.values():
            host.cleanup()
            shutil.rmtree(host.base, ignore_errors=True)


def test_deployments_redis_on_another_host_keeps_its_keys_and_its_client_connection(
    deployed: Deployed, service_images: ServiceImages
) -> None:
    h1, h2 = deployed.host1, deployed.host2
    image = install_image(h1, [h2], REDIS, service_images.tar(REDIS))
    counted = start_redis(h1, "redis-d", image)

    deployed.run("ferry-snapshot/host1", container="redis-d", to=deployed.store)
    h1.podman("rm", "-f", "-t", "0", "redis-d")

    with gone(h1):
        deployed.run("ferry-restore/host2", archive=deployed.store, latest="redis-d", tcp_established=True)
        check_redis(h2, "redis-d", counted)


def test_deployments_mariadb_under_load_leave_running_restored_on_another_host_loses_no_commit(
    deployed: Deployed, service_images: ServiceImages
) -> None:
    h1, h2 = deployed.host1, deployed.host2
    image = install_image(h1, [h2], MARIADB, service_images.tar(MARIADB))
    start_mariadb(h1, "db-d", image)

    committed = len(recorded_ids(h1, "db-d"))
    deployed.run("ferry-snapshot/host1", container="db-d", to=deployed.store, leave_running=True)
    after = len(recorded_ids(h1, "db-d"))
    wait_for(lambda: len(recorded_ids(h1, "db-d")) > after + 20, what="the source to go on committing")
    h1.podman("rm", "-f", "-t", "0", "db-d")

    with gone(h1):
        deployed.run("ferry-restore/host2", archive=deployed.store, latest="db-d")
        check_mariadb(h2, "db-d", committed)
