"""``python -m applier [--config PATH] [run | dlq list | dlq replay | verify]``"""

from __future__ import annotations

import argparse
import sys

from applier import dlq, verify, verify_report
from applier.collaborators import connect
from applier.service import ApplierService
from shared import cli
from shared.config import ApplierConfig, DlqConfig, VerifyConfig
from shared.errors import ConfigError, PermanentError, TransientError
from shared.tables import parse_table_list

PROG = "applier"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(PROG, "Apply change messages from RabbitMQ to MariaDB, idempotently.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="consume and apply until stopped (the default)")
    dlq_parser = commands.add_parser("dlq", help="the dead-letter queue")
    dlq_commands = dlq_parser.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser(
        "list", help="show parked messages and why (nothing is removed)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per message")
    again = dlq_commands.add_parser("replay", help="send parked messages back to be applied")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every parked message")
    which.add_argument("--id", action="append", dest="ids", metavar="MESSAGE_ID", help="this one")
    check = commands.add_parser(
        "verify",
        help="compare source and target tables (counts and checksums, in chunks)",
        description="Compares each captured table (or the --table ones) with its copy: each "
        "database counts and checksums the rows of each chunk of the primary key itself; "
        "chunks that differ are read row by row and the rows that differ are listed. Needs "
        "source.dsn too. Exit code 0: all equal; 1: some rows or tables differ; 3: could not "
        "verify (an error).",
    )
    check.add_argument(
        "--table", action="append", dest="tables", metavar="SCHEMA.TABLE", help="only these"
    )
    check.add_argument(
        "--chunk-rows", type=int, default=verify.CHUNK_ROWS, help="rows per chunk (%(default)s)"
    )
    check.add_argument(
        "--show", type=int, default=20, help="differing keys listed per table (%(default)s)"
    )
    check.add_argument(
        "--rechecks",
        type=int,
        default=verify.RECHECKS,
        help="times a differing chunk is checked again, a second apart, before its rows are "
        "reported (the pipeline may be applying it) (%(default)s)",
    )
    check.add_argument("--json", action="store_true", help="one JSON object per table")
    args = parser.parse_args(argv)

    if args.command == "verify":
        return _verify(cli.load_or_exit(PROG, args.config, VerifyConfig), args)

    if args.command == "dlq":
        cfg = cli.load_or_exit(PROG, args.config, DlqConfig)
        try:
            if args.dlq_command == "list":
                dlq.list_parked(cfg, as_json=args.json)
            else:
                dlq.replay(cfg, None if args.all else set(args.ids))
        except (PermanentError, TransientError) as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return cli.EXIT_FAULT
        return cli.EXIT_OK

    config = cli.load_or_exit(PROG, args.config, ApplierConfig)
    service = ApplierService(config, connect(config))
    cli.on_stop_signals(service.request_stop)
    cli.tune_gc()
    try:
        service.run()
    except PermanentError as e:
        return cli.fatal(PROG, e)
    return cli.EXIT_OK


def _verify(cfg: VerifyConfig, args: argparse.Namespace) -> int:
    try:
        only = parse_table_list(",".join(args.tables), "--table") if args.tables else ()
    except ConfigError as e:
        print(f"{PROG}: config error: {e}", file=sys.stderr)
        return cli.EXIT_CONFIG
    chunk_rows, rechecks = max(args.chunk_rows, 1), max(args.rechecks, 0)
    return verify_report.run(
        PROG,
        cfg,
        only=only,
        chunk_rows=chunk_rows,
        rechecks=rechecks,
        show=int(args.show),
        as_json=bool(args.json),
    )


if __name__ == "__main__":
    sys.exit(main())
