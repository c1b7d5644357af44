"""A private RabbitMQ node, with its own Erlang port mapper, cookie and files."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
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

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
_TLS_MARK = "# devstack tls"


def loopback_url(port: int, user: str, password: str, vhost: str = "%2F") -> str:
    return f"amqp://{user}:{password}@127.0.0.1:{port}/{vhost}"


@dataclass
class RabbitMQ:
    root: Path
    port: int
    dist_port: int
    epmd_port: int
    password: str
    tls_port: int = 0  # 0: no TLS listener (a stack.json from before TLS, until Stack.load)
    app_user: str = "cdc"
    # A node of a cluster (devstack/rabbit_cluster.py): the cluster's Erlang cookie, and a
    # port mapper shared with the other nodes, which must outlive any one of them.
    cookie: str = ""
    shared_epmd: bool = False

    @property
    def user(self) -> str | None:
        return service_user("rabbitmq")

    @property
    def node(self) -> str:
        return f"devstack-{self.port}@localhost"

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "rabbit.pid"

    @property
    def log(self) -> Path:
        return self.root / "log" / "rabbit.log"

    def url(self, vhost: str = "%2F") -> str:
        return loopback_url(self.port, self.app_user, self.password, vhost)

    def tls_url(self, vhost: str = "%2F") -> str:
        """The TLS listener's URL; its certificate names 127.0.0.1 (see devstack/tls.py)."""
        return f"amqps://{self.app_user}:{self.password}@127.0.0.1:{self.tls_port}/{vhost}"

    def env(self) -> dict[str, str]:
        r = self.root
        return {
            "HOME": str(r / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(r / "mnesia"),
            "RABBITMQ_LOG_BASE": str(r / "log"),
            "RABBITMQ_LOGS": str(self.log),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONFIG_FILE": str(r / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(r / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(r / "enabled_plugins"),
            # Keeps the system's /etc/rabbitmq/rabbitmq-env.conf (which names the system
            # node) out of our node.
            "RABBITMQ_CONF_ENV_FILE": str(r / "rabbitmq-env.conf"),
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def init(self) -> None:
        if (self.root / "rabbitmq.conf").exists():
            return
        for sub in ("home", "mnesia", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        cookie = self.root / "home" / ".erlang.cookie"
        cookie.write_text(self.cookie or secrets.token_hex(16))
        cookie.chmod(0o400)
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            f"default_user = {self.app_user}\n"
            f"default_pass = {self.password}\n"
            "default_vhost = /\n"
            "loopback_users = none\n"
            "disk_free_limit.absolute = 50MB\n"
            # A node cut off from the majority stops serving rather than diverging.
            + ("cluster_partition_handling = pause_minority\n" if self.shared_epmd else "")
        )
        (self.root / "advanced.config").write_text("[].\n")
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        chown_tree(self.root, self.user)

    def enable_tls(self, certs: Certificates) -> None:
        """A TLS listener on tls_port beside the plain one, with the stack's certificate;
        clients are not asked for certificates. A node running without it is restarted (a
        listener is only added at boot), so a stack made before TLS gains it on its next
        start."""
        if not self.tls_port:
            raise StackError("RabbitMQ has no TLS port (stack.json from an older devstack)")
        ca, cert, key = install(certs, self.root / "tls", self.user)
        conf = self.root / "rabbitmq.conf"
        text = conf.read_text()
        block = (
            f"{_TLS_MARK}\n"
            f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}\n"
            f"ssl_options.cacertfile = {ca}\n"
            f"ssl_options.certfile = {cert}\n"
            f"ssl_options.keyfile = {key}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
        )
        if block not in text:
            conf.write_text(text.split(_TLS_MARK)[0].rstrip("\n") + "\n" + block)
        if self.running() and not port_open(self.tls_port):
            print("devstack: restarting RabbitMQ to turn TLS on", file=sys.stderr, flush=True)
            self.stop()

    def _listening(self) -> bool:
        if not port_open(self.port):
            return False
        # With TLS configured, the node is ready once both listeners are.
        tls = self.tls_port and _TLS_MARK in (self.root / "rabbitmq.conf").read_text()
        return not tls or port_open(self.tls_port)

    def running(self) -> bool:
        return pid_alive(read_pid(self.pid_file)) and port_open(self.port)

    def start(self) -> None:
        if self.running():
            return
        with (self.root / "log" / "startup.log").open("ab") as log:
            # Detached (setsid -f), as in mariadb.py.
            subprocess.run(
                [
                    "setsid",
                    "-f",
                    *as_user(self.user, [str(RABBIT_BIN / "rabbitmq-server")], self.env()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                check=True,
            )
        wait_until(self._listening, f"RabbitMQ on port {self.port}", timeout=120)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        # In a folder the service user can read: the Erlang VM looks in its working folder
        # first, and prints its eacces error report into the output when it may not.
        return run(
            as_user(
                self.user, [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args], self.env()
            ),
            timeout=timeout,
            cwd=self.root,
        )

    def stop(self) -> None:
        pid = read_pid(self.pid_file)
        if pid_alive(pid):
            assert pid is not None
            try:
                self.ctl("stop", str(self.pid_file), timeout=120)
            except StackError:
                os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not pid_alive(pid), "RabbitMQ to stop", timeout=120)
        if not self.shared_epmd:
            self.stop_epmd()

    def kill(self) -> None:
        """Stop abruptly, as a crash would (the port mapper stays)."""
        pid = read_pid(self.pid_file)
        if pid_alive(pid):
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), "RabbitMQ to die", timeout=30)

    def stop_epmd(self) -> None:
        subprocess.run(
            as_user(self.user, ["epmd", "-kill"], {"ERL_EPMD_PORT": str(self.epmd_port)}),
            capture_output=True,
            check=False,
            timeout=30,
        )
