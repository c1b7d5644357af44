"""What each process loads before it does anything: a drain of a queued backlog is timed from
the process's start, and SQLAlchemy alone was a fifth of the extractor's start-up."""

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_the_extractor_starts_without_sqlalchemy() -> None:
    # Every command checks every setting given, target.url too (one file for all commands).
    loaded = _modules_after(
        "import extractor.__main__\n"
        "from shared.config import ExtractorConfig, load_config\n"
        "from tests.support.settings import full_env\n"
        "cfg = load_config(ExtractorConfig, environ=full_env())\n"
        "assert cfg.target is not None\n"
        "from shared.types import column_type, comparison, converter"
    )
    assert "extractor.service" in loaded
    assert not {m for m in loaded if m.split(".")[0] == "sqlalchemy"}


def test_the_registry_still_builds_columns_and_comparisons() -> None:
    # The lazy import is the registry's own: a column type and verify's SQL still come out.
    loaded = _modules_after(
        "from shared.types import column_type, comparison\n"
        "assert str(column_type('numeric(12,4)', False)) == 'DECIMAL(12, 4)'\n"
        "assert str(column_type('bigint', True)) == 'BIGINT'\n"
        "import sqlalchemy as sa\n"
        "c = comparison('date').target_text\n"
        "assert c is not None\n"
        "assert 'date_format' in str(c(sa.column('d')))"
    )
    assert "sqlalchemy.dialects.mysql" in loaded
