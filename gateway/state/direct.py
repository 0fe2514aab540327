"""The webhook's hot statements sent on the driver's cursor, inside a SQLAlchemy transaction.

Per statement, SQLAlchemy's execution path costs more CPU than the driver's own work
(`bench/sql_floor.py`). On MariaDB/MySQL and PostgreSQL, `rows`, `run` and `insert_id` compile a
Core statement once per dialect and parameter names, and send its SQL on the connection's DBAPI
cursor. SQLAlchemy keeps the rest: the pool, the transaction (begun here if none is), the
`before_cursor_execute` and `after_cursor_execute` listeners (called as it calls them), and the
errors (handled by its own code: wrapped, `handle_error` listeners, the connection and the pool
invalidated on a disconnect). Parameters and result columns are converted by their types as
SQLAlchemy converts them. A statement with an expanding IN or with a column default computed in
Python, and every statement on SQLite, goes through `conn.execute` instead (docs/performance.md).
"""
from __future__ import annotations

import collections

import sqlalchemy as sa

DIALECTS = ("mysql", "postgresql")
MAX_PLANS = 2000  # a process uses a few dozen; tests build many apps, each with statements of its own
# (statement, dialect, parameter names): its plan, or None for conn.execute. The dialect object is
# part of the key: the SQL of one statement may differ between servers (MariaDB and MySQL 8).
_plans: dict[tuple, _Plan | None] = {}
_returning: dict = {}  # INSERT statement: (the same with RETURNING its key, the key column)


class _Plan:
    """One statement compiled for one dialect and set of parameter names."""

    __slots__ = ("compiled", "sql", "names", "process", "columns", "row", "convert")

    def __init__(self, compiled, dialect, columns):
        self.compiled, self.sql = compiled, compiled.string
        self.names = tuple(compiled.positiontup) if compiled.positional else None
        processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()}
        self.process = tuple((name, process) for name, process in processors.items() if process is not None)
        self.columns = columns
        self.row = collections.namedtuple("Row", [c.key for c in columns], rename=True)
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


def _plan(dialect, statement, names: frozenset, columns=None) -> _Plan | None:
    """`columns`: what the statement returns (a SELECT's own columns, or an INSERT's RETURNING
    column); None for a statement that returns nothing."""
    key = (statement, dialect, names)
    try:
        return _plans[key]
    except KeyError:
        pass
    plan = None
    if dialect.name in DIALECTS:
        compiled = statement.compile(dialect=dialect, column_keys=sorted(names))
        # Not: an expanding IN (rendered anew at each execution), or a column whose default
        # SQLAlchemy computes in Python (its execution context fills those in).
        if "POSTCOMPILE" not in compiled.string and not compiled.insert_prefetch and not compiled.update_prefetch:
            plan = _Plan(compiled, dialect, columns or ())
    if len(_plans) >= MAX_PLANS:
        _plans.clear()
    _plans[key] = plan  # two threads may both build it: the same plan
    return plan


def _execute(conn, plan: _Plan, params: dict, want: str):
    """The statement on `conn`'s cursor; `want`: "rows", "rowcount" or "lastrowid"."""
    if not conn.in_transaction():
        conn.begin()  # as SQLAlchemy's autobegin: the caller's commit ends it
    cursor = conn.connection.dbapi_connection.cursor()
    sql, args = plan.sql, None
    try:
        args = plan.args(params)
        for listener in conn.dispatch.before_cursor_execute:
            sql, args = listener(conn, cursor, sql, args, None, False)
        cursor.execute(sql, args)
        for listener in conn.dispatch.after_cursor_execute:
            listener(conn, cursor, sql, args, None, False)
        if want == "rows":
            result = plan.make_rows(conn.dialect, cursor.description, cursor.fetchall())
        else:
            result = getattr(cursor, want)
    except BaseException as exc:
        # SQLAlchemy's own handling, as for the statements it sends: the error wrapped (values
        # hidden as the engine says), handle_error listeners, and on a disconnect this connection
        # invalidated and the pool's older ones with it. A private method, so SQLAlchemy is
        # pinned; tests/foundation/test_direct.py fails if it changes.
        conn._handle_dbapi_exception(exc, sql, args, cursor, None)
    cursor.close()
    return result


def rows(conn, statement: sa.Select, params: dict) -> list:
    """The rows of a SELECT, each with its columns by name and position."""
    plan = _plan(conn.dialect, statement, frozenset(params), tuple(statement.selected_columns))
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
        returning = _returning.get(statement)
        if returning is None:
            (key,) = statement.table.primary_key.columns
            returning = _returning.setdefault(statement, (statement.returning(key), key))
        plan = _plan(conn.dialect, returning[0], frozenset(params), (returning[1],))
        if plan is not None:
            return _execute(conn, plan, params, "rows")[0][0]
        return conn.execute(statement, params).inserted_primary_key[0]
    plan = _plan(conn.dialect, statement, frozenset(params))
    if plan is None:
        return conn.execute(statement, params).inserted_primary_key[0]
    return _execute(conn, plan, params, "lastrowid")
