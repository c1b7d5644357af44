"""One run of the benchmark: a pipeline per decoder (``source.decoder``), one after the other.

The first pipeline runs every part asked for; each next one only those whose figures depend on
the decoder (PER_DECODER, and decoding alone of the stage limits), on a settled machine after
the pipeline before it is stopped and dropped. What does not go through the decoder is
measured once: the snapshot copy reads the tables in the slot's exported snapshot
(extractor/snapshot.py), not the stream; the round trips are the applier alone; the other stage
limits are RabbitMQ and MariaDB alone; the "decoders" part compares both decoders on the same
WAL by itself.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bench import decoders, stages
from bench.drain import drain
from bench.parts import Bench, Sizes
from bench.report import Figures, Results
from bench.roundtrips import roundtrips
from devstack.stack import Stack
from devstack.system import wait_until
from harness.pipeline import ROOT, new_pipeline

DECODERS = ("wal2json", "pgoutput")
PARTS = ("copy", "bulk", "oltp", "latency", "drain", "roundtrips", "stages", "decoders")
# OLTP too: its changes are decoded and streamed as the bulk part's are, only smaller.
PER_DECODER = ("bulk", "oltp", "latency", "drain", "stages")


def run(
    stack: Stack,
    logdir: Path,
    sizes: Sizes,
    names: list[str],
    parts: list[str],
    again: tuple[str, ...] = PER_DECODER,
) -> tuple[Figures, Results, list[str]]:
    """The parts with each decoder of ``names`` in turn (after the first, only those of
    ``again``); the figures, the rates the targets are judged on, and the decoders that ran
    (a column each)."""
    figures, results = Figures(), Results()
    ran: list[str] = []
    for decoder in names:
        if ran:
            parts = [part for part in parts if part in again]
            if not parts:
                break
        (logdir / decoder).mkdir(parents=True, exist_ok=True)
        pipeline = new_pipeline(stack, logdir / decoder, decoder)
        # The source as README advises running it: with the DDL capture, a table created
        # while the pipeline runs is known from its creation, not copied again at the next
        # start (the bulk part's million rows would be, inside the drain's timing).
        stack.postgres.psql((ROOT / "sql" / "ddl-capture.sql").read_text(), pipeline.source_db)
        bench = Bench(stack, pipeline, sizes, figures)
        try:
            _parts(bench, parts, results, first=not ran)
            ran.append(decoder)
            _stop(bench)
        finally:
            pipeline.destroy()
    _ratios(figures, results)
    return figures, results, ran


def _parts(bench: Bench, parts: list[str], results: Results, *, first: bool) -> None:
    """The chosen parts, in order, each on a settled machine (the first of a later pipeline
    too: the one before was just dropped)."""
    figures, mine = bench.figures, results.of(bench.p.decoder)

    def starts(part: str, label: str) -> bool:
        if part not in parts or not (first or part in PER_DECODER):
            return False
        figures.decoder = bench.p.decoder if part in PER_DECODER else None
        bench.settle(f"{label} [{figures.decoder}]" if figures.decoder else label)
        return True

    if first and "copy" in parts:
        figures.decoder = None
        bench.seed()
        bench.settle("snapshot copy")
        results.common["copy"] = bench.snapshot_copy()
    else:
        bench.start_pipeline()
    if starts("bulk", "bulk"):
        mine["bulk"] = bench.bulk()
        mine["cpu_per_row"] = bench.cpu_per_row
    if starts("oltp", "OLTP"):
        bench.oltp()
    if starts("latency", "latency"):
        mine["p99"] = bench.latency()[0.99]
    if starts("drain", "drain"):
        ours, naive = drain(bench)
        mine["drain_ratio"] = ours / naive
    if starts("roundtrips", "round trips"):
        direct, delayed = roundtrips(bench)
        results.common["roundtrips_ratio"] = delayed / direct
    if starts("stages", "stage limits"):
        _stage_limits(bench, results, first=first)
    if starts("decoders", "decoders"):
        decoders.compare(bench.p, bench.sizes.stage_rows, figures.add_for)


def _stage_limits(bench: Bench, results: Results, *, first: bool) -> None:
    """Each stage alone: the decoder's plugin with each pipeline, the servers once."""
    rows, decoder = bench.sizes.stage_rows, bench.p.decoder
    decoding = results.of(decoder)["decoding"] = stages.decoding_alone(bench.p, rows)
    add = partial(bench.figures.add_for, decoder, "stage limits")
    add("decoding alone (pg_recvlogical) rows/s", f"{decoding:,.0f}")
    if not first:
        return
    add = partial(bench.figures.add_for, None, "stage limits")
    paths = stages.apply_paths(bench.p, rows)
    upserts = results.common["MariaDB upserts"] = paths["executemany"]
    add("MariaDB batched upserts alone rows/s", f"{upserts:,.0f}")
    for path, rate in paths.items():
        add(f"MariaDB alone, 1,000-row batches by {path} rows/s", f"{rate:,.0f}")
    loaded = results.common["LOAD DATA"] = paths["LOAD DATA (bulk path)"]
    add("LOAD DATA / executemany", f"{loaded / upserts:.2f}")
    publishing = stages.publishing_alone(bench.p, rows)
    results.common["RabbitMQ publishing"] = publishing
    add("RabbitMQ publishing with confirms alone rows/s", f"{publishing:,.0f}")


def _ratios(figures: Figures, results: Results) -> None:
    """The slowest stage, and the end-to-end rates as a share of it, per decoder: once every
    pipeline ran (the stage limits of the servers are measured with the first)."""
    common = results.common
    if "MariaDB upserts" not in common:
        return
    servers = {k: common[k] for k in ("MariaDB upserts", "RabbitMQ publishing")}
    for decoder, mine in results.by_decoder.items():
        if "decoding" not in mine:
            continue
        limits = {f"{decoder} decoding": mine["decoding"], **servers}
        slowest = min(limits, key=lambda k: limits[k])
        mine["slowest"] = limits[slowest]
        figures.add_for(
            decoder, "stage limits", "slowest stage", f"{slowest} ({limits[slowest]:,.0f} rows/s)"
        )
        if "bulk" not in mine:
            continue
        bulk = mine["bulk"]
        # The target (b): against MariaDB's batched upserts alone, the executemany
        # figure; and against the faster path the applier itself now takes.
        mine["bulk_vs_mariadb"] = bulk / common["MariaDB upserts"]
        add = partial(figures.add_for, decoder, "ratios")
        add("bulk / slowest stage", f"{bulk / limits[slowest]:.2f}")
        add("bulk / MariaDB batched upserts alone", f"{mine['bulk_vs_mariadb']:.2f}")
        add("bulk / MariaDB LOAD DATA alone", f"{bulk / common['LOAD DATA']:.2f}")
    if "copy" in common:
        # The copy reads the tables, not the stream: no decoding on its way.
        slowest = min(servers, key=lambda k: servers[k])
        ratio = common["copy"] / servers[slowest]
        figures.add_for(None, "ratios", "copy / slowest stage (RabbitMQ, MariaDB)", f"{ratio:.2f}")


def _stop(bench: Bench) -> None:
    """The pipeline's processes stopped (SIGTERM: they close their connections) and its slot
    released, before the next pipeline is measured or this one dropped."""
    for proc in bench.p.procs:
        proc.stop()

    def released() -> bool:
        conn = bench.pg()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_replication_slots WHERE database = %s AND active",
                    (bench.p.source_db,),
                )
                return int(cur.fetchone()[0]) == 0
        finally:
            conn.close()

    wait_until(released, f"the slots of {bench.p.source_db} released", 60, 0.2)
