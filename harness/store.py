"""The results store: one SQLite file (``results/harness.sqlite`` by default) per checkout.

Only the driver process writes it, and every write is one transaction: a trial row and
its epoch rows go in together or not at all, so a crash never leaves half a trial.
Readers (reports, notebooks) open it read-only, e.g. with :func:`load`.

Layout (schema version :data:`SCHEMA_VERSION`):

* ``meta(key, value)``  -- ``schema_version``.
* ``trials``            -- one row per finished trial, keyed by the spec hash.
* ``epochs``            -- per-epoch curves, keyed by (spec_hash, epoch).
* ``runs``              -- one row per driver invocation.

Opening a store written by an older harness migrates it in one transaction. A store of a
newer, unknown version, a file that is not SQLite, or one that fails
``PRAGMA integrity_check`` raises :class:`StoreError` and is left byte-for-byte as it was.

Note: SQLite stores a float NaN as NULL, so a NaN loss or accuracy reads back as ``None``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import HarnessError

if TYPE_CHECKING:  # pandas is imported by the DataFrame views only: the CLI parser needs none
    import pandas as pd

__all__ = ["SCHEMA_VERSION", "EPOCH_KEYS", "StoreError", "TrialRecord", "Store", "load"]

DEFAULT_STORE = "results/harness.sqlite"  # relative to the working folder

SCHEMA_VERSION = 4
"""Current layout. History: 1 = initial; 2 = ``trials.extra_json`` added; 3 =
``trials.metrics_json`` added (a task's numbers beyond top-1/top-5, moved out of extras);
4 = ``gate_history`` added (one row per check of every regression-gate run, written by
``harness.regress.history``)."""

_T = TypeVar("_T")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_MOVE_ASIDE = "move it aside (or pass another path); nothing was changed"
STATUSES = ("done", "failed", "diverged")
RESULT_STATUSES = ("done", "diverged")  # finished with a result; not to be retried

# ---- schema ---------------------------------------------------------------------------
_TRIALS_V1: tuple[tuple[str, str], ...] = (
    ("spec_hash", "TEXT PRIMARY KEY NOT NULL"),
    ("run_id", "TEXT"),
    ("table_name", "TEXT"),
    ("row_label", "TEXT"),
    ("column_label", "TEXT"),
    ("model", "TEXT"),
    ("recipe_json", "TEXT"),
    ("scale", "TEXT"),
    ("seed", "INTEGER"),
    ("data", "TEXT"),
    ("status", "TEXT NOT NULL CHECK(status IN ('done','failed','diverged'))"),
    ("top1", "REAL"),
    ("top5", "REAL"),
    ("train_img_per_s", "REAL"),
    ("epoch_s", "REAL"),
    ("wall_s", "REAL"),
    ("epochs", "INTEGER"),
    ("device", "TEXT"),
    ("precision", "TEXT"),
    ("torch_version", "TEXT"),
    ("torchvision_version", "TEXT"),
    ("ray_version", "TEXT"),
    ("git_commit", "TEXT"),
    ("dataset_fingerprint", "TEXT"),
    ("started_at", "TEXT"),
    ("finished_at", "TEXT"),
    ("error", "TEXT"),
    ("checkpoint", "TEXT"),
    ("teacher_hash", "TEXT"),
    ("params", "INTEGER"),
    ("macs", "INTEGER"),
)
_TRIALS_V2 = _TRIALS_V1 + (("extra_json", "TEXT"),)
_TRIALS_V3 = _TRIALS_V2 + (("metrics_json", "TEXT"),)
TRIAL_COLUMNS: tuple[str, ...] = tuple(name for name, _ in _TRIALS_V3)
V2_METRIC_KEYS = ("map", "pixacc", "miou")  # the metrics a v2 store kept among the extras

_EPOCHS: tuple[tuple[str, str], ...] = (
    ("spec_hash", "TEXT NOT NULL REFERENCES trials(spec_hash) ON DELETE CASCADE"),
    ("epoch", "INTEGER NOT NULL"),
    ("loss", "REAL"),
    ("lr", "REAL"),
    ("top1", "REAL"),
    ("top5", "REAL"),
    ("img_per_s", "REAL"),
    ("epoch_s", "REAL"),
)
EPOCH_KEYS: tuple[str, ...] = tuple(name for name, _ in _EPOCHS[1:])

_RUNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT PRIMARY KEY NOT NULL"),
    ("table_name", "TEXT"),
    ("scale", "TEXT"),
    ("started_at", "TEXT"),
    ("finished_at", "TEXT"),
    ("argv", "TEXT"),
    ("git_commit", "TEXT"),
    ("n_trials", "INTEGER"),
    ("n_done", "INTEGER"),
    ("n_failed", "INTEGER"),
    ("n_skipped", "INTEGER"),
)
_TABLES = ("meta", "trials", "epochs", "runs")


def _table_ddl(name: str, columns: Sequence[tuple[str, str]], extra: str = "") -> str:
    """``CREATE TABLE`` statement for ``columns`` (name, type-and-constraints) pairs."""
    body = ",\n  ".join(f"{col} {decl}" for col, decl in columns)
    return f"CREATE TABLE {name} (\n  {body}{extra}\n)"


def _schema_ddl(trials_columns: Sequence[tuple[str, str]]) -> list[str]:
    """All statements creating a store whose trials table has ``trials_columns``."""
    return [
        "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT)",
        _table_ddl("trials", trials_columns),
        _table_ddl("epochs", _EPOCHS, ",\n  PRIMARY KEY (spec_hash, epoch)"),
        _table_ddl("runs", _RUNS),
        "CREATE INDEX trials_by_table ON trials(table_name, scale, status)",
    ]


SCHEMA_V1_DDL = _schema_ddl(_TRIALS_V1)
"""Version 1: the current layout without ``trials.extra_json`` (kept for reference/tests)."""
_GATE_HISTORY_DDL = [
    _table_ddl("gate_history", (
        ("id", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        ("gate_id", "TEXT NOT NULL"),  # one gate run
        ("created_at", "TEXT"),
        ("table_name", "TEXT"),
        ("scale", "TEXT"),
        ("git_commit", "TEXT"),
        ("machine_class", "TEXT"),
        ("baseline", "TEXT"),
        ("status", "TEXT"),  # the run's: pass | regression | undecided
        ("exit_code", "INTEGER"),
        ("check_kind", "TEXT"),  # cell | model | trick | speed | determinism
        ("check_name", "TEXT"),
        ("metric", "TEXT"),
        ("base_value", "REAL"),
        ("now_value", "REAL"),
        ("delta", "REAL"),
        ("p", "REAL"),
        ("outcome", "TEXT"),
        ("n_base", "INTEGER"),
        ("n_now", "INTEGER"),
        ("extra_json", "TEXT"),
    )),
    "CREATE INDEX gate_history_by_table ON gate_history(table_name, scale, created_at)",
]
SCHEMA_DDL = _schema_ddl(_TRIALS_V3) + _GATE_HISTORY_DDL


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """v1 -> v2: add the free-form ``extra_json`` column to trials (old rows read as {})."""
    conn.execute("ALTER TABLE trials ADD COLUMN extra_json TEXT")


def _split_metrics(extra: dict) -> tuple[dict, dict]:
    """A v2 row's extras -> (extras, metrics): v2 kept transfer metrics among the extras."""
    metrics = {k: extra[k] for k in V2_METRIC_KEYS if k in extra}
    return {k: v for k, v in extra.items() if k not in metrics}, metrics


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """v2 -> v3: add ``metrics_json`` and move each row's metrics there from ``extra_json``."""
    conn.execute("ALTER TABLE trials ADD COLUMN metrics_json TEXT")
    rows = conn.execute("SELECT spec_hash, extra_json FROM trials").fetchall()
    for spec_hash, extra_json in rows:
        extra, metrics = _split_metrics(_decode_json(extra_json) or {})
        conn.execute("UPDATE trials SET extra_json=?, metrics_json=? WHERE spec_hash=?",
                     (json.dumps(extra, sort_keys=True), json.dumps(metrics, sort_keys=True), spec_hash))


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """v3 -> v4: add the ``gate_history`` table (empty)."""
    for stmt in _GATE_HISTORY_DDL:
        conn.execute(stmt)


_MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4}  # from-version -> step to from-version + 1


class StoreError(HarnessError):
    """The results store cannot be opened or written; the message names the path."""


# ---- records --------------------------------------------------------------------------
@dataclass
class TrialRecord:
    """One finished trial: the ``trials`` columns, its epoch rows, and free-form extras."""

    spec_hash: str | None = None
    run_id: str | None = None
    table_name: str | None = None
    row_label: str | None = None
    column_label: str | None = None
    model: str | None = None
    recipe_json: str | None = None
    scale: str | None = None
    seed: int | None = None
    data: str | None = None
    status: str | None = None  # 'done' | 'failed' | 'diverged'
    top1: float | None = None
    top5: float | None = None
    train_img_per_s: float | None = None
    epoch_s: float | None = None
    wall_s: float | None = None
    epochs: int | None = None
    device: str | None = None
    precision: str | None = None
    torch_version: str | None = None
    torchvision_version: str | None = None
    ray_version: str | None = None
    git_commit: str | None = None
    dataset_fingerprint: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    checkpoint: str | None = None
    teacher_hash: str | None = None
    params: int | None = None
    macs: int | None = None
    epochs_rows: list[dict] = field(default_factory=list)  # keys: EPOCH_KEYS
    extra: dict = field(default_factory=dict)  # stored as extra_json: provenance beyond the columns
    metrics: dict = field(default_factory=dict)  # stored as metrics_json: map, miou, logit_gap, ...

    def recipe(self) -> dict | None:
        """The decoded ``recipe_json`` (None when absent)."""
        return _decode_json(self.recipe_json)


_RECORD_COLUMNS = tuple(f.name for f in fields(TrialRecord)
                        if f.name not in ("epochs_rows", "extra", "metrics"))
assert _RECORD_COLUMNS + ("extra_json", "metrics_json") == TRIAL_COLUMNS, "TrialRecord out of sync with schema"


# ---- small helpers --------------------------------------------------------------------
def _now() -> str:
    """UTC timestamp, ISO 8601, seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """A value sqlite3 can bind: numpy/torch scalars via ``.item()``, paths as str."""
    if isinstance(value, (str, bytes, int, float)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _encode_json(value: Any) -> str | None:
    """Strings are kept as given (assumed JSON); other values are dumped with sorted keys."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _decode_json(text: str | None) -> Any:
    """Inverse of :func:`_encode_json` (None stays None)."""
    return None if text is None else json.loads(text)


def _as_list(value: str | Iterable[str]) -> list[str]:
    """A single string or an iterable of strings, as a list."""
    return [value] if isinstance(value, str) else list(value)


def _is_sqlite_file(path: Path) -> bool:
    """True for an empty file or one starting with the SQLite header."""
    with open(path, "rb") as fh:
        head = fh.read(len(_SQLITE_MAGIC))
    return head in (b"", _SQLITE_MAGIC)


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit)."""
    target = path.resolve().as_uri() + ("?mode=ro" if readonly else "?mode=rwc")
    return sqlite3.connect(target, uri=True, timeout=30, isolation_level=None, check_same_thread=False)


def _table_names(conn: sqlite3.Connection) -> set[str]:
    """Names of the tables in the main database."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    return {r[0] for r in rows}


def _read_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The stored schema version; None for a database without any table (a new store)."""
    tables = _table_names(conn)
    if not tables:
        return None
    if "meta" not in tables:
        raise StoreError(f"{path} is an SQLite file but not a harness results store; {_MOVE_ASIDE}")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise StoreError(f"results store {path} has no valid schema_version; {_MOVE_ASIDE}") from None


def _check_version(version: int | None, conn: sqlite3.Connection, path: Path) -> None:
    """Refuse versions this harness does not know, and stores missing a table."""
    if version is None:
        return
    if version > SCHEMA_VERSION or version not in _MIGRATIONS and version != SCHEMA_VERSION:
        raise StoreError(
            f"results store {path} has schema version {version}, this harness reads "
            f"<= {SCHEMA_VERSION}; upgrade the harness or {_MOVE_ASIDE}"
        )
    missing = set(_TABLES) - _table_names(conn)
    if missing:
        raise StoreError(f"results store {path} lacks table(s) {sorted(missing)}; {_MOVE_ASIDE}")


def _validate_existing(path: Path) -> None:
    """Check an existing file read-only (header, integrity, version) without changing it."""
    if not path.is_file():
        raise StoreError(f"results store path {path} is not a regular file; {_MOVE_ASIDE}")
    try:
        if not _is_sqlite_file(path):
            raise StoreError(f"{path} is not an SQLite file; {_MOVE_ASIDE}")
        conn = _connect(path, readonly=True)
    except OSError as exc:
        raise StoreError(f"cannot read results store {path}: {exc.strerror or exc}") from None
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open results store {path}: {exc}") from None
    try:
        if not _integrity_ok(conn):
            raise StoreError(f"results store {path} fails PRAGMA integrity_check; {_MOVE_ASIDE}")
        _check_version(_read_version(conn, path), conn, path)
    finally:
        conn.close()


def _integrity_ok(conn: sqlite3.Connection) -> bool:
    """``PRAGMA integrity_check`` reports exactly 'ok' (an unreadable file is not ok)."""
    try:
        return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    except sqlite3.DatabaseError:
        return False


# ---- the store ------------------------------------------------------------------------
class Store:
    """A results store at an explicit path; use as a context manager or call :meth:`close`.

    Writes raise :class:`StoreError` on I/O problems (read-only file, disk full) and
    ``sqlite3.IntegrityError`` / ``ValueError`` on a malformed record (a bug in the caller).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        """Open (creating parents and the file unless ``readonly``), validate and migrate."""
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if readonly:
            self._conn = self._open_readonly()
        else:
            self._conn = self._open_writable()

    # -- opening ------------------------------------------------------------------------
    def _open_readonly(self) -> sqlite3.Connection:
        """Validate and open an existing store for reading (older versions are readable)."""
        if not self.path.exists():
            raise StoreError(f"no results store at {self.path}; run an experiment first or pass --store")
        _validate_existing(self.path)
        conn = self._wrap_open(lambda: _connect(self.path, readonly=True))
        if _read_version(conn, self.path) is None:
            conn.close()
            raise StoreError(f"results store {self.path} is empty (no tables); {_MOVE_ASIDE}")
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _open_writable(self) -> sqlite3.Connection:
        """Create parents, validate an existing file, then open read-write and set up."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create folder {self.path.parent} for the results store "
                             f"({exc.strerror or exc}); every part of the path must be a "
                             "writable folder") from None
        if self.path.exists():
            _validate_existing(self.path)
        conn = self._wrap_open(lambda: _connect(self.path, readonly=False))
        try:
            self._wrap_open(lambda: self._setup(conn))
        except BaseException:
            conn.close()
            raise
        return conn

    def _wrap_open(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn``, turning sqlite/OS errors into a StoreError that names the path."""
        try:
            return fn()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open results store {self.path} for writing: {exc}; "
                             "check the file and folder permissions") from None
        except OSError as exc:
            raise StoreError(f"cannot open results store {self.path}: {exc.strerror or exc}") from None

    def _setup(self, conn: sqlite3.Connection) -> None:
        """Pragmas, then create or migrate the schema in one write transaction."""
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _read_version(conn, self.path)
            _check_version(version, conn, self.path)
            if version is None:
                self._create(conn)
            elif version < SCHEMA_VERSION:
                self._migrate(conn, version)
            # A no-op write: fails now, not at the first trial, when the file is read-only.
            conn.execute("UPDATE meta SET value=value WHERE key='schema_version'")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        """Create the current schema (inside the caller's transaction)."""
        for stmt in SCHEMA_DDL:
            conn.execute(stmt)
        conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @staticmethod
    def _migrate(conn: sqlite3.Connection, version: int) -> None:
        """Step ``version`` up to SCHEMA_VERSION (inside the caller's transaction)."""
        while version < SCHEMA_VERSION:
            _MIGRATIONS[version](conn)
            version += 1
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))

    # -- plumbing -----------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (StoreError once closed)."""
        if self._conn is None:
            raise StoreError(f"results store {self.path} is closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all statements commit together or none do.

        Operational failures (locked, read-only, disk full) become StoreError; anything
        else raised inside (IntegrityError, ValueError) rolls back and propagates as is.
        """
        if self.readonly:
            raise StoreError(f"results store {self.path} was opened read-only")
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise StoreError(f"cannot write results store {self.path}: {exc}") from None

    def _frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run a SELECT into a DataFrame."""
        import pandas as pd

        with self._lock:
            return pd.read_sql_query(sql, self.conn, params=list(params))

    def _columns(self, table: str) -> list[str]:
        """Columns a table has in this file (an un-migrated read-only v1 lacks extra_json)."""
        with self._lock:
            return [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    # -- trials -------------------------------------------------------------------------
    def put_trial(self, rec: TrialRecord) -> None:
        """Insert or replace a trial and all its epoch rows, in one transaction."""
        values = _trial_values(rec)
        epoch_rows = [_epoch_values(rec.spec_hash, row) for row in rec.epochs_rows]
        cols = ", ".join(TRIAL_COLUMNS)
        marks = ", ".join("?" for _ in TRIAL_COLUMNS)
        updates = ", ".join(f"{c}=excluded.{c}" for c in TRIAL_COLUMNS[1:])
        epoch_cols = ", ".join(name for name, _ in _EPOCHS)
        epoch_marks = ", ".join("?" for _ in _EPOCHS)
        with self._transaction() as conn:
            conn.execute("DELETE FROM epochs WHERE spec_hash=?", (rec.spec_hash,))
            conn.execute(f"INSERT INTO trials ({cols}) VALUES ({marks}) "
                         f"ON CONFLICT(spec_hash) DO UPDATE SET {updates}", values)
            conn.executemany(f"INSERT INTO epochs ({epoch_cols}) VALUES ({epoch_marks})", epoch_rows)

    def get_trial(self, spec_hash: str) -> TrialRecord | None:
        """The stored trial with its epoch rows, or None."""
        with self._lock:
            cur = self.conn.execute("SELECT * FROM trials WHERE spec_hash=?", (spec_hash,))
            row = cur.fetchone()
            if row is None:
                return None
            stored = dict(zip([d[0] for d in cur.description], row))
            epochs = self.conn.execute(
                f"SELECT {', '.join(EPOCH_KEYS)} FROM epochs WHERE spec_hash=? ORDER BY epoch",
                (spec_hash,),
            ).fetchall()
        rec = TrialRecord(**{c: stored.get(c) for c in _RECORD_COLUMNS})
        rec.extra, rec.metrics = _extras_and_metrics(stored)
        rec.epochs_rows = [dict(zip(EPOCH_KEYS, e)) for e in epochs]
        return rec

    def done_hashes(self, hashes: Iterable[str] | None = None) -> set[str]:
        """Hashes stored as 'done' or 'diverged' (results, not to retry), within ``hashes``."""
        sql = "SELECT spec_hash FROM trials WHERE status IN (?, ?)"
        params: list[Any] = list(RESULT_STATUSES)
        if hashes is not None:
            sql += " AND spec_hash IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(_as_list(hashes)))
        with self._lock:
            return {r[0] for r in self.conn.execute(sql, params)}

    # -- runs ---------------------------------------------------------------------------
    def start_run(self, run_id: str, table_name: str | None, scale: str | None,
                  argv: str | Sequence[str] | None, git_commit: str | None) -> None:
        """Record that a driver run started now (a reused run_id is restarted)."""
        argv_text = argv if argv is None or isinstance(argv, str) else json.dumps(list(argv))
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, table_name, scale, started_at, argv, git_commit) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
                "table_name=excluded.table_name, scale=excluded.scale, started_at=excluded.started_at, "
                "argv=excluded.argv, git_commit=excluded.git_commit, finished_at=NULL, "
                "n_trials=NULL, n_done=NULL, n_failed=NULL, n_skipped=NULL",
                (run_id, table_name, scale, _now(), argv_text, git_commit),
            )

    def finish_run(self, run_id: str, n_trials: int, n_done: int, n_failed: int, n_skipped: int) -> None:
        """Record a run's end and its counts (ValueError for a run never started)."""
        counts = tuple(_plain(n) for n in (n_trials, n_done, n_failed, n_skipped))
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET finished_at=?, n_trials=?, n_done=?, n_failed=?, n_skipped=? WHERE run_id=?",
                (_now(), *counts, run_id),
            )
            if cur.rowcount != 1:
                raise ValueError(f"finish_run: no run {run_id!r} was started in {self.path}")

    # -- pandas views -------------------------------------------------------------------
    def trials_df(self, **filters: Any) -> pd.DataFrame:
        """Trials as a DataFrame, filtered by column (value or list; None = no filter).

        Usual filters: table_name, scale, status, spec_hash; any trials column works.
        ``recipe_json`` is decoded into a ``recipe`` column, ``extra_json`` into ``extra``.
        """
        available = self._columns("trials")
        where, params = _where(filters, available)
        df = self._frame(f"SELECT * FROM trials{where} ORDER BY rowid", params)
        df.insert(df.columns.get_loc("recipe_json") + 1, "recipe", df["recipe_json"].map(_decode_json))
        pairs = [_extras_and_metrics(row) for row in df.to_dict("records")]
        df["extra"] = [e for e, _ in pairs]
        df["metrics"] = [m for _, m in pairs]
        return df

    def epochs_df(self, spec_hashes: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Epoch rows, ordered by (spec_hash, epoch), optionally only for ``spec_hashes``."""
        where, params = _where({"spec_hash": spec_hashes}, [name for name, _ in _EPOCHS])
        return self._frame(f"SELECT * FROM epochs{where} ORDER BY spec_hash, epoch", params)

    def runs_df(self) -> pd.DataFrame:
        """Driver runs, oldest first."""
        return self._frame("SELECT * FROM runs ORDER BY started_at, rowid")

    # -- housekeeping -------------------------------------------------------------------
    def schema_version(self) -> int | None:
        """The version stored in meta."""
        with self._lock:
            return _read_version(self.conn, self.path)

    def integrity_ok(self) -> bool:
        """``PRAGMA integrity_check`` == 'ok'."""
        with self._lock:
            return _integrity_ok(self.conn)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"Store({str(self.path)!r}, {mode})"


# ---- record <-> row -------------------------------------------------------------------
def _trial_values(rec: TrialRecord) -> tuple[Any, ...]:
    """The trials row for ``rec`` in TRIAL_COLUMNS order (ValueError on a bad record)."""
    if not rec.spec_hash or not isinstance(rec.spec_hash, str):
        raise ValueError(f"TrialRecord needs a spec_hash string, got {rec.spec_hash!r}")
    if rec.status not in STATUSES:
        raise ValueError(f"TrialRecord {rec.spec_hash}: status must be one of {STATUSES}, got {rec.status!r}")
    values = [_plain(getattr(rec, c)) for c in _RECORD_COLUMNS]
    values[_RECORD_COLUMNS.index("recipe_json")] = _encode_json(rec.recipe_json)
    return (*values, json.dumps(rec.extra or {}, sort_keys=True, default=str),
            json.dumps(rec.metrics or {}, sort_keys=True, default=str))


def _extras_and_metrics(stored: dict[str, Any]) -> tuple[dict, dict]:
    """A trials row's (extras, metrics); a read-only un-migrated v2 row keeps its metrics
    among the extras, and they are split the way the v2 -> v3 migration splits them."""
    def decoded(key: str) -> dict:
        text = stored.get(key)
        return (_decode_json(text) or {}) if isinstance(text, str) else {}

    if "metrics_json" not in stored:
        return _split_metrics(decoded("extra_json"))
    return decoded("extra_json"), decoded("metrics_json")


def _epoch_values(spec_hash: str | None, row: dict) -> tuple[Any, ...]:
    """One epochs row (ValueError on an unknown key, which is most likely a typo)."""
    unknown_keys = set(row) - set(EPOCH_KEYS) - {"spec_hash"}
    if unknown_keys:
        raise ValueError(f"epoch row has unknown keys {sorted(unknown_keys)}; expected {EPOCH_KEYS}")
    return (spec_hash, *(_plain(row.get(k)) for k in EPOCH_KEYS))


def _where(filters: dict[str, Any], columns: Sequence[str]) -> tuple[str, list[Any]]:
    """A parameterised WHERE clause; column names are checked against ``columns``."""
    clauses: list[str] = []
    params: list[Any] = []
    for name, value in filters.items():
        if name not in columns:
            raise TypeError(f"unknown filter {name!r}; valid: {', '.join(columns)}")
        if value is None:
            continue
        if isinstance(value, (str, int, float)):
            clauses.append(f"{name} = ?")
            params.append(value)
        else:
            clauses.append(f"{name} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([_plain(v) for v in value]))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def load(path: str | Path, **filters: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read-only convenience: ``(trials, epochs)`` of the trials matching ``filters``."""
    with Store(path, readonly=True) as store:
        trials = store.trials_df(**filters)
        epochs = store.epochs_df(trials["spec_hash"].tolist())
    return trials, epochs
