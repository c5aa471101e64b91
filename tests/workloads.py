"""Real services under load, and the checks that prove a restore kept their state.

Every service runs as root (this machine denies CRIU the rlimits of a non-root process),
started by a shell that is the container's PID 1, so CRIU dumps the server and its client
together: the client lives inside the container and records what it saw in files of the
container's root, which travel in the same frozen instant as the server's memory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import ULIMITS, Host, wait_for
from tests.images import Recipe

# redis-server from Debian's configuration (no `user` directive: it keeps running as root), no
# persistence, so every value after a restore comes from restored memory. One redis-cli process
# holds ONE connection for the container's life: a shell loop pipes CLIENT ID and INCR into it
# and its replies go to /data/held.out. redis-cli reconnects on its own after a lost connection,
# with a new client id: one id throughout means the connection itself carried on.
REDIS_MAIN = """
mkdir -p /data
redis-server /etc/redis/redis.conf --daemonize no --logfile '' --save '' --appendonly no &
until redis-cli ping >/dev/null 2>&1; do sleep 0.1; done
( while [ ! -e /data/stop ]; do echo 'CLIENT ID'; echo 'INCR held'; sleep 0.05; done \
  | redis-cli > /data/held.out; touch /data/held.done ) &
wait
"""

# mariadbd as root; a client inserts ids 1, 2, 3, ... each in its own autocommit statement and
# appends an id to /data/ids only after its INSERT returned; it stops between two inserts when
# /data/stop appears, and writes /data/errors and stops at the first failed INSERT.
MARIADB_MAIN = """
mkdir -p /run/mysqld /data
mariadbd --user=root &
until mariadb -e 'SELECT 1' >/dev/null 2>&1; do sleep 0.2; done
mariadb -e 'CREATE DATABASE IF NOT EXISTS ferry;
            CREATE TABLE IF NOT EXISTS ferry.commits (id INT PRIMARY KEY) ENGINE=InnoDB'
( i=0
  while [ ! -e /data/stop ]; do
    i=$((i+1))
    if mariadb -e "INSERT INTO ferry.commits VALUES ($i)"; then echo $i >> /data/ids
    else echo "INSERT $i failed" >> /data/errors; break; fi
  done
  touch /data/client.done ) &
wait
"""

REDIS_KEYS = 1000


def install_image(host: Host, others: list[Host], recipe: Recipe, tar: Path) -> str:
    """Import the recipe's image on host and copy it (same id) to the other hosts."""
    image = recipe.image
    if host.podman("image", "exists", image, check=False).returncode != 0:
        host.podman("import", str(tar), image)
    archive = host.base / f"{recipe.name}-image.tar"
    for other in others:
        if other.podman("image", "exists", image, check=False).returncode != 0:
            if not archive.exists():
                host.podman("save", "-o", str(archive), image)
            other.podman("load", "-i", str(archive))
    archive.unlink(missing_ok=True)
    return image


def run_service(host: Host, name: str, image: str, main: str) -> None:
    host.podman("run", "-d", "--name", name, *ULIMITS, image, "sh", "-c", main)


@contextmanager
def gone(host: Host) -> Iterator[None]:
    """The source host is gone: no container left on it and its store's paths absent. The store
    is moved aside for the duration, and put back only so that the fixtures can clean it up."""
    assert host.names() == set(), f"remove the source containers first: {host.names()}"
    away = host.base.with_name(host.base.name + "-away")
    host.base.rename(away)
    try:
        assert not host.base.exists()
        yield
        assert not host.base.exists(), f"the restore created the source host's paths ({host.base})"
    finally:
        shutil.rmtree(host.base, ignore_errors=True)  # whatever a wrong restore may have created
        away.rename(host.base)


def _file(host: Host, name: str, path: str) -> str:
    proc = host.podman("exec", name, "cat", path, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def _lines(text: str) -> list[str]:
    """Complete lines only: a writer may be in the middle of the last one."""
    lines = text.split("\n")
    return lines[:-1]


# -- Redis -------------------------------------------------------------------------------------


def held_replies(host: Host, name: str) -> tuple[set[str], list[int], list[str]]:
    """The held connection's client ids, its INCR replies in order, and any other line it
    printed (an error, a reconnection): CLIENT ID and INCR replies alternate otherwise."""
    lines = _lines(_file(host, name, "/data/held.out"))
    other = [line for line in lines if not line.isdigit()]
    pairs = len(lines) // 2
    return set(lines[0 : 2 * pairs : 2]), [int(x) for x in lines[1 : 2 * pairs : 2] if x.isdigit()], other


def start_redis(host: Host, name: str, image: str) -> int:
    """Redis with REDIS_KEYS keys written and the held connection counting; returns its count."""
    run_service(host, name, image, REDIS_MAIN)
    wait_for(lambda: len(held_replies(host, name)[1]) >= 20, what="the held redis connection to count", timeout=120)
    script = f'for i in $(seq 1 {REDIS_KEYS}); do echo "SET key:$i value-$i"; done | redis-cli'
    out = host.exec(name, "sh", "-c", script).split()
    assert out == ["OK"] * REDIS_KEYS, f"writing the keys: {out[:5]}..."
    return held_replies(host, name)[1][-1]


def check_redis(host: Host, name: str, counted: int) -> None:
    """Values intact, the held connection carried on (same client id, INCR 1, 2, 3, ... with
    no gap or reset), and the server takes new clients."""
    assert host.state(name) == "running"
    script = f'for i in $(seq 1 {REDIS_KEYS}); do echo "GET key:$i"; done | redis-cli'
    values = host.exec(name, "sh", "-c", script).split()
    assert values == [f"value-{i}" for i in range(1, REDIS_KEYS + 1)], "keys lost or changed"
    restored = len(held_replies(host, name)[1])

    def carried_on() -> bool:
        _, counts, other = held_replies(host, name)
        return bool(other) or len(counts) > restored + 20

    wait_for(carried_on, what="the held connection to carry on after the restore", timeout=120)
    ids, counts, other = held_replies(host, name)
    assert not other, f"the held client printed: {other[:5]}"
    assert len(ids) == 1, f"the held client reconnected or lost a reply ({len(ids)} distinct client ids)"
    assert counts == list(range(1, len(counts) + 1)), "the held connection's INCR replies have a gap or reset"
    assert counts[-1] > counted
    assert host.exec(name, "redis-cli", "ping").strip() == "PONG"
    new_id = host.exec(name, "redis-cli", "CLIENT", "ID").strip()
    assert new_id.isdigit() and new_id not in ids, "a new client did not get a new connection"
    assert host.exec(name, "redis-cli", "DBSIZE").strip() == str(REDIS_KEYS + 1)


# -- MariaDB -----------------------------------------------------------------------------------


def recorded_ids(host: Host, name: str) -> list[int]:
    return [int(x) for x in _lines(_file(host, name, "/data/ids"))]


def start_mariadb(host: Host, name: str, image: str) -> None:
    run_service(host, name, image, MARIADB_MAIN)
    wait_for(lambda: len(recorded_ids(host, name)) >= 50, what="the MariaDB client to commit rows", timeout=300)


def sql(host: Host, name: str, statement: str) -> str:
    return host.exec(name, "mariadb", "-N", "-B", "-e", statement)


def check_mariadb(host: Host, name: str, committed_before: int) -> None:
    """The restored server runs and commits; after the client stops, the table holds exactly the
    ids the client recorded (no lost commit, no phantom), 1..N; the server's checks say OK."""
    assert host.state(name) == "running"
    at_restore = len(recorded_ids(host, name))
    assert at_restore >= committed_before, "the restored copy recorded fewer commits than before the snapshot"
    wait_for(
        lambda: len(recorded_ids(host, name)) > at_restore + 20,
        what="the restored MariaDB to go on committing",
        timeout=120,
    )
    host.exec(name, "touch", "/data/stop")
    wait_for(lambda: _exists(host, name, "/data/client.done"), what="the client to stop", timeout=120)
    errors = _file(host, name, "/data/errors")
    assert not errors, f"the client saw failed INSERTs: {errors}"
    ids = recorded_ids(host, name)
    assert ids == list(range(1, len(ids) + 1)), "the client's record is not 1..N"
    table = [int(x) for x in sql(host, name, "SELECT id FROM ferry.commits ORDER BY id").split()]
    lost = sorted(set(ids) - set(table))
    phantom = sorted(set(table) - set(ids))
    assert not lost, f"commits the client saw are missing from the table: {lost[:20]}"
    assert not phantom, f"rows the client never saw committed: {phantom[:20]}"
    check = sql(host, name, "CHECK TABLE ferry.commits").split("\t")
    assert check[-1].strip() == "OK", check
    report = host.exec(name, "mariadb-check", "--all-databases").strip().splitlines()
    assert report and all(line.split()[-1] == "OK" for line in report), "\n".join(report)


def _exists(host: Host, name: str, path: str) -> bool:
    return host.podman("exec", name, "test", "-e", path, check=False).returncode == 0
