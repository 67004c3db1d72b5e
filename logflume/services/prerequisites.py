"""The tools the local services need, found on the machine or reported with an install command.

Only the services that ``logflume up`` manages itself are checked: when the environment
points at an external broker or database, nothing local is needed for it.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kernel.errors import ServiceError

__all__ = [
    "JAVA_PACKAGE",
    "MAVEN_PACKAGE",
    "POSTGRES_OS_USER",
    "POSTGRES_PACKAGE",
    "MissingPrerequisite",
    "PostgresBinaries",
    "ServiceError",
    "ensure_port_free",
    "find_postgres_binaries",
    "install_command",
    "require_java",
    "require_maven",
    "require_postgres_os_user",
    "tail_file",
]

log = logging.getLogger(__name__)

JAVA_PACKAGE = "openjdk-17-jre-headless"
MAVEN_PACKAGE = "maven"
POSTGRES_PACKAGE = "postgresql"
POSTGRES_OS_USER = "postgres"
MIN_JAVA_MAJOR = 11  # Kafka 3.9 brokers run on Java 11+; 17 is what the machines have.
_POSTGRES_TOOLS = ("initdb", "pg_ctl", "postgres")
_DEBIAN_POSTGRES_BINS = "/usr/lib/postgresql/*/bin"


class MissingPrerequisite(ServiceError):
    """A tool that a locally managed service needs is not installed.

    The message names the tool and the exact command that installs it.
    """

    def __init__(self, message: str, packages: tuple[str, ...] = (), reason: str = "") -> None:
        super().__init__(message)
        self.packages = packages
        self.reason = reason or message

    @classmethod
    def for_tool(cls, tool: str, package: str, needed_for: str) -> MissingPrerequisite:
        reason = f"{tool} not found (needed for {needed_for})"
        return cls(f"{reason}; install it with: {install_command(package)}", (package,), reason)

    @classmethod
    def combine(cls, missing: list[MissingPrerequisite]) -> MissingPrerequisite:
        """One error for several missing tools, with a single install command for all."""
        if len(missing) == 1:
            return missing[0]
        packages = tuple(dict.fromkeys(p for m in missing for p in m.packages))
        reasons = "; ".join(m.reason for m in missing)
        return cls(f"{reasons}; install them with: {install_command(*packages)}", packages, reasons)


def install_command(*packages: str) -> str:
    return f"apt-get install -y {' '.join(packages)}"


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    """One folder holding ``initdb``, ``pg_ctl`` and ``postgres`` of the same version."""

    bindir: Path
    version: tuple[int, ...]

    @property
    def initdb(self) -> Path:
        return self.bindir / "initdb"

    @property
    def pg_ctl(self) -> Path:
        return self.bindir / "pg_ctl"

    @property
    def postgres(self) -> Path:
        return self.bindir / "postgres"

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)


def require_java() -> Path:
    """The ``java`` executable (major version >= 11), or :class:`MissingPrerequisite`."""
    found = shutil.which("java")
    if found is None:
        raise MissingPrerequisite.for_tool("java", JAVA_PACKAGE, "the local Kafka broker")
    major = _java_major(found)
    if major is not None and major < MIN_JAVA_MAJOR:
        raise ServiceError(
            f"java {major} at {found} is too old for the local Kafka broker (needs "
            f"{MIN_JAVA_MAJOR}+); install a newer one with: {install_command(JAVA_PACKAGE)}"
        )
    return Path(found)


def require_maven() -> Path:
    """The ``mvn`` executable (only needed to fetch the broker jars once)."""
    found = shutil.which("mvn")
    if found is None:
        raise MissingPrerequisite.for_tool("mvn", MAVEN_PACKAGE, "fetching the Kafka broker jars")
    return Path(found)


def require_postgres_os_user() -> pwd.struct_passwd:
    """The ``postgres`` OS account that runs the local cluster when we are root."""
    try:
        return pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise MissingPrerequisite.for_tool(
            f"the {POSTGRES_OS_USER!r} OS user", POSTGRES_PACKAGE, "the local PostgreSQL"
        ) from None


def find_postgres_binaries() -> PostgresBinaries:
    """The newest folder with ``initdb``, ``pg_ctl`` and ``postgres`` (PATH or Debian layout).

    Debian keeps the server binaries in ``/usr/lib/postgresql/<major>/bin``, which is not on
    PATH; folders on PATH are considered too (through their symlinks' real location).
    """
    candidates: dict[Path, None] = {}
    for name in _POSTGRES_TOOLS:
        on_path = shutil.which(name)
        if on_path is not None:
            candidates[Path(on_path).resolve().parent] = None
    for folder in sorted(glob.glob(_DEBIAN_POSTGRES_BINS)):
        candidates[Path(folder)] = None

    usable: list[PostgresBinaries] = []
    for bindir in candidates:
        if not all(_is_executable(bindir / tool) for tool in _POSTGRES_TOOLS):
            continue
        version = _postgres_version(bindir / "pg_ctl")
        if version is not None:
            usable.append(PostgresBinaries(bindir=bindir, version=version))
    if not usable:
        raise MissingPrerequisite.for_tool(
            "the PostgreSQL server (initdb, pg_ctl, postgres)",
            POSTGRES_PACKAGE,
            "the local PostgreSQL",
        )
    best = max(usable, key=lambda b: b.version)
    log.debug("using PostgreSQL %s from %s", best.version_text, best.bindir)
    return best


def ensure_port_free(port: int, what: str, env_var: str) -> None:
    """Raise a clear error when another process already listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        in_use = sock.connect_ex(("127.0.0.1", port)) == 0
    if in_use:
        raise ServiceError(
            f"port {port} (for {what}) is already used by another process; stop it or choose "
            f"another port with {env_var}"
        )


def tail_file(path: Path, count: int) -> str:
    """The last ``count`` lines of a (log) file, empty when it does not exist."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-count:])


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _postgres_version(pg_ctl: Path) -> tuple[int, ...] | None:
    """``pg_ctl (PostgreSQL) 15.13 (Debian 15.13-0+deb12u1)`` -> ``(15, 13)``."""
    try:
        out = subprocess.run(
            [str(pg_ctl), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", out)
    return tuple(int(p) for p in match[1].split(".")) if match else None


def _java_major(java: str) -> int | None:
    """``openjdk version "17.0.15"`` -> 17; ``"1.8.0_392"`` -> 8; None when unreadable."""
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        return None
    major = int(match[1])
    return int(match[2] or 0) if major == 1 else major
