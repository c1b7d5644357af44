"""The drill rewrites only its figures in docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

from drill.report import FIGURES_BEGIN, FIGURES_END, write_report

ROOT = Path(__file__).resolve().parents[2]


def test_figures_are_replaced_and_the_rest_is_kept(tmp_path: Path) -> None:
    report = tmp_path / "reliability.md"
    write_report(report, "# Reliability\n\nold figures\n")
    report.write_text(report.read_text() + "\n## MariaDB errors\n\nwritten by hand\n")
    write_report(report, "# Reliability\n\nnew figures\n")
    text = report.read_text()
    assert "new figures" in text and "old figures" not in text
    assert text.endswith("\n## MariaDB errors\n\nwritten by hand\n")
    assert text.count(FIGURES_BEGIN) == text.count(FIGURES_END) == 1


def test_the_real_report_has_the_markers_and_the_error_classes() -> None:
    text = (ROOT / "docs" / "reliability.md").read_text()
    assert text.index(FIGURES_BEGIN) < text.index(FIGURES_END) < text.index("## MariaDB errors")
