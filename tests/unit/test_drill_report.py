"""The drill rewrites only its figures in docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

from drill.cluster import FIGURES_BEGIN as BEGIN
from drill.cluster import FIGURES_END as END
from drill.cluster import ClusterReport, markdown
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


def test_the_cluster_drill_writes_into_the_deployment_guide(tmp_path: Path) -> None:

    text = (ROOT / "docs" / "deployment.md").read_text()
    assert text.index(BEGIN) < text.index(END)
    report = ClusterReport(differences={"accounts": "0 missing, 0 extra, 0 different"})
    report.faults["kill_galera_serving"] = 1
    report.back_after["kill_galera_serving"] = [6.5]
    figures = markdown(report, "python -m drill --cluster")
    assert "| kill_galera_serving | 1 | 6.5 s, 6.5 s |" in figures
    assert "Result: **passed**" in figures
    page = tmp_path / "deployment.md"
    page.write_text(f"# Deployment\n\n{BEGIN}\n{END}\n\n## After\n")
    write_report(page, figures, BEGIN, END)
    assert "6.5 s" in page.read_text() and page.read_text().endswith("## After\n")
