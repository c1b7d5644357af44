"""A private PostgreSQL 15 cluster with wal2json and wal_level=logical."""

from __future__ import annotations

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

BIN = Path("/usr/lib/postgresql/15/bin")
SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
# The application's role in the demo source database: it owns the tables; the pipeline's
# role only reads them.
OWNER_ROLE = "cdc_app"

_TLS_MARK = "# devstack tls"

# The server's own zone is deliberately not UTC: the pipeline must store timestamptz in UTC
# whatever the source server's TimeZone says.
SERVER_TIMEZONE = "America/New_York"

# What logical decoding with wal2json needs, as postgresql.conf values. The container image
# (docker/postgres.Dockerfile) sets the same; tests/integration/test_containers.py checks it.
REPLICATION_SETTINGS: dict[str, str] = {
    "wal_level": "logical",
    "max_replication_slots": "64",
    "max_wal_senders": "64",
    # PostgreSQL 15.19+ only loads output plugins named here.
    "output_plugin_libraries": "'pgoutput, test_decoding, wal2json'",
}

# Everything the tests' PostgreSQL runs with beyond where it listens, whoever runs it (this
# module, or harness/containers.py with the image of compose.yaml).
SERVER_SETTINGS: dict[str, str] = {
    **REPLICATION_SETTINGS,
    "max_connections": "200",
    "timezone": f"'{SERVER_TIMEZONE}'",
    "log_timezone": "'UTC'",
    "log_min_messages": "warning",
    "shared_buffers": "128MB",
}


def loopback_dsn(port: int, database: str, user: str, password: str) -> str:
    # Plain unless a client asks for TLS (the pipeline's source.sslmode wins over this):
    # libpq's default would quietly encrypt every test's and benchmark's connection.
    return f"postgresql://{user}:{password}@127.0.0.1:{port}/{database}?sslmode=disable"


def psql_arguments(database: str, variables: dict[str, str] | None = None) -> list[str]:
    """psql's arguments after where it connects: as the superuser, the script on standard
    input, stop at the first error, rows unaligned; ``variables`` as psql variables."""
    settings = [a for k, v in (variables or {}).items() for a in ("-v", f"{k}={v}")]
    return [
        "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-U", "postgres", "-d", database,
        *settings, "-f", "-",
    ]  # fmt: skip


def source_role(
    role: str, password: str, owner: str, schema: str = "public"
) -> tuple[str, dict[str, str]]:
    """sql/source-role.sql and its psql variables: ``role`` may read what ``owner`` creates
    in ``schema``."""
    script = (SQL_DIR / "source-role.sql").read_text()
    return script, {"role": role, "password": password, "schema": schema, "owner": owner}


@dataclass
class Postgres:
    root: Path
    port: int
    password: str
    overrides: dict[str, str] = field(
        default_factory=dict
    )  # e.g. a cluster without wal_level=logical

    @property
    def user(self) -> str | None:
        return service_user("postgres")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def dsn(
        self, database: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> str:
        return loopback_dsn(
            self.port, database, user, self.password if password is None else password
        )

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        chown_tree(self.root, self.user)
        run(
            as_user(
                self.user,
                [
                    str(BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
            )
        )
        pwfile.unlink()
        conf = self.data / "postgresql.conf"
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            **SERVER_SETTINGS,
        }
        settings.update(self.overrides)
        with conf.open("a") as f:
            f.write("\n# devstack\n")
            for key, value in settings.items():
                f.write(f"{key} = {value}\n")

    def enable_tls(self, certs: Certificates) -> None:
        """ssl = on with the stack's certificate, beside plain connections (each client chooses
        with sslmode). A running server only reloads: PostgreSQL turns TLS on without a restart,
        so a stack made before TLS gains it on its next start."""
        _ca, cert, key = install(certs, self.root / "tls", self.user)
        conf = self.data / "postgresql.conf"
        if _TLS_MARK not in conf.read_text():
            with conf.open("a") as f:
                f.write(f"\n{_TLS_MARK}\nssl = on\n")
                f.write(f"ssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n")
        if self.running() and not self.tls_active():
            run(as_user(self.user, [str(BIN / "pg_ctl"), "-D", str(self.data), "reload"]))
            wait_until(self.tls_active, "PostgreSQL to turn TLS on (see its log)", timeout=30)

    def tls_active(self) -> bool:
        return self.psql("SHOW ssl").strip() == "on"

    def running(self) -> bool:
        return pid_alive(read_pid(self.data / "postmaster.pid")) and port_open(self.port)

    def start(self) -> None:
        if self.running():
            return
        run(
            as_user(
                self.user,
                [
                    str(BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    "90",
                    "start",
                ],
            ),
            timeout=120,
        )
        wait_until(lambda: port_open(self.port), f"PostgreSQL on port {self.port}", timeout=90)

    def stop(self, mode: str = "fast") -> None:
        if not pid_alive(read_pid(self.data / "postmaster.pid")):
            return
        run(
            as_user(
                self.user,
                [str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "90", "stop"],
            ),
            timeout=120,
        )

    def psql(
        self, sql: str, database: str = "postgres", variables: dict[str, str] | None = None
    ) -> str:
        """Run SQL as the superuser over the private socket (no password needed there);
        ``variables`` become psql variables (-v name=value)."""
        where = ["-h", str(self.socket_dir), "-p", str(self.port)]
        argv = [str(BIN / "psql"), *where, *psql_arguments(database, variables)]
        return run(as_user(self.user, argv), input_text=sql)

    def provision(self, app_user: str, app_password: str, database: str) -> None:
        """The source database, owned by an application role (OWNER_ROLE, which the demo writes
        as), and the pipeline's role as sql/source-role.sql makes it: LOGIN, REPLICATION and
        SELECT, nothing else."""
        if not app_user.isidentifier() or not database.isidentifier():
            raise StackError("devstack names must be plain identifiers")
        for role, extra in ((OWNER_ROLE, ""), (app_user, " REPLICATION")):
            exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'")
            verb = "ALTER" if exists.strip() else "CREATE"
            self.psql(f"{verb} ROLE {role} LOGIN{extra} PASSWORD '{app_password}';")
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'").strip():
            self.psql(f"CREATE DATABASE {database} OWNER {OWNER_ROLE};")
        # Stacks made before the roles were split had the pipeline's role own the database.
        self.psql(f"ALTER DATABASE {database} OWNER TO {OWNER_ROLE};")
        self.psql(f"REASSIGN OWNED BY {app_user} TO {OWNER_ROLE};", database)
        self.grant_source(app_user, app_password, database, OWNER_ROLE)

    def grant_source(
        self, role: str, password: str, database: str, owner: str, schema: str = "public"
    ) -> None:
        """sql/source-role.sql in ``database``: tables ``owner`` creates in ``schema`` are
        readable."""
        script, variables = source_role(role, password, owner, schema)
        self.psql(script, database, variables)
