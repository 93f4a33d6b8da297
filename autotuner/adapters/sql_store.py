"""The audit and state store: SQLAlchemy 2 Core over SQLite (the default) or PostgreSQL.

Every decision is written as an intent before the actuator is called and completed with its
outcome afterwards, each in its own committed transaction, so a crash between the two leaves a
visible unfinished record rather than nothing. The engine state is one JSON document, replaced
every cycle and read back on start.

The schema is created on start and carries a version row; a database written by another
version of autotuner is refused with a message saying so, never silently reused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.pool import StaticPool

from autotuner.core.model import (
    Decision,
    KnobRef,
    Outcome,
    OutcomeStatus,
    Phase,
    PolicyStep,
    Verdict,
    labels_of,
)
from autotuner.core.state import EngineState

SCHEMA_VERSION = 1
DEFAULT_URL = "sqlite:///autotuner-audit.sqlite"
DEFAULT_TABLE_PREFIX = "autotuner_"
ENGINE_STATE = "engine"


class StoreError(Exception):
    """The audit database cannot be used; the message says which one and what to do."""


class SchemaVersionError(StoreError):
    """The database holds an audit schema of a version this autotuner does not know."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One recorded decision, with its outcome once the action finished."""

    id: int
    decision: Decision
    recorded_at: float  # wall-clock time the intent was written
    outcome: Outcome | None = None
    completed_at: float | None = None

    @property
    def unfinished(self) -> bool:
        return self.outcome is None


@dataclass(frozen=True, slots=True)
class _Tables:
    version: sa.Table
    decisions: sa.Table
    state: sa.Table


def _define_tables(metadata: sa.MetaData, prefix: str) -> _Tables:
    version = sa.Table(
        f"{prefix}schema",
        metadata,
        sa.Column("component", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    decisions = sa.Table(
        f"{prefix}decisions",
        metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("time", sa.Double, nullable=False),
        sa.Column("recorded_at", sa.Double, nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("knob", sa.String(500), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("value", sa.Double),
        sa.Column("threshold", sa.Double, nullable=False),
        sa.Column("current", sa.Double),
        sa.Column("proposed", sa.Double),
        sa.Column("final", sa.Double),
        sa.Column("limited_by", sa.String(100)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("from_default", sa.Boolean, nullable=False),
        sa.Column("outcome_status", sa.String(16)),
        sa.Column("outcome_detail", sa.Text),
        sa.Column("outcome_old", sa.Double),
        sa.Column("outcome_new", sa.Double),
        sa.Column("outcome_extra", sa.JSON),
        sa.Column("completed_at", sa.Double),
        sa.Index(f"{prefix}decisions_knob_time", "knob", "time"),
        sa.Index(f"{prefix}decisions_rule_time", "rule", "time"),
        sa.Index(f"{prefix}decisions_time", "time"),
        sa.Index(f"{prefix}decisions_unfinished", "outcome_status"),
    )
    state = sa.Table(
        f"{prefix}state",
        metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("saved_at", sa.Double, nullable=False),
        # Text, not JSON: the document is kept exactly as Python's json writes it.
        sa.Column("document", sa.Text, nullable=False),
    )
    return _Tables(version, decisions, state)


def redacted(url: str) -> str:
    """The database URL with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<an unparseable database URL>"


# The drivers installed with autotuner, as (backend, driver); any other would end in an import
# error of a module that is not there.
SUPPORTED_DRIVERS = frozenset({("sqlite", "pysqlite"), ("postgresql", "psycopg")})
_SUPPORTED_URLS = "sqlite:///path/audit.sqlite or postgresql+psycopg://user@host:5432/dbname"


def _create_engine(url: str, *, create: bool) -> Engine:
    try:
        parsed = make_url(url)
        # Names the dialect's default driver when the URL gives none; imports no driver.
        driver = (parsed.get_backend_name(), parsed.get_driver_name())
    except ArgumentError as err:
        raise StoreError(
            f"{redacted(url)!r} is not a database URL this store can use; give one like "
            f"{_SUPPORTED_URLS}"
        ) from err
    if driver not in SUPPORTED_DRIVERS:
        raise StoreError(
            f"the database URL {redacted(url)} needs the {'+'.join(driver)} driver, which "
            f"autotuner does not support; the audit store runs on SQLite or on PostgreSQL "
            f"through psycopg: {_SUPPORTED_URLS}"
        )
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    if database in ("", ":memory:"):
        # One connection shared by all threads, or each would see its own empty database.
        return sa.create_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    if not create and not Path(database).is_file():
        raise StoreError(
            f"there is no audit database {database}; give the database URL the daemon writes to"
        )
    directory = Path(database).parent
    if not directory.is_dir():
        raise StoreError(
            f"the directory {directory} of the audit database {database} does not exist; "
            "create it or point the database URL elsewhere"
        )
    engine = sa.create_engine(parsed, connect_args={"timeout": 10})

    @sa.event.listens_for(engine, "connect")
    def _write_ahead_log(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets `autotuner history` read while the daemon writes.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


class SqlStore:
    """The audit trail and the engine state, in one SQL database."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        schema: str | None = None,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        wall_clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> None:
        """Opens the store, creating its tables unless `create` is false (for readers such as
        `autotuner history`, which must not leave an empty database behind)."""
        self._where = redacted(url)
        self._wall_clock = wall_clock
        self._create = create
        self._engine = _create_engine(url, create=create)
        if schema and self._engine.dialect.name == "sqlite":
            raise StoreError("a database schema can be given only for PostgreSQL, not SQLite")
        self._schema = schema
        self._metadata = sa.MetaData(schema=schema)
        self._tables = _define_tables(self._metadata, table_prefix)
        try:
            self._prepare_with_retry()
        except SQLAlchemyError as err:
            self._engine.dispose()
            raise StoreError(
                f"cannot open the audit database {self._where}: {_first_line(err)}; "
                "check that it is reachable and that the user may create tables"
            ) from err
        except StoreError:
            self._engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The database URL without its password."""
        return self._where

    def close(self) -> None:
        self._engine.dispose()

    def _prepare_with_retry(self, attempts: int = 5) -> None:
        # Replicas starting together race to create the tables; the losers find them made.
        for _ in range(attempts - 1):
            try:
                self._prepare()
                return
            except (IntegrityError, OperationalError, ProgrammingError) as err:
                if not _lost_creation_race(err):
                    raise
                time.sleep(0.1)
        self._prepare()

    def _prepare(self) -> None:
        with self._engine.begin() as connection:
            if self._schema and self._create:
                connection.execute(sa.schema.CreateSchema(self._schema, if_not_exists=True))
            found = self._stored_version(connection)
            if found is None and not self._create:
                raise StoreError(
                    f"the database {self._where} holds no autotuner audit tables; give the "
                    "database URL (and table prefix) the daemon writes to"
                )
            if found is not None and found != SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the audit database {self._where} has schema version {found}, and this "
                    f"autotuner knows only version {SCHEMA_VERSION}; run the autotuner version "
                    "that wrote it, or give a new database URL or table prefix"
                )
            if not self._create:
                return
            self._metadata.create_all(connection)
            if found is None:
                connection.execute(
                    self._tables.version.insert().values(component="audit", version=SCHEMA_VERSION)
                )

    def _stored_version(self, connection: sa.Connection) -> int | None:
        table = self._tables.version
        if not sa.inspect(connection).has_table(table.name, schema=self._schema):
            return None
        row = connection.execute(
            sa.select(table.c.version).where(table.c.component == "audit")
        ).first()
        return None if row is None else int(row.version)

    def _run(self, what: str, work: Callable[[sa.Connection], Any]) -> Any:
        try:
            with self._engine.begin() as connection:
                return work(connection)
        except SQLAlchemyError as err:
            raise StoreError(
                f"could not {what} in the audit database {self._where}: {_first_line(err)}"
            ) from err

    def record_intent(self, decision: Decision) -> int:
        """Writes the decision before it is acted on; returns its id for `record_outcome`."""
        row = _decision_row(decision) | {"recorded_at": self._wall_clock()}
        table = self._tables.decisions

        def insert(connection: sa.Connection) -> int:
            result = connection.execute(table.insert().values(**row).returning(table.c.id))
            return int(result.scalar_one())

        intent_id: int = self._run("record the decision", insert)
        return intent_id

    def record_outcome(self, intent_id: int, outcome: Outcome) -> None:
        table = self._tables.decisions
        values = {
            "outcome_status": outcome.status.value,
            "outcome_detail": outcome.detail,
            "outcome_old": outcome.old,
            "outcome_new": outcome.new,
            "outcome_extra": dict(outcome.extra),
            "completed_at": self._wall_clock(),
        }

        def update(connection: sa.Connection) -> int:
            result = connection.execute(
                table.update().where(table.c.id == intent_id).values(**values)
            )
            return int(result.rowcount)

        if self._run("record the outcome", update) == 0:
            raise StoreError(
                f"no decision with id {intent_id} in the audit database {self._where}; "
                "record_outcome takes the id that record_intent returned"
            )

    def unfinished(self) -> list[AuditRecord]:
        """Decisions whose outcome was never recorded (the process stopped while acting)."""
        table = self._tables.decisions
        query = sa.select(table).where(table.c.outcome_status.is_(None)).order_by(table.c.id)
        return self._records(query)

    def history(
        self,
        *,
        rule: str | None = None,
        knob: str | None = None,
        knob_prefix: str | None = None,
        since: float | None = None,
        until: float | None = None,
        status: OutcomeStatus | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Recorded decisions, newest first, filtered by rule, knob id (or its start), decision
        time and outcome status."""
        table = self._tables.decisions
        query = sa.select(table)
        if rule is not None:
            query = query.where(table.c.rule == rule)
        if knob is not None:
            query = query.where(table.c.knob == knob)
        if knob_prefix is not None:
            query = query.where(table.c.knob.startswith(knob_prefix, autoescape=True))
        if since is not None:
            query = query.where(table.c.time >= since)
        if until is not None:
            query = query.where(table.c.time < until)
        if status is not None:
            query = query.where(table.c.outcome_status == status.value)
        query = query.order_by(table.c.time.desc(), table.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        return self._records(query)

    def last_decisions(self, knob: KnobRef | str, limit: int = 5) -> list[AuditRecord]:
        """The latest decisions about one knob, newest first (for `autotuner explain`)."""
        knob_id = knob.id if isinstance(knob, KnobRef) else knob
        return self.history(knob=knob_id, limit=limit)

    def delete_older_than(self, cutoff: float) -> int:
        """Deletes decisions made before `cutoff` (in decision time); returns how many."""
        table = self._tables.decisions

        def delete(connection: sa.Connection) -> int:
            return int(connection.execute(table.delete().where(table.c.time < cutoff)).rowcount)

        deleted: int = self._run("delete old decisions", delete)
        return deleted

    def save_state(
        self, document: Mapping[str, Any], saved_at: float, name: str = ENGINE_STATE
    ) -> None:
        """Replaces the saved state document (the engine's `EngineState.to_dict()`)."""
        try:
            text = json.dumps(document, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise StoreError(f"the state {name!r} cannot be saved as JSON: {err}") from err
        table = self._tables.state

        def replace(connection: sa.Connection) -> None:
            updated = connection.execute(
                table.update().where(table.c.name == name).values(document=text, saved_at=saved_at)
            )
            if updated.rowcount == 0:
                connection.execute(
                    table.insert().values(name=name, document=text, saved_at=saved_at)
                )

        self._run("save the engine state", replace)

    def load_state(self, name: str = ENGINE_STATE) -> dict[str, Any] | None:
        """The last saved state document, or None when none was ever saved."""
        table = self._tables.state

        def select(connection: sa.Connection) -> str | None:
            row = connection.execute(
                sa.select(table.c.document).where(table.c.name == name)
            ).first()
            return None if row is None else str(row.document)

        text: str | None = self._run("read the engine state", select)
        if text is None:
            return None
        try:
            document = json.loads(text)
        except ValueError as err:
            raise StoreError(
                f"the saved state {name!r} in {self._where} is not valid JSON ({err}); "
                "delete that row to start from a fresh state"
            ) from err
        if not isinstance(document, dict):
            raise StoreError(
                f"the saved state {name!r} in {self._where} is not a JSON object; "
                "delete that row to start from a fresh state"
            )
        return document

    def save_engine_state(self, state: EngineState, saved_at: float) -> None:
        self.save_state(state.to_dict(), saved_at)

    def load_engine_state(self) -> EngineState | None:
        """The engine state saved last, or None on a first start."""
        document = self.load_state()
        if document is None:
            return None
        try:
            return EngineState.from_dict(document)
        except (KeyError, TypeError, ValueError) as err:
            raise StoreError(
                f"the saved engine state in {self._where} cannot be read: {err}; delete the "
                f"row {ENGINE_STATE!r} of its state table to start from a fresh state"
            ) from err

    def _records(self, query: sa.Select[Any]) -> list[AuditRecord]:
        def fetch(connection: sa.Connection) -> list[AuditRecord]:
            return [_record(row) for row in connection.execute(query).mappings()]

        records: list[AuditRecord] = self._run("read decisions", fetch)
        return records


def _lost_creation_race(err: SQLAlchemyError) -> bool:
    # PostgreSQL reports a table created meanwhile as a unique violation in its catalog,
    # SQLite as "table ... already exists", or, when two openers read before either writes,
    # as "database is locked" at once: SQLite's busy wait cannot break that deadlock, so one
    # of them gives up and tries again.
    text = str(err)
    return (
        isinstance(err, IntegrityError) or "already exists" in text or "database is locked" in text
    )


def _first_line(err: Exception) -> str:
    text = str(getattr(err, "orig", None) or err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def _decision_row(decision: Decision) -> dict[str, Any]:
    return {
        "time": decision.time,
        "rule": decision.rule,
        "labels": dict(decision.labels),
        "knob": decision.knob.id,
        "verdict": decision.verdict.value,
        "phase": decision.phase.value,
        "metric": decision.metric,
        "value": decision.value,
        "threshold": decision.threshold,
        "current": decision.current,
        "proposed": decision.proposed,
        "final": decision.final,
        "limited_by": decision.limited_by,
        "reason": decision.reason,
        "steps": [
            {"policy": s.policy, "before": s.before, "after": s.after, "note": s.note}
            for s in decision.steps
        ],
        "dry_run": decision.dry_run,
        "from_default": decision.from_default,
    }


def _record(row: sa.RowMapping) -> AuditRecord:
    decision = Decision(
        time=row["time"],
        rule=row["rule"],
        labels=labels_of(row["labels"]),
        knob=KnobRef.parse(row["knob"]),
        verdict=Verdict(row["verdict"]),
        phase=Phase(row["phase"]),
        metric=row["metric"],
        value=row["value"],
        threshold=row["threshold"],
        current=row["current"],
        proposed=row["proposed"],
        final=row["final"],
        steps=tuple(
            PolicyStep(s["policy"], s["before"], s["after"], s.get("note", ""))
            for s in row["steps"]
        ),
        reason=row["reason"],
        dry_run=bool(row["dry_run"]),
        from_default=bool(row["from_default"]),
    )
    outcome = None
    if row["outcome_status"] is not None:
        outcome = Outcome(
            status=OutcomeStatus(row["outcome_status"]),
            detail=row["outcome_detail"] or "",
            old=row["outcome_old"],
            new=row["outcome_new"],
            extra=dict(row["outcome_extra"] or {}),
        )
    return AuditRecord(
        id=int(row["id"]),
        decision=decision,
        recorded_at=row["recorded_at"],
        outcome=outcome,
        completed_at=row["completed_at"],
    )
