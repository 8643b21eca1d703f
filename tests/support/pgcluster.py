"""A throwaway PostgreSQL cluster of a test's own: crash it and restart it at will.

The shared server (BATCHD_TEST_PG_URL) is never touched. The cluster lives in a
temporary directory owned by the ``postgres`` OS user (``initdb`` and ``postgres``
refuse to run as root), listens on 127.0.0.1 at a port of its own and on a unix
socket directory of its own, and is stopped and removed however the test ends.

Its port stays the same across restarts (clients keep their URL), so it is taken
outside the system's ephemeral range, where no outgoing connection can take it
while the cluster is down, and held with a lock file against other clusters.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

PG_BIN = Path(os.environ.get("BATCHD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"
PORT_LOCKS = Path(tempfile.gettempdir()) / "batchd-pgcluster-ports"
BIND_FAILED = ("could not bind", "could not create any TCP/IP sockets",
               "Address already in use")
# Made for crash tests: a crashed server must lose nothing it acknowledged, so commits
# stay synchronous. fsync is off: a killed postmaster leaves its writes with the
# kernel, and only a crash of the machine itself would need them on disk.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "max_wal_size": "256MB",
    # Fresh planner statistics while a test churns through a large batch in a minute.
    "autovacuum_naptime": "1s",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _candidate_ports() -> Iterator[int]:
    low, high = _ephemeral_range()
    ranges = [r for r in ((20000, min(low, 30000)), (high + 1, 65535)) if r[1] - r[0] > 100]
    while True:
        lo, hi = random.choice(ranges)
        yield random.randrange(lo, hi)


class PgCluster:
    """One PostgreSQL cluster in a temporary directory (``BATCHD_TEST_PG_BIN``: binaries).

    ``start()`` creates and starts it; ``crash()`` is ``pg_ctl stop -m immediate``
    (backends killed, no checkpoint: the next start runs crash recovery);
    ``restart()`` starts it again on the same port; ``destroy()`` stops it and
    removes everything. Use :func:`pg_cluster` to get one that always goes away.
    """

    def __init__(self, *, bin_dir: Path = PG_BIN) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="batchd-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.port = 0
        self.crashes = 0
        self._port_lock: IO[bytes] | None = None
        if not (bin_dir / "initdb").exists():
            raise RuntimeError(f"no PostgreSQL binaries in {bin_dir} (BATCHD_TEST_PG_BIN)")
        self.socket_dir.mkdir()
        # initdb and postgres refuse to run as root: as root, run them as postgres.
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam(OS_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", OS_USER, "--"]
        atexit.register(self.destroy)  # a test run that dies halfway still cleans up

    # commands, as the postgres user
    def _run(self, *args: str, timeout_s: float = 120.0, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as, str(self.bin_dir / args[0]), *args[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              cwd=self.root)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): "
                               f"{done.stdout}{done.stderr}\n{self.log_tail()}")
        return done

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def url(self, dbname: str = "postgres") -> str:
        """A TCP URL, as a server on another machine would have."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}&port={self.port}"

    # lifecycle
    def start(self, *, attempts: int = 20) -> PgCluster:
        """initdb, then start on a free port (another one if the bind fails)."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        conf = "".join(f"{k} = {v}\n" for k, v in SETTINGS.items())
        conf += f"unix_socket_directories = '{self.socket_dir}'\n"
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(conf)
        ports = _candidate_ports()
        for _ in range(attempts):
            port = next(ports)
            if not self._lock_port(port):
                continue
            self._write_port(port)
            if self._pg_ctl_start():
                return self
            if not any(s in self.log_tail() for s in BIND_FAILED):
                raise RuntimeError(f"PostgreSQL did not start:\n{self.log_tail()}")
            self._unlock_port()
        raise RuntimeError(f"no free port for PostgreSQL after {attempts} tries")

    def crash(self) -> None:
        """Stop in ``immediate`` mode: every backend is killed mid-work."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60")
        self.crashes += 1

    def restart(self) -> None:
        """Start again on the same port, after crash recovery."""
        if not self._pg_ctl_start():
            raise RuntimeError(f"PostgreSQL did not restart:\n{self.log_tail()}")

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def destroy(self) -> None:
        """Stop (immediately: nothing in it is worth a checkpoint) and remove it all."""
        atexit.unregister(self.destroy)
        if self.data.exists():
            done = self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate",
                             "-w", "-t", "30", check=False)
            if done.returncode != 0:
                self._kill_postmaster()
        self._unlock_port()
        shutil.rmtree(self.root, ignore_errors=True)

    # helpers
    def _pg_ctl_start(self) -> bool:
        done = self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path),
                         "-w", "-t", "120", check=False)
        return done.returncode == 0

    def _write_port(self, port: int) -> None:
        self.port = port
        with (self.data / "postgresql.auto.conf").open("w") as f:
            f.write(f"port = {port}\n")

    def _lock_port(self, port: int) -> bool:
        PORT_LOCKS.mkdir(exist_ok=True)
        f = (PORT_LOCKS / f"{port}.lock").open("wb")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._port_lock = f
        return True

    def _unlock_port(self) -> None:
        if self._port_lock is not None:
            self._port_lock.close()  # releases the lock
            self._port_lock = None

    def _kill_postmaster(self) -> None:
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 9)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises once it is gone
                time.sleep(0.05)


@contextlib.contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """A started cluster, stopped and removed on the way out whatever happened."""
    cluster = PgCluster()
    try:
        yield cluster.start()
    finally:
        cluster.destroy()
