"""One Prefect lab for the whole package (tests/e2e/deployments/lab.py)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.deployments.lab import Deployed
from tests.helpers import IMAGE, Host
from tests.prefect_stack import prefect_stack
from tests.servers import S3Server


@pytest.fixture(scope="package")
def deployed(
    real_criu: None, rootfs_tar: Path, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    base = tmp_path_factory.mktemp("deployed")
    host1 = Host(Path(f"/var/tmp/fth/{os.getpid()}-d1"))
    host2 = Host(Path(f"/var/tmp/fth/{os.getpid()}-d2"))
    bucket = f"ferry-deploy-{uuid.uuid4().hex[:8]}"
    store = f"s3://{bucket}/ferry"
    faults = {h: base / f"faults-{h}" for h in ("host1", "host2")}
    try:  # a failed setup (image import, bucket) leaves no Podman store behind either
        host1.podman("import", str(rootfs_tar), IMAGE)
        host1.podman("save", "-o", str(base / "image.tar"), IMAGE)
        host2.podman("load", "-i", str(base / "image.tar"))
        s3.make_bucket(bucket)
        with prefect_stack(base / "prefect") as stack:
            stack.deploy_host("host1", store)
            stack.deploy_host("host2", store)
            for name, host in (("host1", host1), ("host2", host2)):
                faults[name].write_text("")
                stack.start_worker(
                    name,
                    base / f"worker-{name}.log",
                    PATH=os.environ["PATH"],
                    FERRY_PODMAN=host.env_value,
                    FERRY_STAGING=str(base / f"staging-{name}"),
                    FERRY_FAULTS_FILE=str(faults[name]),
                    FERRY_STORAGE_OPTIONS=json.dumps(s3.options()),
                    FERRY_PROGRESS_MIN_BYTES="0",
                )
            yield Deployed(stack, host1, host2, store, s3.options(), faults, base)
    finally:
        for host in (host1, host2):
            host.cleanup()
            shutil.rmtree(host.base, ignore_errors=True)
