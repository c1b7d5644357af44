"""A private MariaDB server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devstack.system import (
    StackError,
    as_user,
    chown_tree,
    pid_alive,
    port_open,
    read_pid,
    run,
    service_user,
    wait_until,
)
from devstack.tls import Certificates, install

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

# The tests' MariaDB options beyond where it listens and keeps its files, whoever runs it (this
# module, or harness/containers.py with the image of compose.yaml).
SERVER_OPTIONS = [
    # Started with --no-defaults the server would be latin1; the pipeline asks for utf8mb4
    # itself, and the server's default matches so ad-hoc queries do too.
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_nopad_bin",
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=256M",
    "--max-connections=200",
]


def loopback_url(port: int, database: str, user: str, password: str) -> str:
    return f"mariadb+mariadbconnector://{user}:{password}@127.0.0.1:{port}/{database}"


def target_user_sql(user: str, password: str, database: str, host: str) -> str:
    """sql/target-user.sql for ``database``, the user connecting from ``host``."""
    script = (SQL_DIR / "target-user.sql").read_text()
    return (
        f"SET @db = '{database}', @user = '{user}', @host = '{host}', "
        f"@password = '{password}';\n" + script
    )


@dataclass
class MariaDB:
    root: Path
    port: int
    password: str
    # Options a node of a cluster adds (devstack/galera.py), and those of its next start only.
    extra_args: list[str] = field(default_factory=list)
    once_args: list[str] = field(default_factory=list)

    @property
    def user(self) -> str | None:
        return service_user("mysql")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "run" / "mariadb.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "mariadb.pid"

    @property
    def log(self) -> Path:
        return self.root / "mariadb.log"

    def url(self, database: str, user: str = "root", password: str | None = None) -> str:
        return loopback_url(
            self.port, database, user, self.password if password is None else password
        )

    def init(self) -> None:
        if (self.data / "mysql").exists():
            return
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        chown_tree(self.root, self.user)
        argv = [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={self.data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if self.user:
            argv.append(f"--user={self.user}")
        run(as_user(self.user, argv), timeout=180)

    @property
    def tls_folder(self) -> Path:
        return self.root / "tls"

    def enable_tls(self, certs: Certificates) -> None:
        """The stack's certificate for the next start; TLS stays optional for clients. A server
        running without it is restarted (MariaDB reads its certificate only at start), so a
        stack made before TLS gains it on its next start."""
        install(certs, self.tls_folder, self.user)
        if self.running() and not self.tls_active():
            print("devstack: restarting MariaDB to turn TLS on", file=sys.stderr, flush=True)
            self.stop()

    def tls_args(self) -> list[str]:
        folder = self.tls_folder
        if not (folder / "server.key").exists():
            return []
        return [
            f"--ssl-ca={folder / 'ca.pem'}",
            f"--ssl-cert={folder / 'server.pem'}",
            f"--ssl-key={folder / 'server.key'}",
        ]

    def tls_active(self) -> bool:
        out = self.sql("SHOW GLOBAL VARIABLES LIKE 'have_ssl'")
        return out.split()[-1:] == ["YES"]

    def running(self) -> bool:
        return pid_alive(read_pid(self.pid_file)) and port_open(self.port)

    def start(self) -> None:
        if self.running():
            return
        argv = [
            "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={self.data}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.log}",
            *SERVER_OPTIONS,
            *self.tls_args(),
            *self.extra_args,
            *self.once_args,
        ]
        self.once_args = []
        if self.user:
            argv.append(f"--user={self.user}")
        # Detached (setsid -f): not our child, so stopping it never touches us and we never
        # have to reap it.
        subprocess.run(
            ["setsid", "-f", *as_user(self.user, argv)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        wait_until(self.running, f"MariaDB on port {self.port}", timeout=90)

    def stop(self) -> None:
        pid = read_pid(self.pid_file)
        if not pid_alive(pid):
            return
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), "MariaDB to stop", timeout=90)

    def kill(self) -> None:
        """Stop abruptly, as a crash would."""
        pid = read_pid(self.pid_file)
        if pid_alive(pid):
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), "MariaDB to die", timeout=30)

    def sql(self, statements: str, database: str = "") -> str:
        """Run SQL as root over the private socket."""
        argv = [
            "mariadb",
            "--no-defaults",
            f"--socket={self.socket}",
            "-uroot",
            "--batch",
            "--skip-column-names",
        ]
        if (self.root / "root-password-set").exists():
            argv.append(f"--password={self.password}")
        if database:
            argv.append(database)
        return run(argv, input_text=statements)

    def provision(self, app_user: str, app_password: str, database: str) -> None:
        """Root gets its password; the pipeline's user gets what sql/target-user.sql grants
        in its database, nothing more."""
        for name in (app_user, database):
            if not name.isidentifier():
                raise StackError("devstack names must be plain identifiers")
        self.provision_root()
        self.sql(
            f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 "
            "COLLATE utf8mb4_nopad_bin;\n"
        )
        # Stacks made before had granted ALL: start again from nothing.
        held = self.sql(
            f"SELECT COUNT(*) FROM mysql.db WHERE Db = '{database}' AND User = '{app_user}'"
        )
        if held.strip() not in ("", "0"):
            self.sql(f"REVOKE ALL PRIVILEGES ON `{database}`.* FROM '{app_user}'@'127.0.0.1';")
        self.grant_target(app_user, app_password, database)

    def provision_root(self) -> None:
        """Root gets its password (once)."""
        marker = self.root / "root-password-set"
        if not marker.exists():
            # mariadb-install-db leaves root without a password on every loopback name.
            self.sql(
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n"
                "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"
                + "".join(
                    f"ALTER USER IF EXISTS 'root'@'{host}' IDENTIFIED BY '{self.password}';\n"
                    for host in ("localhost", "127.0.0.1", "::1")
                )
                + f"DROP USER IF EXISTS 'root'@'{socket.gethostname()}';\n"
            )
            marker.write_text("")

    def grant_target(self, user: str, password: str, database: str) -> None:
        """sql/target-user.sql for ``database``, the user connecting from 127.0.0.1."""
        self.sql(target_user_sql(user, password, database, "127.0.0.1"))
