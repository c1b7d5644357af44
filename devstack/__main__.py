"""``python -m devstack start|stop|status|env|install-packages``"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from devstack.stack import Stack
from devstack.system import StackError, install_packages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Private PostgreSQL, RabbitMQ and MariaDB servers on free loopback ports.",
    )
    parser.add_argument("--dir", type=Path, default=None, help="stack folder (default .stack/)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install-packages", help="install the Debian packages the stack needs")
    start = sub.add_parser(
        "start", help="create (first time) and start the servers, print settings"
    )
    for server, variable in (("rabbitmq", NODES_RABBITMQ), ("mariadb", NODES_MARIADB)):
        start.add_argument(
            f"--{server}-nodes",
            type=int,
            default=None,
            help=f"a {server} cluster of this many nodes beside the single server, named by "
            f"the settings printed (default: ${variable}, else as the stack was; 1: none)",
        )
    sub.add_parser("stop", help="stop the servers cleanly (data stays in the folder)")
    sub.add_parser("status", help="which servers run")
    env = sub.add_parser("env", help="print the settings as shell exports")
    env.add_argument(
        "--tls",
        action="store_true",
        help="with TLS on all three connections, verified against the stack's CA",
    )
    for name in ("postgres", "mariadb", "rabbitmq"):
        p = sub.add_parser(f"restart-{name}", help=f"stop and start {name} only")
        p.set_defaults(server=name)
    args = parser.parse_args(argv)

    try:
        if args.command == "install-packages":
            install_packages()
            return 0
        if args.command == "start":
            stack = Stack.load(
                args.dir,
                rabbitmq_nodes=nodes(args.rabbitmq_nodes, NODES_RABBITMQ),
                mariadb_nodes=nodes(args.mariadb_nodes, NODES_MARIADB),
            )
        else:
            stack = Stack.load(args.dir)
        if args.command == "start":
            stack.start()
            print(f"devstack: started in {stack.root}", file=sys.stderr)
            print_env(stack)
        elif args.command == "stop":
            stack.stop()
            print("devstack: stopped", file=sys.stderr)
        elif args.command == "status":
            for name, up in stack.running().items():
                print(f"{name}: {'running' if up else 'stopped'}")
        elif args.command == "env":
            print_env(stack, tls=args.tls)
        elif args.command.startswith("restart-"):
            server = getattr(stack, args.server)
            server.stop()
            server.start()
    except StackError as e:
        print(f"devstack: {e}", file=sys.stderr)
        return 1
    return 0


NODES_RABBITMQ = "CDC_STACK_RABBITMQ_NODES"
NODES_MARIADB = "CDC_STACK_MARIADB_NODES"


def nodes(given: int | None, variable: str) -> int | None:
    """How many nodes were asked for: the option, else the variable, else None (as before)."""
    text = str(given) if given is not None else os.environ.get(variable, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 9:
        raise StackError(f"{variable}={text!r}: expected a number of nodes from 1 to 9")
    return int(text)


def print_env(stack: Stack, tls: bool = False) -> None:
    settings = {**stack.env(), **(stack.tls_env() if tls else {})}
    for key, value in settings.items():
        print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    sys.exit(main())
