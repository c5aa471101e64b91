"""A migration's child runs: run a host's deployment, and cancel it when the migration gives up on it.

``run_deployment(timeout=...)`` returns when the wait is over, not when the run is: a snapshot
still queued for a source worker that is down would otherwise run whenever that worker comes back
and stop a container nobody restores. A run given up on is cancelled (``Cancelling``, as
``prefect flow-run cancel`` does: the server cancels a run no worker holds yet at once, a worker
kills one it runs), and the run as it ended is returned: Cancelled, or Completed when it finished
before the cancellation reached it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.states import Cancelling

#: How long to wait for a cancelled run to reach a final state (a worker kills a running one).
CANCEL_WAIT_S = 120.0


def run_child(name: str, parameters: dict[str, Any], timeout_s: float, poll_s: float = 2.0) -> FlowRun:
    """Run deployment ``name`` as a child of the current flow run; wait at most ``timeout_s``,
    then cancel it. Returns the run in its final state (None only if even the cancellation
    could not be confirmed within CANCEL_WAIT_S)."""
    run = run_deployment(name, parameters=parameters, timeout=timeout_s, poll_interval=poll_s)
    run = cast(FlowRun, run)  # called from sync code: the sync variant
    if run.state is not None and run.state.is_final():
        return run
    return cancel(run, f"ferry-migrate gave up waiting for {name} after {timeout_s:.0f} s", poll_s)


def start_child(name: str, parameters: dict[str, Any]) -> FlowRun:
    """Create a run of deployment ``name`` as a child of the current flow run; do not wait for it."""
    return cast(FlowRun, run_deployment(name, parameters=parameters, timeout=0))


def wait_child(run: FlowRun, timeout_s: float, poll_s: float = 1.0, until: Callable[[], bool] | None = None) -> FlowRun:
    """Wait for ``run`` to end (or ``until()`` to be true), at most ``timeout_s``; a run still going
    then is cancelled. Returns the run as it is (final, or not when ``until`` said so)."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            current = client.read_flow_run(run.id)
            if current.state is not None and current.state.is_final():
                return current
            if until is not None and until():
                return current
            if time.monotonic() > deadline:
                break
            time.sleep(poll_s)
    return cancel(current, f"ferry-migrate gave up waiting for it after {timeout_s:.0f} s")


def cancel(run: FlowRun, why: str, poll_s: float = 2.0) -> FlowRun:
    """Cancel ``run`` and wait for it to end; returns it as it ended (Completed if it won the race)."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(message=why))
        deadline = time.monotonic() + CANCEL_WAIT_S
        while True:
            current = client.read_flow_run(run.id)
            if current.state is not None and current.state.is_final():
                return current
            if time.monotonic() > deadline:
                return current
            if current.state is not None and current.state.type is not StateType.CANCELLING:
                # Scheduled again (e.g. a retry) or a late Pending/Running: ask again.
                client.set_flow_run_state(run.id, Cancelling(message=why))
            time.sleep(poll_s)


def ever_ran(run: FlowRun) -> bool:
    """Whether the run ever reached Running (its start_time does not say: Prefect sets it when a
    run ends, even one cancelled before any worker took it)."""
    with get_client(sync_client=True) as client:
        return any(state.type is StateType.RUNNING for state in client.read_flow_run_states(run.id))


def why(run: Any) -> str:
    """A run's state for an operator: its name and message."""
    state = getattr(run, "state", None)
    if state is None:
        return "no state"
    message = (state.message or "").strip().removeprefix("Flow run encountered an exception: ")
    return f"{state.name}: {message[:300]}" if message else str(state.name)
