"""A local PostgreSQL cluster from the Debian server binaries, plus helpers for any Postgres.

Everything lives under ``<home>/postgres``: ``data/`` (the cluster, created once by
``initdb`` with the superuser ``logflume``), ``run/`` (the unix socket), ``postgres.log``.
The server refuses to run as root, so when we are root every server command runs as the
``postgres`` OS user (``runuser -u postgres --``) and the folder belongs to that user.
The server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg

from kernel.clients import pg_connect
from kernel.settings import LOCAL_DB_USER, Settings, redact_dsn
from logflume.services.prerequisites import (
    MissingPrerequisite,
    PostgresBinaries,
    ServiceError,
    ensure_port_free,
    find_postgres_binaries,
    require_postgres_os_user,
    tail_file,
)

__all__ = [
    "LocalPostgres",
    "PostgresPaths",
    "ensure_database",
    "postgres_problem",
    "wait_for_postgres",
]

log = logging.getLogger(__name__)

_CONF_NAME = "logflume.conf"
_INCLUDE_LINE = f"include_if_exists = '{_CONF_NAME}'  # added by logflume\n"
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, including the NUL
# Errors after which waiting longer cannot help: report them at once.
_FATAL_CONNECT_ERRORS = (
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
)


@dataclass(frozen=True, slots=True)
class PostgresPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.data / "postmaster.pid"


class LocalPostgres:
    """The cluster that ``logflume up`` creates and starts and ``logflume down`` stops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = PostgresPaths(settings.home.expanduser().resolve() / "postgres")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.postgres_port}"

    def is_initialized(self) -> bool:
        return (self.paths.data / "PG_VERSION").is_file()

    def pid(self) -> int | None:
        """The postmaster's pid when our cluster runs (from ``data/postmaster.pid``)."""
        try:
            first_line = self.paths.pid_file.read_text().split("\n", 1)[0]
            pid = int(first_line.strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None  # no pid file, unreadable, or the process is gone (stale file)
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def running_address(self) -> str | None:
        """The address the running server listens on (line 4 of ``postmaster.pid``: port)."""
        try:
            port = self.paths.pid_file.read_text().split("\n")[3].strip()
        except (OSError, IndexError):
            return None
        return f"127.0.0.1:{port}" if port.isdigit() else None

    def start(self) -> int:
        """Create the cluster if needed and start it (``pg_ctl start -w``); returns the pid."""
        running = self.pid()
        if running is not None:
            return running
        binaries = find_postgres_binaries()
        self._prepare_folders()
        if not self.is_initialized():
            self._initdb(binaries)
        self._write_conf()
        ensure_port_free(self.settings.postgres_port, "PostgreSQL", "LOGFLUME_POSTGRES_PORT")
        timeout = str(max(1, int(self.settings.startup_timeout_s)))
        proc = self._run(
            [str(binaries.pg_ctl), "start", "-w", "-t", timeout,
             "-D", str(self.paths.data), "-l", str(self.paths.log)],
        )  # fmt: skip
        pid = self.pid()
        if proc.returncode != 0 or pid is None:
            raise ServiceError(
                f"PostgreSQL did not start: {proc.stdout.strip()} {proc.stderr.strip()}"
                f"\n--- last lines of {self.paths.log} ---\n{tail_file(self.paths.log, 20)}"
            )
        log.info("started PostgreSQL %s (pid %d) on %s", binaries.version_text, pid, self.address)
        return pid

    def stop(self) -> int | None:
        """``pg_ctl stop -m fast``; returns the pid that was stopped, None if not running."""
        pid = self.pid()
        if pid is None:
            return None
        binaries = find_postgres_binaries()
        log.info("stopping PostgreSQL (pid %d)", pid)
        proc = self._run(
            [str(binaries.pg_ctl), "stop", "-m", "fast", "-w", "-t", "60",
             "-D", str(self.paths.data)],
        )  # fmt: skip
        if proc.returncode != 0 and self.pid() is not None:
            raise ServiceError(f"pg_ctl stop failed: {proc.stdout.strip()} {proc.stderr.strip()}")
        return pid

    # -- helpers ---------------------------------------------------------------------------

    def _as_server_user(self) -> list[str]:
        """The command prefix that runs a server binary as a user the server accepts."""
        if os.geteuid() != 0:
            return []
        require_postgres_os_user()
        runuser = shutil.which("runuser")
        if runuser is None:
            raise MissingPrerequisite.for_tool("runuser", "util-linux", "the local PostgreSQL")
        return [runuser, "-u", "postgres", "--"]

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_server_user(), *command],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.paths.root,  # a folder the server user can enter
        )

    def _prepare_folders(self) -> None:
        socket_path = self.paths.run / f".s.PGSQL.{self.settings.postgres_port}"
        if len(str(socket_path)) > _SOCKET_PATH_MAX:
            raise ServiceError(
                f"the socket path {socket_path} is too long for a unix socket; "
                "set LOGFLUME_HOME to a shorter folder"
            )
        for folder in (self.paths.root, self.paths.run):
            folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = require_postgres_os_user()
            for folder in (self.paths.root, self.paths.run):
                os.chown(folder, account.pw_uid, account.pw_gid)
            probe = self._run(
                ["test", "-w", str(self.paths.root), "-a", "-x", str(self.paths.root)]
            )
            if probe.returncode != 0:
                raise ServiceError(
                    f"the postgres OS user cannot use {self.paths.root} (a parent folder is "
                    "closed to it); set LOGFLUME_HOME to a folder it can reach"
                )
        self.paths.run.chmod(0o700)

    def _initdb(self, binaries: PostgresBinaries) -> None:
        password = urlsplit(self.settings.dsn).password or LOCAL_DB_USER
        pwfile = self.paths.root / ".pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(unquote(password) + "\n")
        try:
            if os.geteuid() == 0:
                account = require_postgres_os_user()
                os.chown(pwfile, account.pw_uid, account.pw_gid)
            log.info("creating the PostgreSQL cluster in %s", self.paths.data)
            proc = self._run(
                [str(binaries.initdb), "-D", str(self.paths.data), "-U", LOCAL_DB_USER,
                 f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=peer",
                 "--encoding=UTF8", "--no-locale"],
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            detail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise ServiceError(f"initdb failed:\n{detail}")

    def _write_conf(self) -> None:
        """Our settings in ``data/logflume.conf``, included from ``postgresql.conf`` once."""
        conf = self.paths.data / _CONF_NAME
        conf.write_text(
            "# Written by `logflume up` on every start; edit the settings, not this file.\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.settings.postgres_port}\n"
            f"unix_socket_directories = '{_quote_conf(str(self.paths.run))}'\n"
            # When each row was committed (pg_xact_commit_timestamp): the benchmarks time
            # "every table final" by it instead of by how often they poll.
            "track_commit_timestamp = on\n"
        )
        main_conf = self.paths.data / "postgresql.conf"
        if _INCLUDE_LINE not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write("\n" + _INCLUDE_LINE)
        if os.geteuid() == 0:
            account = require_postgres_os_user()
            os.chown(conf, account.pw_uid, account.pw_gid)


def _quote_conf(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "''")


async def _connect(dsn: str, timeout_s: float, database: str | None = None) -> asyncpg.Connection:
    return await pg_connect(dsn, timeout=timeout_s, database=database)


async def postgres_problem(dsn: str, timeout_s: float = 5.0) -> str | None:
    """None when we can connect to ``dsn``, else a short (password-free) reason."""
    try:
        conn = await _connect(dsn, timeout_s)
    except asyncpg.InvalidCatalogNameError:
        return "answers, but the database does not exist yet"
    except TimeoutError:
        return f"no answer within {timeout_s:.0f}s"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def wait_for_postgres(dsn: str, timeout_s: float) -> None:
    """Wait until the server at ``dsn`` accepts our credentials, else :class:`ServiceError`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = await _connect(dsn, min(5.0, timeout_s))
        except asyncpg.InvalidCatalogNameError:
            return  # the server answers; ensure_database creates the database
        except _FATAL_CONNECT_ERRORS as exc:
            raise ServiceError(f"PostgreSQL at {redact_dsn(dsn)} refused us: {exc}") from exc
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"PostgreSQL at {redact_dsn(dsn)} did not answer within {timeout_s:.0f}s "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            await asyncio.sleep(0.5)
        else:
            await conn.close()
            return


async def ensure_database(dsn: str, timeout_s: float = 30.0) -> bool:
    """Create the DSN's database when it is missing (via the ``postgres`` database)."""
    try:
        conn = await _connect(dsn, timeout_s)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    name = unquote(urlsplit(dsn).path.lstrip("/"))
    if not name:
        raise ServiceError(f"the DSN {redact_dsn(dsn)} names no database")
    admin = await _connect(dsn, timeout_s, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
    except asyncpg.DuplicateDatabaseError:
        return False  # created concurrently
    finally:
        await admin.close()
    log.info("created the database %r", name)
    return True
