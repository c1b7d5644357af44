"""Operating-system helpers: service users, free ports, waiting, Debian packages."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Each binary the servers and the tests need, and the Debian package that brings it.
REQUIRED_FILES: dict[str, str] = {
    "/usr/lib/postgresql/15/bin/postgres": "postgresql-15",
    "/usr/lib/postgresql/15/bin/pgbench": "postgresql-contrib",
    "/usr/lib/postgresql/15/lib/wal2json.so": "postgresql-15-wal2json",
    "/usr/sbin/mariadbd": "mariadb-server",
    "/usr/bin/mariadb": "mariadb-client",
    "/usr/bin/mariadb_config": "libmariadb-dev",
    "/usr/lib/rabbitmq/bin/rabbitmq-server": "rabbitmq-server",
    # The Galera cluster (CDC_STACK_MARIADB_NODES): the provider, and its state transfer.
    "/usr/lib/galera/libgalera_smm.so": "galera-4",
    "/usr/bin/rsync": "rsync",
    # Checks compose.yaml (docker-compose config); no container engine is needed for that.
    "/usr/bin/docker-compose": "docker-compose",
}


class StackError(RuntimeError):
    """A server could not be set up, started or stopped."""


class TimedOut(StackError, AssertionError):
    """A condition did not come true in time. For devstack a StackError (one line, exit 1);
    for a test, the benchmark or the drill waiting on their servers and processes, a failed
    check (AssertionError), as a test's own assert would be."""


def missing_packages() -> list[str]:
    return sorted({pkg for path, pkg in REQUIRED_FILES.items() if not os.path.exists(path)})


def install_packages() -> None:
    """Install what is missing with apt, without letting the packages start system services."""
    packages = missing_packages()
    if not packages:
        return
    if os.geteuid() != 0:
        raise StackError(
            "missing Debian packages: " + " ".join(packages) + " (run as root, or install them)"
        )
    print("devstack: installing " + " ".join(packages), flush=True)
    policy = Path("/usr/sbin/policy-rc.d")
    # A package's postinst would otherwise start its server on the default port, and
    # we never start or disturb servers outside .stack/.
    created_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created_policy = True
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            check=True,
            env=env,
        )
    finally:
        if created_policy:
            policy.unlink()
    still = missing_packages()
    if still:
        raise StackError("apt-get did not install: " + " ".join(still))


def service_user(name: str) -> str | None:
    """The user a server runs as: its own service user when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError as e:
        raise StackError(f"service user {name!r} does not exist (is its package installed?)") from e
    return name


def chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for item in dirs + files:
            os.chown(os.path.join(root, item), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def as_user(
    user: str | None, argv: Sequence[str], env: Mapping[str, str] | None = None
) -> list[str]:
    """Prefix argv so it runs as ``user`` with exactly ``env`` added to a minimal environment."""
    base = ["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8"]
    base += [f"{k}={v}" for k, v in (env or {}).items()]
    if user is None:
        return [*base, *argv]
    return ["runuser", "-u", user, "--", *base, *argv]


def run(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> str:
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise StackError(
            f"{' '.join(argv)} failed with code {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


# Ports this process has handed out: the kernel may give a port it just gave again (it is free
# until the server it was for binds it), and a stack picks a dozen before starting any server
# (two Galera nodes given one port failed a unit test one run in twenty-five).
_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port free now and not handed out before by this process."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = 60, interval: float = 0.1
) -> None:
    """Return once ``condition()`` is true, checking every ``interval`` seconds; TimedOut
    naming ``what`` after ``timeout`` seconds. The condition is checked at least once, the
    last time after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def which(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise StackError(f"{binary} not found on PATH")
    return found


def cluster_state(
    state_file: Path, size: int, fresh: Callable[[], dict[str, Any]], what: str
) -> dict[str, Any]:
    """A local cluster's ports and secrets, kept in ``state_file`` (made by ``fresh`` on the
    first start, readable only by root); a folder made for another size is refused."""
    if state_file.exists():
        state: dict[str, Any] = json.loads(state_file.read_text())
    else:
        root = state_file.parent
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        state = fresh()
        state_file.write_text(json.dumps(state, indent=2))
        state_file.chmod(0o600)
    if len(state["nodes"]) != size:
        raise StackError(
            f"{state_file.parent} holds a {what} of {len(state['nodes'])} nodes, not {size}: "
            "stop it and remove the folder to change its size"
        )
    return state


def in_parallel(steps: list[Callable[[], None]]) -> None:
    """Run the steps side by side (servers booting); the first failure is raised."""
    errors: list[BaseException] = []

    def guarded(step: Callable[[], None]) -> Callable[[], None]:
        def runner() -> None:
            try:
                step()
            except BaseException as e:  # noqa: BLE001 - re-raised below in the caller
                errors.append(e)

        return runner

    threads = [threading.Thread(target=guarded(s)) for s in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
