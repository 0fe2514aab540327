"""The webhook's hot statements sent on the driver's cursor, inside a SQLAlchemy transaction.

Per statement, SQLAlchemy's execution path costs more CPU than the driver's own work
(`bench/sql_floor.py`). On MariaDB/MySQL and PostgreSQL, `rows`, `run` and `insert_id` compile a
Core statement once per dialect and parameter names, and send its SQL on the connection's DBAPI
cursor. SQLAlchemy keeps the rest: the pool, the transaction (begun here if none is), the
`before_cursor_execute` and `after_cursor_execute` listeners (called as it calls them), and the
errors (a driver error is wrapped in its `DBAPIError`, the connection invalidated on a
disconnect). Parameters and result columns are converted by their types as SQLAlchemy converts
them. A statement with an expanding IN, and every statement on SQLite, goes through
`conn.execute` instead (docs/performance.md).
"""
from __future__ import annotations

import collections
import weakref

import sqlalchemy as sa

DIALECTS = ("mysql", "postgresql")
# statement: {(dialect, driver, parameter names): its plan, or None for conn.execute}; a statement
# no longer used (an app's OnPrintShop statements, once the app is gone) takes its plans with it.
_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_returning: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # INSERT: the same with RETURNING its key


class _Plan:
    """One statement compiled for one dialect and set of parameter names."""

    __slots__ = ("compiled", "sql", "names", "process", "columns", "row", "convert")

    def __init__(self, compiled, dialect, columns):
        self.compiled, self.sql = compiled, compiled.string
        self.names = tuple(compiled.positiontup) if compiled.positional else None
        processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()}
        self.process = tuple((name, process) for name, process in processors.items() if process is not None)
        self.columns = columns
        self.row = collections.namedtuple("Row", [c.key for c in columns], rename=True) if columns else None
        self.convert = None  # the columns' result processors, known from the first result's types

    def make_rows(self, dialect, description, found) -> list:
        if self.convert is None:
            self.convert = tuple(c.type.dialect_impl(dialect).result_processor(dialect, d[1])
                                 for c, d in zip(self.columns, description, strict=True))
        if not any(self.convert):
            return [self.row._make(row) for row in found]
        return [self.row._make(value if convert is None else convert(value)
                               for convert, value in zip(self.convert, row, strict=True)) for row in found]

    def args(self, params: dict):
        values = self.compiled.construct_params(params)
        for name, process in self.process:  # as SQLAlchemy converts them (a bool to 1 on MariaDB, say)
            if name in values:
                values[name] = process(values[name])
        return values if self.names is None else tuple(values[name] for name in self.names)


def _plan(dialect, statement, names: frozenset, returns=()) -> _Plan | None:
    """`returns`: the columns of an INSERT's RETURNING (a SELECT's are its own)."""
    key = (dialect.name, dialect.driver, names)
    plans = _plans.get(statement)
    if plans is None:
        plans = _plans.setdefault(statement, {})
    try:
        return plans[key]
    except KeyError:
        pass
    plan = None
    if dialect.name in DIALECTS:
        compiled = statement.compile(dialect=dialect, column_keys=sorted(names))
        if "POSTCOMPILE" not in compiled.string:  # an expanding IN is rendered anew at each execution
            columns = list(statement.selected_columns) if isinstance(statement, sa.Select) else list(returns)
            plan = _Plan(compiled, dialect, columns)
    plans[key] = plan  # two threads may both build it: the same plan
    return plan


def _execute(conn, plan: _Plan, params: dict, want: str):
    """The statement on `conn`'s cursor; `want`: "rows", "rowcount" or "lastrowid"."""
    if not conn.in_transaction():
        conn.begin()  # as SQLAlchemy's autobegin: the caller's commit ends it
    dialect = conn.dialect
    dbapi_conn = conn.connection.dbapi_connection
    cursor = dbapi_conn.cursor()
    sql, args = plan.sql, plan.args(params)
    error = dialect.loaded_dbapi.Error
    try:
        for listener in conn.dispatch.before_cursor_execute:
            sql, args = listener(conn, cursor, sql, args, None, False)
        cursor.execute(sql, args)
        result = plan.make_rows(dialect, cursor.description, cursor.fetchall()) if want == "rows" else getattr(cursor, want)
        for listener in conn.dispatch.after_cursor_execute:
            listener(conn, cursor, sql, args, None, False)
    except BaseException as exc:
        lost = isinstance(exc, error) and dialect.is_disconnect(exc, dbapi_conn, cursor)
        try:
            cursor.close()
        except Exception:  # noqa: S110 (a lost connection's cursor may not close; SQLAlchemy ignores it too)
            pass
        if not isinstance(exc, error):
            raise
        if lost:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(sql, args, exc, error, hide_parameters=True, connection_invalidated=lost,
                                         dialect=dialect) from exc
    cursor.close()
    return result


def rows(conn, statement, params: dict) -> list:
    """The rows of a SELECT (or INSERT … RETURNING), each with its columns by name and position."""
    plan = _plan(conn.dialect, statement, frozenset(params))
    if plan is None:
        return conn.execute(statement, params).all()
    return _execute(conn, plan, params, "rows")


def run(conn, statement, params: dict) -> int:
    """Run an UPDATE, INSERT or DELETE; the number of rows it matched (as the driver counts them)."""
    plan = _plan(conn.dialect, statement, frozenset(params))
    if plan is None:
        return conn.execute(statement, params).rowcount
    return _execute(conn, plan, params, "rowcount")


def insert_id(conn, statement, params: dict) -> int:
    """Run an INSERT of one row into a table with one autoincrement primary key; the key it was
    given (RETURNING on PostgreSQL, the driver's last insert id on MariaDB/MySQL)."""
    if conn.dialect.name == "postgresql":
        (key,) = statement.table.primary_key.columns
        returning = _returning.get(statement)
        if returning is None:
            returning = _returning.setdefault(statement, statement.returning(key))
        return _execute(conn, _plan(conn.dialect, returning, frozenset(params), (key,)), params, "rows")[0][0]
    plan = _plan(conn.dialect, statement, frozenset(params))
    if plan is None:
        return conn.execute(statement, params).inserted_primary_key[0]
    return _execute(conn, plan, params, "lastrowid")
