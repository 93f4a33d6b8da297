"""The audit and state store on SQLite and on the machine's PostgreSQL.

Each PostgreSQL test works in a schema of its own, created and dropped by the test; nothing else
in the database is touched.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from autotuner.adapters.sql_store import (
    SCHEMA_VERSION,
    SchemaVersionError,
    SqlStore,
    StoreError,
)
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobRef,
    Outcome,
    OutcomeStatus,
    Phase,
    PolicyStep,
    Verdict,
)
from autotuner.core.state import EngineState, KnobState, TargetState

pytestmark = pytest.mark.integration

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
API = KnobRef(KnobKind.DEPLOYMENT, "api", "crm")
TTL = KnobRef(KnobKind.CONFIG_KEY, "crm:cache:ttl:users")
POOL = KnobRef(KnobKind.CONFIG_KEY, "crm:db", field="pool_size")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """A database URL and schema used by this test alone."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.sqlite'}", None
        return
    schema = f"autotuner_test_{uuid.uuid4().hex[:12]}"
    yield POSTGRES, schema
    engine = sa.create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
    engine.dispose()


@pytest.fixture
def store(database: tuple[str, str | None]) -> Iterator[SqlStore]:
    url, schema = database
    opened = SqlStore(url, schema=schema)
    yield opened
    opened.close()


def decision(
    knob: KnobRef = API,
    *,
    time: float = 1_000.0,
    rule: str = "api-latency-high",
    current: float = 4.0,
    final: float = 5.0,
    dry_run: bool = False,
) -> Decision:
    return Decision(
        time=time,
        rule=rule,
        labels=(("deployment", "api"), ("namespace", "crm")),
        knob=knob,
        verdict=Verdict.CHANGE,
        phase=Phase.FIRING,
        metric="api_p95_seconds",
        value=0.92,
        threshold=0.5,
        current=current,
        proposed=current * 2,
        final=final,
        steps=(
            PolicyStep("step_limit", current * 2, current * 1.5, "at most x1.5"),
            PolicyStep("bounds", current * 1.5, final, "max 5"),
        ),
        reason="p95 0.92 s above 0.5 s for 2m",
        dry_run=dry_run,
    )


def test_a_decision_and_its_outcome_round_trip(store: SqlStore) -> None:
    made = decision()
    outcome = Outcome(OutcomeStatus.APPLIED, "scaled 4 -> 5", 4.0, 5.0, {"event": "sent"})

    intent = store.record_intent(made)
    store.record_outcome(intent, outcome)
    [record] = store.history()

    assert record.id == intent
    assert record.decision == made
    assert record.decision.limited_by == "bounds"
    assert record.outcome == outcome
    assert not record.unfinished


def test_decision_fields_are_queryable_columns(
    store: SqlStore, database: tuple[str, str | None]
) -> None:
    store.record_intent(decision())
    url, schema = database
    engine = sa.create_engine(url)
    table = sa.Table("autotuner_decisions", sa.MetaData(schema=schema), autoload_with=engine)
    with engine.connect() as connection:
        row = connection.execute(sa.select(table)).mappings().one()
    engine.dispose()

    assert row["knob"] == "deployment/crm/api"
    assert row["limited_by"] == "bounds"
    assert (row["value"], row["threshold"], row["current"], row["final"]) == (0.92, 0.5, 4.0, 5.0)
    labels = row["labels"] if isinstance(row["labels"], dict) else json.loads(row["labels"])
    assert labels == {"deployment": "api", "namespace": "crm"}
    assert row["outcome_status"] is None


def test_an_intent_without_an_outcome_is_visible_as_unfinished(store: SqlStore) -> None:
    finished = store.record_intent(decision(time=1_000.0))
    store.record_outcome(finished, Outcome(OutcomeStatus.APPLIED, "ok", 4.0, 6.0))
    crashed = store.record_intent(decision(TTL, time=1_015.0, current=300, final=450))

    unfinished = store.unfinished()

    assert [r.id for r in unfinished] == [crashed]
    assert unfinished[0].decision.knob == TTL
    assert unfinished[0].unfinished


def test_an_unfinished_intent_survives_the_process_that_wrote_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    # A separate interpreter records an intent and is killed before any outcome.
    program = (
        "import os, signal\n"
        "from autotuner.adapters.sql_store import SqlStore\n"
        "from autotuner.core.model import *\n"
        f"store = SqlStore({url!r})\n"
        "store.record_intent(Decision(time=5.0, rule='r', labels=(), "
        "knob=KnobRef(KnobKind.CONFIG_KEY, 'k'), verdict=Verdict.CHANGE, phase=Phase.FIRING, "
        "metric='m', value=1.0, threshold=0.5, current=1.0, proposed=2.0, final=2.0))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", program], check=False, timeout=60)

    store = SqlStore(url)
    [record] = store.unfinished()
    store.close()

    assert record.decision.knob.id == "key/k"
    assert record.outcome is None


def test_history_filters_by_rule_knob_and_time_newest_first(store: SqlStore) -> None:
    ids = {
        "api-early": store.record_intent(decision(API, time=100.0)),
        "ttl": store.record_intent(decision(TTL, time=200.0, rule="cache-hit-low")),
        "pool": store.record_intent(decision(POOL, time=300.0, rule="db-pool-busy")),
        "api-late": store.record_intent(decision(API, time=400.0)),
    }

    def ids_of(**filters: object) -> list[int]:
        return [r.id for r in store.history(**filters)]  # type: ignore[arg-type]

    assert ids_of() == [ids["api-late"], ids["pool"], ids["ttl"], ids["api-early"]]
    assert ids_of(rule="api-latency-high") == [ids["api-late"], ids["api-early"]]
    assert ids_of(knob="key/crm:db#pool_size") == [ids["pool"]]
    assert ids_of(knob_prefix="key/crm:") == [ids["pool"], ids["ttl"]]
    assert ids_of(since=200.0) == [ids["api-late"], ids["pool"], ids["ttl"]]
    assert ids_of(since=150.0, until=350.0) == [ids["pool"], ids["ttl"]]
    assert ids_of(limit=1) == [ids["api-late"]]
    assert ids_of(rule="no-such-rule") == []


def test_history_filters_by_outcome_status(store: SqlStore) -> None:
    applied = store.record_intent(decision(time=100.0))
    store.record_outcome(applied, Outcome(OutcomeStatus.APPLIED))
    skipped = store.record_intent(decision(time=200.0))
    store.record_outcome(skipped, Outcome(OutcomeStatus.SKIPPED, "changed concurrently"))
    store.record_intent(decision(time=300.0))

    assert [r.id for r in store.history(status=OutcomeStatus.APPLIED)] == [applied]
    assert [r.id for r in store.history(status=OutcomeStatus.SKIPPED)] == [skipped]


def test_a_knob_prefix_is_matched_literally(store: SqlStore) -> None:
    odd = KnobRef(KnobKind.CONFIG_KEY, "crm_cache%x")
    other = KnobRef(KnobKind.CONFIG_KEY, "crmXcacheYx")
    wanted = store.record_intent(decision(odd, current=1, final=2))
    store.record_intent(decision(other, current=1, final=2))

    assert [r.id for r in store.history(knob_prefix="key/crm_cache%")] == [wanted]


def test_explain_gets_the_last_decisions_of_a_knob(store: SqlStore) -> None:
    for step in range(8):
        store.record_intent(decision(API, time=100.0 * step, current=step, final=step + 1))
    store.record_intent(decision(TTL, time=10_000.0, current=300, final=450))

    latest = store.last_decisions(API, limit=3)

    assert [r.decision.final for r in latest] == [8.0, 7.0, 6.0]
    assert [r.decision.final for r in store.last_decisions("deployment/crm/api", 1)] == [8.0]


def test_retention_deletes_only_older_records(store: SqlStore) -> None:
    old = store.record_intent(decision(time=100.0))
    store.record_outcome(old, Outcome(OutcomeStatus.APPLIED))
    store.record_intent(decision(time=150.0))
    kept = store.record_intent(decision(time=200.0))

    deleted = store.delete_older_than(200.0)

    assert deleted == 2
    assert [r.id for r in store.history()] == [kept]


def test_the_engine_state_is_replaced_each_cycle_and_restored_on_start(
    database: tuple[str, str | None],
) -> None:
    url, schema = database
    labels = (("cache", "users"),)
    state = EngineState(
        targets={
            ("cache-hit-low", labels): TargetState(
                phase=Phase.FIRING, active_since=10.0, last_true=40.0, last_action=30.0,
                knob="key/crm:cache:ttl:users",
            )
        },
        knobs={"key/crm:cache:ttl:users": KnobState(((30.0, 450.0),), ((30.0, 150.0),))},
    )  # fmt: skip
    first = SqlStore(url, schema=schema)
    assert first.load_state() is None
    first.save_state(EngineState().to_dict(), saved_at=15.0)
    first.save_state(state.to_dict(), saved_at=30.0)
    first.close()

    restarted = SqlStore(url, schema=schema)
    document = restarted.load_state()
    restored = restarted.load_engine_state()
    restarted.close()

    assert document is not None
    assert EngineState.from_dict(document) == state
    assert restored == state


def test_an_engine_state_of_another_format_is_refused_clearly(store: SqlStore) -> None:
    assert store.load_engine_state() is None
    store.save_state({"format": 99, "targets": [], "knobs": {}}, saved_at=1.0)

    with pytest.raises(StoreError, match=r"saved engine state .* cannot be read: .*format 99"):
        store.load_engine_state()


def test_replicas_opening_a_new_database_together_all_succeed(
    database: tuple[str, str | None],
) -> None:
    url, schema = database
    opened: list[SqlStore] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            opened.append(SqlStore(url, schema=schema))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    intent = opened[0].record_intent(decision())
    assert [[r.id for r in s.history()] for s in opened] == [[intent]] * 4
    for store in opened:
        store.close()


def test_a_failing_database_gives_a_store_error_that_names_it(
    store: SqlStore, database: tuple[str, str | None]
) -> None:
    url, schema = database
    engine = sa.create_engine(url)
    table = sa.Table("autotuner_decisions", sa.MetaData(schema=schema), autoload_with=engine)
    with engine.begin() as connection:
        table.drop(connection)
    engine.dispose()

    with pytest.raises(StoreError, match="could not record the decision in the audit database"):
        store.record_intent(decision())


def test_a_state_that_is_not_json_is_refused_clearly(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="cannot be saved as JSON"):
        store.save_state({"when": object()}, saved_at=1.0)


def test_an_infinite_number_in_the_state_round_trips(store: SqlStore) -> None:
    store.save_state({"until": math.inf}, saved_at=1.0)

    assert store.load_state() == {"until": math.inf}


def test_reopening_keeps_the_records(database: tuple[str, str | None]) -> None:
    url, schema = database
    first = SqlStore(url, schema=schema)
    intent = first.record_intent(decision())
    first.close()

    second = SqlStore(url, schema=schema)
    records = second.history()
    second.close()

    assert [r.id for r in records] == [intent]


def test_a_newer_schema_version_is_refused(database: tuple[str, str | None]) -> None:
    url, schema = database
    SqlStore(url, schema=schema).close()
    engine = sa.create_engine(url)
    version = sa.Table("autotuner_schema", sa.MetaData(schema=schema), autoload_with=engine)
    with engine.begin() as connection:
        connection.execute(version.update().values(version=SCHEMA_VERSION + 1))
    engine.dispose()

    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SqlStore(url, schema=schema)


def test_table_prefixes_keep_two_stores_apart(database: tuple[str, str | None]) -> None:
    url, schema = database
    blue = SqlStore(url, schema=schema, table_prefix="blue_")
    green = SqlStore(url, schema=schema, table_prefix="green_")
    blue.record_intent(decision())

    assert len(blue.history()) == 1
    assert green.history() == []
    blue.close()
    green.close()


def test_an_outcome_for_an_unknown_intent_is_an_error(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="no decision with id 999"):
        store.record_outcome(999, Outcome(OutcomeStatus.APPLIED))


def test_dry_run_decisions_are_marked(store: SqlStore) -> None:
    intent = store.record_intent(decision(dry_run=True))
    store.record_outcome(intent, Outcome(OutcomeStatus.DRY_RUN, "dry run: not applied"))

    [record] = store.history()

    assert record.decision.dry_run
    assert record.outcome is not None and record.outcome.status is OutcomeStatus.DRY_RUN


def test_an_in_memory_database_serves_the_simulator() -> None:
    store = SqlStore("sqlite://")
    intent = store.record_intent(decision())
    store.record_outcome(intent, Outcome(OutcomeStatus.APPLIED))

    assert [r.id for r in store.history()] == [intent]
    store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL"),
        ("sqlite:////nonexistent-directory/audit.sqlite", "does not exist"),
        (
            "postgresql+psycopg://nobody:hunter2@127.0.0.1:1/test",
            "cannot open the audit database postgresql",
        ),
    ],
)
def test_a_database_that_cannot_be_opened_gives_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as raised:
        SqlStore(url)

    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("mysql://u:hunter2@db/audit", "mysql+mysqldb"),
        ("postgresql+asyncpg://u:hunter2@db/audit", "postgresql+asyncpg"),
        ("sqlite+pysqlcipher://u:hunter2@/audit.sqlite", "sqlite+pysqlcipher"),
    ],
)
def test_a_driver_that_is_not_supported_is_named_with_those_that_are(url: str, driver: str) -> None:
    with pytest.raises(StoreError) as raised:
        SqlStore(url)
    message = str(raised.value)
    assert f"needs the {driver} driver, which autotuner does not support" in message
    assert "sqlite:///path/audit.sqlite or postgresql+psycopg://" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_cli_names_the_supported_drivers_without_a_traceback(how: str) -> None:
    url = "postgresql+asyncpg://u:hunter2@db/audit"
    flag = ["--database-url", url] if how == "flag" else []
    env = {**os.environ, "AUTOTUNER_DATABASE_URL": url} if how == "environment" else None
    done = subprocess.run(
        [sys.executable, "-m", "autotuner", "history", *flag],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert "Traceback" not in done.stderr
    assert "ModuleNotFoundError" not in done.stderr
    assert "needs the postgresql+asyncpg driver" in done.stderr
    assert "hunter2" not in done.stderr


def test_a_schema_cannot_be_given_for_sqlite(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="only for PostgreSQL"):
        SqlStore(f"sqlite:///{tmp_path / 'a.sqlite'}", schema="audit")


def test_a_reader_does_not_create_a_missing_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"

    with pytest.raises(StoreError, match="there is no audit database"):
        SqlStore(f"sqlite:///{path}", create=False)

    assert not path.exists()


def test_a_reader_refuses_a_database_without_audit_tables(
    database: tuple[str, str | None],
) -> None:
    url, schema = database
    SqlStore(url, schema=schema, table_prefix="other_").close()

    with pytest.raises(StoreError, match="holds no autotuner audit tables"):
        SqlStore(url, schema=schema, create=False)


def test_a_reader_opens_what_the_daemon_wrote(database: tuple[str, str | None]) -> None:
    url, schema = database
    writer = SqlStore(url, schema=schema)
    intent = writer.record_intent(decision())
    writer.close()

    reader = SqlStore(url, schema=schema, create=False)
    records = reader.history()
    reader.close()

    assert [r.id for r in records] == [intent]
