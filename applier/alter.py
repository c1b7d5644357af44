"""ALTER TABLE statements SQLAlchemy does not build, compiled with the dialect's quoting."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import DDLElement
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.types import TypeEngine

from shared.naming import TargetRef


class AlterColumn(DDLElement):
    """``ALTER TABLE t ADD COLUMN IF NOT EXISTS c type`` or ``MODIFY COLUMN c type``."""

    inherit_cache = False

    def __init__(self, table: TargetRef, column: str, type_: TypeEngine[Any], add: bool) -> None:
        self.table_ref = table
        self.column = column
        self.type_ = type_
        self.add = add


class AddPrimaryKey(DDLElement):
    """``ALTER TABLE t MODIFY COLUMN k type, ..., ADD PRIMARY KEY (k, ...)``: the key columns
    take their key types (a text key is a VARCHAR, which an index can hold) in one statement."""

    inherit_cache = False

    def __init__(self, table: TargetRef, columns: list[tuple[str, TypeEngine[Any]]]) -> None:
        self.table_ref = table
        self.columns = columns


def _table(compiler: DDLCompiler, ref: TargetRef) -> str:
    prep = compiler.preparer
    table = prep.quote(ref.table)
    return prep.quote(ref.database) + "." + table if ref.database else table


def _type(compiler: DDLCompiler, type_: TypeEngine[Any]) -> str:
    return str(compiler.dialect.type_compiler_instance.process(type_))


@compiles(AlterColumn)
def _compile_alter_column(element: AlterColumn, compiler: DDLCompiler, **_kw: Any) -> str:
    verb = " ADD COLUMN IF NOT EXISTS " if element.add else " MODIFY COLUMN "
    column = compiler.preparer.quote(element.column)
    return (
        "ALTER TABLE " + _table(compiler, element.table_ref) + verb + column + " "
        + _type(compiler, element.type_)
    )  # fmt: skip


@compiles(AddPrimaryKey)
def _compile_add_primary_key(element: AddPrimaryKey, compiler: DDLCompiler, **_kw: Any) -> str:
    quote = compiler.preparer.quote
    modify = [f"MODIFY COLUMN {quote(c)} {_type(compiler, t)} NOT NULL" for c, t in element.columns]
    key = ", ".join(quote(c) for c, _ in element.columns)
    return (
        "ALTER TABLE " + _table(compiler, element.table_ref) + " "
        + ", ".join([*modify, f"ADD PRIMARY KEY ({key})"])
    )  # fmt: skip
