"""``ferry migrate``: runs the ``ferry-migrate`` deployment on a Prefect server and follows it.

The migration runs where the Prefect flow runs it (the snapshot on the source host's worker, the
restore on the target's, the rollback on the source when the restore fails); this command starts
it, prints each run's state as it changes, and exits non-zero when the migration did not complete.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any
from uuid import UUID

from ferry.cli._args import Subparsers, positive_int, trust_options
from ferry.cli._output import emit
from ferry.errors import MigrationFailed, UsageError

POLL_S = 2.0


def register(sub: Subparsers) -> None:
    m = sub.add_parser(
        "migrate",
        help="move a container to another host through ferry's Prefect deployments; prints the archive URL",
        description="Runs the ferry-migrate/<from-host> deployment on the Prefect server named by PREFECT_API_URL "
        "and follows it: snapshot on this host, restore on the target, rollback here if the restore fails.",
    )
    m.add_argument("container")
    m.add_argument("--to-host", required=True, metavar="HOST", help="the host to move it to (its deployments' name)")
    m.add_argument(
        "--from-host",
        metavar="HOST",
        help="the host it runs on now (default: FERRY_HOST, else this host's short name)",
    )
    m.add_argument(
        "--via",
        metavar="URL",
        help="store both hosts reach (default: the deployment's, FERRY_STORE when it was registered)",
    )
    m.add_argument("--new-name", metavar="NAME", help="its name on the target (default: the same)")
    m.add_argument("--with-image", action="store_true", help="ship the image too (the target does not have it)")
    m.add_argument(
        "--timeout-minutes",
        type=positive_int(),
        metavar="N",
        help="give up on each step after N minutes; a step given up on is cancelled (default: 60)",
    )
    trust_options(m, unverified=False)
    m.set_defaults(run=run)


def _source(args: Any) -> str:
    return str(args.from_host or os.environ.get("FERRY_HOST") or socket.gethostname().split(".")[0])


def parameters(args: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"container": args.container, "target_host": args.to_host}
    if args.from_host:
        params["source_host"] = args.from_host
    if args.via:
        params["via"] = args.via
    if args.new_name:
        params["new_name"] = args.new_name
    if args.with_image:
        params["with_image"] = True
    if args.allow_unsigned:
        params["allow_unsigned"] = True
    if args.timeout_minutes is not None:
        if args.timeout_minutes < 1:
            raise UsageError("--timeout-minutes must be at least 1.")
        params["timeout_minutes"] = args.timeout_minutes
    return params


def run(args: Any) -> int:
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if not api:
        raise UsageError(
            "ferry migrate runs ferry's Prefect deployments: set PREFECT_API_URL to the Prefect server they are "
            "registered on (see README, Prefect deployments)."
        )
    name = f"ferry-migrate/{_source(args)}"
    params = parameters(args)
    try:
        started = run_deployment(name, parameters=params, timeout=0, as_subflow=False)
    except ObjectNotFound as exc:
        raise UsageError(
            f"There is no deployment {name} on {api}: register ferry's deployments on that host, or name the "
            "source host with --from-host."
        ) from exc
    run_id: UUID = started.id  # type: ignore[union-attr]
    say(f"started {name} run {started.name} ({run_id})")  # type: ignore[union-attr]
    try:
        final = follow(run_id)
    except KeyboardInterrupt:
        say(f"stopped following; the migration goes on in Prefect: `prefect flow-run inspect {run_id}`")
        raise
    state = final.state
    if state is None or not state.is_completed():
        message = (state.message or state.name) if state is not None else "no state"
        # Prefect's prefix says nothing the operator needs: the flow's own message does.
        message = message.removeprefix("Flow run encountered an exception: ").removeprefix("MigrationFailed: ")
        raise MigrationFailed(f"run {run_id} ended {state.name if state else '?'}: {message}")
    archive = final_archive(run_id)
    say(f"migrated {args.container} to {args.to_host}")
    if getattr(args, "json", False):
        emit(
            {
                "container": args.container,
                "from_host": _source(args),
                "to_host": args.to_host,
                "run_id": str(run_id),
                "state": final.state.name,
                "archive": archive or None,
            }
        )
    elif archive:
        print(archive)
    return 0


def say(line: str) -> None:
    print(f"ferry migrate: {line}", file=sys.stderr, flush=True)


def follow(run_id: UUID) -> Any:
    """Print the migration's state and each child run's (snapshot, restore, rollback, remove) as they
    change, until the migration ends; return its flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    seen: dict[UUID, str] = {}
    names: dict[UUID, str] = {}
    with get_client(sync_client=True) as client:
        while True:
            top = client.read_flow_run(run_id)
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id]))
            )
            for child in sorted(children, key=lambda r: r.created or 0):
                if child.deployment_id and child.deployment_id not in names:
                    deployment = client.read_deployment(child.deployment_id)
                    names[child.deployment_id] = f"{client.read_flow(deployment.flow_id).name}/{deployment.name}"
                label = names.get(child.deployment_id, child.name) if child.deployment_id else child.name
                _report(seen, child, f"  {label}")
            _report(seen, top, "migration")
            if top.state is not None and top.state.is_final():
                return top
            time.sleep(POLL_S)


def _report(seen: dict[UUID, str], run: Any, label: str) -> None:
    state = run.state.name if run.state is not None else "?"
    if seen.get(run.id) != state:
        seen[run.id] = state
        say(f"{label}: {state}")


def final_archive(run_id: UUID) -> str:
    """The archive the migration restored: the link artifact the migration leaves."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from ferry.report import ARCHIVE_LINK, linked_url

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    for artifact in artifacts:
        if artifact.description == ARCHIVE_LINK and isinstance(artifact.data, str):
            return linked_url(artifact.data)
    return ""
