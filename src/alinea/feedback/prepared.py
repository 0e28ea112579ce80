"""SQLAlchemy Core statements compiled once per dialect and run straight on the DBAPI cursor.

Why: for the small statements of the hot routes (leasing, judging), SQLAlchemy's work on each execution (the
statement's cache key, an execution context, result-row objects) costs 5 to 10 times what the database itself
spends on them: on SQLite, 80-140 µs against 8-17 µs per statement on the development machine. A `Prepared`
statement does that work once per dialect: it keeps the SQL string, the order of its parameters and the type
conversions SQLAlchemy would apply (each column type's `bind_processor` and `result_processor`: JSON, UTC
datetimes, booleans), so rows come back as `Connection.execute` would return them
(tests/feedback/test_prepared.py compares the two on both databases).

The statement runs inside the SQLAlchemy connection's transaction (same DBAPI connection). A DBAPI error is raised
as SQLAlchemy's wrapper (`IntegrityError`, `OperationalError`, ...), so the app's error handlers treat it alike, and
a connection that the database dropped is invalidated (not returned to the pool).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None
    """Parameter names in placeholder order (positional paramstyles such as SQLite's `?`); None: named."""
    defaults: dict[str, Any]
    """Values fixed in the statement itself (literals SQLAlchemy sends as parameters)."""
    bind: dict[str, Callable[[Any], Any]]
    """Parameter name -> conversion to what the driver takes (only where the type has one)."""
    row: type | None
    """A namedtuple of the result columns (None: no result rows)."""
    columns: tuple[Any, ...]
    """The result columns (their types convert the values)."""
    result: list[tuple[Callable[[Any], Any] | None, ...]]
    """The conversion of each result column, made at the first execution: some depend on the driver's type code."""


class Prepared:
    """One statement, compiled on first use for each dialect. `keys`: for an INSERT without values, the columns the
    callers always give (SQLAlchemy compiles an INSERT for the keys of its parameters)."""

    def __init__(self, statement, *, keys: Sequence[str] = ()) -> None:
        self.statement = statement
        self.keys = tuple(keys)
        self._by_dialect: dict[str, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(self.keys) or None)
        sql = compiled.string
        # Values that SQLAlchemy writes into the SQL text at execution ("literal execute", e.g. a separator) are
        # written in now; expanding lists (IN :ids) would need a different SQL text for each length.
        literal = {}
        for bind in compiled.literal_execute_params:
            name = compiled.bind_names[bind]
            literal[name] = bind
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", compiled.render_literal_value(bind.effective_value,
                                                                                       bind.type))
        if "POSTCOMPILE" in sql:
            raise ValueError("a Prepared statement cannot have expanding (IN list) parameters")
        binds = {name: bind for name, bind in compiled.binds.items() if name.isidentifier() and name not in literal}
        defaults = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
        if self.keys:  # a column the callers do not give would need SQLAlchemy's Python-side defaults
            missing = [name for name in binds if name not in self.keys]
            if missing:
                raise ValueError(f"a Prepared INSERT needs values for {missing}")
        bind_processors = {}
        for name, bind in binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                bind_processors[name] = processor
        columns = list(self.statement.exported_columns)  # the selected or RETURNING columns
        row = namedtuple("Row", [column.key for column in columns], rename=True) if columns else None
        order = tuple(name for name in compiled.positiontup if name not in literal) if dialect.positional else None
        return _Compiled(sql=sql, order=order, defaults=defaults, bind=bind_processors, row=row,
                         columns=tuple(columns), result=[])

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            found = self._by_dialect[dialect.name] = self._compile(dialect)
        return found

    def _run(self, connection: Connection, params: Mapping[str, Any]):
        compiled = self.compiled(connection.dialect)
        values = {**compiled.defaults, **params} if compiled.defaults else dict(params)
        for name, processor in compiled.bind.items():
            if name in values:
                values[name] = processor(values[name])
        arguments = tuple(values[name] for name in compiled.order) if compiled.order is not None else values
        dbapi_connection = connection.connection.driver_connection
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(compiled.sql, arguments)
        except connection.dialect.loaded_dbapi.Error as err:
            cursor.close()
            if connection.dialect.is_disconnect(err, dbapi_connection, cursor):
                connection.invalidate(err)
            raise DBAPIError.instance(compiled.sql, arguments, err, connection.dialect.loaded_dbapi.Error,
                                      dialect=connection.dialect) from err
        return compiled, cursor

    def _processors(self, compiled: _Compiled, cursor, dialect: Dialect) -> tuple:
        if not compiled.result:
            compiled.result.append(tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(compiled.columns, cursor.description, strict=True)))
        return compiled.result[0]

    def _rows(self, compiled: _Compiled, cursor, dialect: Dialect, raws: list) -> list[Any]:
        processors = self._processors(compiled, cursor, dialect)
        return [compiled.row(*(value if processor is None else processor(value)
                               for processor, value in zip(processors, raw, strict=True))) for raw in raws]

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """The first result row (a namedtuple with the statement's column keys), or None."""
        compiled, cursor = self._run(connection, params)
        try:
            raw = cursor.fetchone()
            return None if raw is None else self._rows(compiled, cursor, connection.dialect, [raw])[0]
        finally:
            cursor.close()

    def all(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        compiled, cursor = self._run(connection, params)
        try:
            return self._rows(compiled, cursor, connection.dialect, cursor.fetchall())
        finally:
            cursor.close()

    def scalar(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = self.first(connection, params)
        return None if row is None else row[0]

    def rowcount(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Run a statement without result rows; the number of rows it changed."""
        _, cursor = self._run(connection, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

