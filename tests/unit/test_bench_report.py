"""The benchmark's report: a column per decoder, one value where the decoder does not matter,
the targets judged for each decoder, the notes below the marker kept."""

from __future__ import annotations

from pathlib import Path

from bench.report import NOTES_MARKER, Figures, Results, markdown, write


def _both() -> tuple[Figures, Results]:
    figures, results = Figures(), Results()
    figures.add("snapshot copy", "rows/s", "69,438")
    figures.memory["snapshot copy", None] = {"extractor": 62, "applier": 99}
    for decoder, drain, bulk, p99, mb in (
        ("wal2json", 6.1, 52_767.0, 0.044, 76.0),
        ("pgoutput", 6.4, 55_000.0, 0.120, 71.0),
    ):
        figures.decoder = decoder
        figures.add("bulk", "end-to-end rows/s", f"{bulk:,.0f}")
        figures.add("drain", "ratio (target 5, goal 8)", f"{drain:.1f}")
        figures.memory["drain", decoder] = {"extractor": mb, "applier": 59}
        figures.cpu["drain", decoder] = {"extractor": 0.5, "applier": 0.7}
        results.of(decoder).update(bulk=bulk, drain_ratio=drain, p99=p99, cpu_per_row=15.7)
        figures.add_for(decoder, "decoders", "our decoder µs/row", "4.78")
    figures.add_for(None, "stage limits", "RabbitMQ publishing with confirms alone rows/s", "3")
    figures.add_for("wal2json", "bulk", "a figure added after the others", "1")
    results.common["copy"] = 69_438.0
    return figures, results


def test_a_column_per_decoder_and_one_value_where_it_does_not_matter() -> None:
    figures, results = _both()
    text = markdown(figures, results, "python -m bench", ["wal2json", "pgoutput"])
    assert "| part | figure | wal2json | pgoutput |\n| --- | --- | --- | --- |\n" in text
    assert "| snapshot copy | rows/s | 69,438 |  |" in text
    assert "| bulk | end-to-end rows/s | 52,767 | 55,000 |" in text
    assert "| drain | ratio (target 5, goal 8) | 6.1 | 6.4 |" in text
    assert "| decoders | our decoder µs/row | 4.78 | 4.78 |" in text
    assert "| bulk | a figure added after the others | 1 | not run |" in text
    # A part's rows stay together, whenever they were added.
    table = text[text.index("| part | figure") : text.index("Peak resident")]
    assert table.index("a figure added after") < table.index("| drain |")
    assert "| drain (wal2json) | 76 | 59 |" in text
    assert "| drain (pgoutput) | 71 | 59 |" in text
    assert "| snapshot copy | 62 | 99 |" in text
    assert "| drain (pgoutput) | 0.50 | 0.70 |" in text


def test_each_target_is_judged_for_each_decoder() -> None:
    figures, results = _both()
    text = markdown(figures, results, "python -m bench", ["wal2json", "pgoutput"])
    assert (
        "- drain of queued single-row transactions, this pipeline / naive:"
        " wal2json 6.1x, pgoutput 6.4x — met (target 5x, goal 8x)"
    ) in text
    assert "- latency p99: wal2json 44 ms, pgoutput 120 ms — met with wal2json, NOT met with pgoutput" in text  # fmt: skip
    assert (
        "- extractor + applier CPU per bulk row: wal2json 15.7 µs, pgoutput 15.7 µs — met" in text
    )
    # Each decoder's peak: its own parts' and those that do not depend on it (the copy's 99).
    assert "- highest resident memory: wal2json 99 MB, pgoutput 99 MB — met" in text
    assert "- snapshot copy 69,438 rows/s vs bulk streaming rows/s: wal2json 52,767, pgoutput 55,000 — met" in text  # fmt: skip


def test_one_decoder_one_column() -> None:
    figures, results = _both()
    results.by_decoder.pop("pgoutput")
    text = markdown(figures, results, "python -m bench --decoder wal2json", ["wal2json"])
    assert "| part | figure | wal2json |\n| --- | --- | --- |\n" in text
    # What was measured with a decoder that has no column is named after it.
    assert "| decoders | wal2json: our decoder µs/row | 4.78 |" in text
    assert "| decoders | pgoutput: our decoder µs/row | 4.78 |" in text
    assert "- drain of queued single-row transactions, this pipeline / naive: 6.1x — met" in text
    assert "- latency p99: 44 ms — met" in text
    assert "| drain | 76 | 59 |" in text


def test_the_notes_below_the_marker_are_kept(tmp_path: Path) -> None:
    report = tmp_path / "performance.md"
    write(report, "# Performance\n\nold figures\n")
    report.write_text(report.read_text() + "written by hand\n")
    write(report, "# Performance\n\nnew figures\n")
    text = report.read_text()
    assert "new figures" in text and "old figures" not in text
    assert text.endswith(NOTES_MARKER + "\nwritten by hand\n")
