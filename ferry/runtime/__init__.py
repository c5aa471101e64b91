"""The one boundary between ferry and the host's container runtime.

Every podman, criu and crit subprocess ferry runs is started by :func:`ferry.runtime.process.run`,
as an argv list (never a shell), and every failure is translated into a :mod:`ferry.errors`
exception that names the container, the command, what it printed, and the tail of CRIU's log
when there is one. Tasks take a :class:`Runtime`; :class:`Podman` is the real one, tests/fakes.py
a fake.

- ``process``: the one subprocess runner;
- ``podman``: Podman's commands (containers, images, volumes, checkpoint, restore);
- ``restore_failure``: what a failed restore left, found and cleaned;
- ``export_fifo``: reading Podman's checkpoint export from a FIFO as it is written;
- ``freezer``: freezing a container through its cgroup;
- ``tools``: criu and crit as host tools (doctor, inspect);
- ``model``: what the runtime reports; ``protocol``: the :class:`Runtime` protocol;
- ``current``: the runtime tasks use when none is passed (Podman, or one ``installed`` by a test).
"""

from ferry.runtime.current import current, installed
from ferry.runtime.freezer import CGROUP_ROOT
from ferry.runtime.model import Changes, CheckpointStats, ContainerInfo, Mount
from ferry.runtime.podman import Podman, podman_prefix
from ferry.runtime.process import LOG_TAIL_LINES, Completed, ProgramNotFoundError, run, tail
from ferry.runtime.protocol import CheckpointExport, Runtime
from ferry.runtime.tools import (
    CRIT,
    PROBE_TIMEOUT,
    TOOL_TIMEOUT,
    cpuinfo_check,
    crit_decode,
    criu_check,
    criu_feature,
    criu_probe,
    criu_version,
    run_tool,
)

__all__ = [
    "CGROUP_ROOT",
    "CRIT",
    "LOG_TAIL_LINES",
    "PROBE_TIMEOUT",
    "TOOL_TIMEOUT",
    "Changes",
    "CheckpointExport",
    "CheckpointStats",
    "Completed",
    "ContainerInfo",
    "Mount",
    "Podman",
    "ProgramNotFoundError",
    "Runtime",
    "cpuinfo_check",
    "crit_decode",
    "criu_check",
    "criu_feature",
    "criu_probe",
    "criu_version",
    "current",
    "installed",
    "podman_prefix",
    "run",
    "run_tool",
    "tail",
]
