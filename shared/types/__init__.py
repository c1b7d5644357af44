"""The type registry: one home for the rules of each PostgreSQL type (shared/types/registry.py).

- ``names``: format_type's text of a type, parsed once (the one vocabulary of types);
- ``registry``: each type's MariaDB column, value conversion, envelope form, comparison;
- ``values``: the value conversions into MariaDB;
- ``comparison``: how verify compares each type in both databases.

What the rest of the pipeline uses is here.
"""

from shared.types.comparison import TEXT_STORAGE, Comparison, Edge
from shared.types.names import PgType, parse_type
from shared.types.registry import (
    column_type,
    comparison,
    converter,
    copied_as_values,
    decimal_for,
    element_delimiter,
    is_builtin,
)
from shared.types.values import MAX_JSON_DEPTH, Converter

__all__ = [
    "MAX_JSON_DEPTH",
    "TEXT_STORAGE",
    "Comparison",
    "Converter",
    "Edge",
    "PgType",
    "column_type",
    "comparison",
    "converter",
    "copied_as_values",
    "decimal_for",
    "element_delimiter",
    "is_builtin",
    "parse_type",
]
