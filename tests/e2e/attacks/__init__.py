"""Issue 10's acceptance suite: attacks on the real restore path (Podman 4.3.1, runc, CRIU).

Each test is an archive an attacker with write access to the bucket could write: a real ferry
snapshot of the busybox workload with one thing changed, re-sealed with a consistent manifest and
sidecar, restored as root with ``ferry restore --name X --allow-unsigned`` (tests/attack_lab.py,
``restore_hostile``). Each aims at a real target on this host (a file, a directory, a mount, a
cgroup, a secret) and must be refused by name, leaving the target, the sentinel tree and the
store exactly as they were, with no process left running. The last tests are honest use that
must keep working.

The lab (conftest.py) is built once for the package: a source store that snapshots the workload (with a named
volume, /dev/shm content and a rootfs diff) and a target store, the victim host, with the same
image, an image holding ``/data/link -> /`` and a Podman secret.
"""
