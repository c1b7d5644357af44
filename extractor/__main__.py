"""``python -m extractor [--config PATH] [run | backfill TABLE... | status | drop-slot]``"""

from __future__ import annotations

import json
import sys

from extractor import slot_admin
from extractor.partitions import refuse_partitions
from extractor.service import ExtractorService
from extractor.snapshot import request_backfill
from shared import cli
from shared.config import BackfillConfig, ExtractorConfig, StatusConfig
from shared.errors import CdcError, ConfigError, PermanentError, SetupError
from shared.lsn import format_lsn
from shared.tables import parse_table_list

PROG = "extractor"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(
        PROG, "Stream a PostgreSQL logical replication slot (wal2json or pgoutput) into RabbitMQ."
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="stream until stopped (the default)")
    backfill = commands.add_parser(
        "backfill",
        help="copy tables again, as of now, while changes keep flowing",
        description="Asks the running extractor, through PostgreSQL's WAL, to copy these "
        "tables again: it does so when its stream reaches the request (at once if it is "
        "caught up; after a restart if it is down). The target table is emptied and filled "
        "with the source's rows as of that point; later changes follow in order.",
    )
    backfill.add_argument("tables", nargs="+", metavar="SCHEMA.TABLE")
    status = commands.add_parser(
        "status",
        help="the slot: position, lag, whether it is active; messages waiting in RabbitMQ",
        description="Exit code 0 if the slot exists, 1 if not (or on an error).",
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    drop = commands.add_parser(
        "drop-slot",
        help="drop the replication slot (asks first)",
        description="Drops the slot so PostgreSQL frees the WAL it keeps for it. Changes the "
        "extractor has not read yet are lost to the pipeline; its next start creates a new "
        "slot and copies every captured table again. Refused while the slot is in use.",
    )
    drop.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    args = parser.parse_args(argv)

    if args.command in ("status", "drop-slot"):
        admin = cli.load_or_exit(PROG, args.config, StatusConfig)
        try:
            if args.command == "status":
                return _status(admin, args.json)
            return _drop_slot(admin, args.yes)
        except CdcError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return cli.EXIT_FAULT
    if args.command == "backfill":
        cfg = cli.load_or_exit(PROG, args.config, BackfillConfig)
        try:
            tables = parse_table_list(",".join(args.tables), "backfill")
            refuse_partitions(cfg.source, list(tables), "backfill")
            not_captured = [t for t in tables if not cfg.source.capture.captures(t)]
            if not_captured:
                raise ConfigError(
                    "not captured (see source.tables / source.exclude_tables): "
                    + ", ".join(str(t) for t in not_captured)
                )
            lsn = request_backfill(cfg.source, list(tables))
        except CdcError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return cli.EXIT_CONFIG if isinstance(e, ConfigError) else cli.EXIT_FAULT
        print(
            f"backfill of {', '.join(str(t) for t in tables)} requested at {format_lsn(lsn)}; "
            "the extractor copies them when its stream reaches that point"
        )
        return cli.EXIT_OK

    service = ExtractorService(cli.load_or_exit(PROG, args.config, ExtractorConfig))
    cli.on_stop_signals(service.request_stop)
    cli.tune_gc()
    try:
        service.run()
    except PermanentError as e:
        return cli.fatal(PROG, e)
    return cli.EXIT_OK


def _status(cfg: StatusConfig, as_json: bool) -> int:
    status = slot_admin.slot_status(cfg)
    print(json.dumps(status.as_dict()) if as_json else slot_admin.render(status))
    return cli.EXIT_OK if status.exists else cli.EXIT_NEGATIVE


def _drop_slot(cfg: StatusConfig, yes: bool) -> int:
    def confirm(status: slot_admin.SlotStatus) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise SetupError("no terminal to ask for confirmation on: pass --yes to drop the slot")
        print(slot_admin.render(status))
        print(
            "\nDropping the slot frees the WAL above. Changes not read by the extractor yet are "
            "lost to the pipeline;\nits next start creates a new slot and copies every captured "
            "table again."
        )
        answer = input(f"Type the slot name ({status.slot}) to drop it: ")
        return answer.strip() == status.slot

    if slot_admin.drop_slot(cfg, confirm):
        print(f"slot {cfg.source.slot} dropped")
        return cli.EXIT_OK
    print("not dropped", file=sys.stderr)
    return cli.EXIT_FAULT


if __name__ == "__main__":
    sys.exit(main())
