"""The start-time check that no two captured tables would share one target table."""

from __future__ import annotations

from shared.config import NamingConfig
from shared.errors import SetupError
from shared.naming import Naming
from shared.tables import TableRef


def refuse_shared_targets(tables: list[TableRef], target: NamingConfig) -> None:
    """SetupError if two captured tables would go to one target table (with target.rename
    and target.schemas as the applier reads them), or one to a table of the applier's own:
    they would silently mix there, and a TRUNCATE of one would empty the other."""
    clashes = Naming(target.rename, target.schemas).shared_targets(tables)
    if not clashes:
        return
    ref, sources = clashes[0]
    more = f" (and {len(clashes) - 1} more target tables like it)" if len(clashes) > 1 else ""
    if len(sources) == 1:
        raise SetupError(
            f"source table {sources[0]} would go to target table {ref}, which is one of the "
            f"applier's own tables{more}: give it another name with target.rename "
            f"(e.g. CDC_TARGET_RENAME='{sources[0]}=<new name>')"
        )
    raise SetupError(
        f"source tables {sources[0]} and {sources[1]} would both go to target table {ref}"
        f"{more}; a TRUNCATE of one would empty the other: give one of them a target table of "
        f"its own with target.rename (e.g. CDC_TARGET_RENAME='{sources[1]}=<new name>'), or "
        "leave one out with source.exclude_tables"
    )
