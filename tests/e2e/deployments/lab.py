"""The Prefect lab the deployment tests share: a real `prefect server start`, a process worker per
host (two Podman stores standing for two hosts), deployments from prefect.yaml, a moto S3 store,
real CRIU; and what the tests ask it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.helpers import Host
from tests.prefect_stack import Stack


@dataclass
class Deployed:
    stack: Stack
    host1: Host
    host2: Host
    store: str
    options: dict[str, Any]
    faults: dict[str, Path]
    logs: Path

    def run(self, name: str, **params: Any) -> Any:
        with temporary_settings({PREFECT_API_URL: self.stack.api}):
            return run_deployment(name, parameters=params, timeout=900, poll_interval=1)

    def client(self) -> Any:
        return _Client(self.stack.api)

    def inject(self, host: str, *stages: str) -> None:
        self.faults[host].write_text("".join(f"{s}\n" for s in stages))

    def worker_logs(self) -> str:
        return "".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.logs.glob("worker-*.log")))


class _Client:
    def __init__(self, api: str) -> None:
        self._settings = temporary_settings({PREFECT_API_URL: api})

    def __enter__(self) -> Any:
        self._settings.__enter__()
        self._client = get_client(sync_client=True)
        return self._client.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._client.__exit__(*exc)
        self._settings.__exit__(*exc)


def children(deployed: Deployed, parent_id: Any) -> list[Any]:
    with deployed.client() as client:
        return list(
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
            )
        )


def artifacts(deployed: Deployed, run_id: Any) -> list[Any]:
    with deployed.client() as client:
        return list(client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))))


def wait_final(deployed: Deployed, run_id: Any) -> Any:
    deadline = time.monotonic() + 900
    while True:
        with deployed.client() as client:
            run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"run {run_id} did not end: {run.state}\n{deployed.worker_logs()}"
        time.sleep(1)


def ever_ran(deployed: Deployed, run_id: Any) -> bool:
    with deployed.client() as client:
        return any(s.type.value == "RUNNING" for s in client.read_flow_run_states(run_id))


def first_running(deployed: Deployed, run_id: Any) -> Any:
    with deployed.client() as client:
        return min(s.timestamp for s in client.read_flow_run_states(run_id) if s.type.value == "RUNNING")
