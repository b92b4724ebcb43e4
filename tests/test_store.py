"""Tests for the SQLite results store (harness/store.py)."""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.store import (
    EPOCH_KEYS,
    SCHEMA_VERSION,
    TRIAL_COLUMNS,
    Store,
    StoreError,
    TrialRecord,
    load,
)


def _epochs(n: int, base: float = 0.0) -> list[dict]:
    """``n`` complete epoch rows."""
    return [
        {"epoch": e, "loss": 2.0 - e * 0.1 + base, "lr": 0.1 / (e + 1), "top1": 0.5 + e * 0.01,
         "top5": 0.8 + e * 0.01, "img_per_s": 1000.0 + e, "epoch_s": 1.5}
        for e in range(n)
    ]


def _rec(spec_hash: str = "h1", status: str = "done", n_epochs: int = 3, **kw) -> TrialRecord:
    """A plausible finished trial."""
    base = dict(
        spec_hash=spec_hash, run_id="r1", table_name="table5", row_label="ResNet-50",
        column_label="top1", model="resnet50", recipe_json=json.dumps({"lr": 0.1, "epochs": 3}),
        scale="tiny", seed=0, data="fashion_mnist", status=status, top1=0.61, top5=0.92,
        train_img_per_s=1234.5, epoch_s=1.5, wall_s=5.0, epochs=n_epochs, device="cpu",
        precision="fp32", torch_version="2.9", torchvision_version="0.24", ray_version=None,
        git_commit="abc", dataset_fingerprint="fp", started_at="2024-01-01T00:00:00+00:00",
        finished_at="2024-01-01T00:00:05+00:00", error=None, checkpoint=None, teacher_hash=None,
        params=25_000_000, macs=4_100_000_000, epochs_rows=_epochs(n_epochs), extra={"note": "x"},
    )
    base.update(kw)
    return TrialRecord(**base)


_V1_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE trials (
  spec_hash TEXT PRIMARY KEY, run_id TEXT, table_name TEXT, row_label TEXT, column_label TEXT,
  model TEXT, recipe_json TEXT, scale TEXT, seed INTEGER, data TEXT,
  status TEXT CHECK(status IN ('done','failed','diverged')), top1 REAL, top5 REAL,
  train_img_per_s REAL, epoch_s REAL, wall_s REAL, epochs INTEGER, device TEXT, precision TEXT,
  torch_version TEXT, torchvision_version TEXT, ray_version TEXT, git_commit TEXT,
  dataset_fingerprint TEXT, started_at TEXT, finished_at TEXT, error TEXT, checkpoint TEXT,
  teacher_hash TEXT, params INTEGER, macs INTEGER);
CREATE TABLE epochs (
  spec_hash TEXT REFERENCES trials, epoch INTEGER, loss REAL, lr REAL, top1 REAL, top5 REAL,
  img_per_s REAL, epoch_s REAL, PRIMARY KEY(spec_hash, epoch));
CREATE TABLE runs (
  run_id TEXT PRIMARY KEY, table_name TEXT, scale TEXT, started_at TEXT, finished_at TEXT,
  argv TEXT, git_commit TEXT, n_trials INTEGER, n_done INTEGER, n_failed INTEGER,
  n_skipped INTEGER);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO trials (spec_hash, table_name, scale, status, top1, recipe_json)
  VALUES ('old1', 'table5', 'tiny', 'done', 0.5, '{"lr": 0.1}');
INSERT INTO epochs (spec_hash, epoch, loss) VALUES ('old1', 0, 1.25);
"""


def _make_v1(path: Path) -> None:
    """Write a version-1 store with one trial, using raw SQL only."""
    conn = sqlite3.connect(path)
    conn.executescript(_V1_SQL)
    conn.commit()
    conn.close()


@pytest.fixture
def store(tmp_path: Path):
    """A fresh writable store in a temporary folder."""
    with Store(tmp_path / "results" / "harness.sqlite") as s:
        yield s


def test_record_fields_match_trials_columns():
    """TrialRecord carries every trials column except the JSON ones, plus epochs_rows/extra/metrics."""
    names = [f.name for f in dataclasses.fields(TrialRecord)]
    assert names[:-3] + ["extra_json", "metrics_json"] == list(TRIAL_COLUMNS)
    assert names[-3:] == ["epochs_rows", "extra", "metrics"]
    assert TrialRecord().status is None  # everything has a default


def test_round_trip_trial_with_epochs(store: Store):
    """A trial and its epoch rows read back exactly as written."""
    rec = _rec()
    store.put_trial(rec)
    got = store.get_trial("h1")
    assert got == rec
    assert got.recipe() == {"lr": 0.1, "epochs": 3}
    assert store.get_trial("missing") is None


def test_creates_parent_folders_and_wal(tmp_path: Path):
    """Parents are created, the file is in WAL mode and foreign keys are on."""
    path = tmp_path / "a" / "b" / "store.sqlite"
    with Store(path) as s:
        assert path.is_file()
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_upsert_replaces_trial_and_epoch_rows(store: Store):
    """Re-putting a failed trial replaces its row and all of its old epoch rows."""
    store.put_trial(_rec(status="failed", n_epochs=5, top1=None, error="OOM"))
    assert len(store.epochs_df("h1")) == 5
    store.put_trial(_rec(status="done", n_epochs=2, top1=0.7))
    got = store.get_trial("h1")
    assert (got.status, got.top1, got.error) == ("done", 0.7, None)
    ep = store.epochs_df("h1")
    assert ep["epoch"].tolist() == [0, 1]
    assert len(store.trials_df()) == 1


def test_done_hashes(store: Store):
    """'done' and 'diverged' count as results; 'failed' is to be retried; filter works."""
    store.put_trial(_rec("a", "done"))
    store.put_trial(_rec("b", "failed"))
    store.put_trial(_rec("c", "diverged"))
    assert store.done_hashes() == {"a", "c"}
    assert store.done_hashes(["a", "b", "zzz"]) == {"a"}
    assert store.done_hashes(iter(["c"])) == {"c"}
    assert store.done_hashes([]) == set()


def test_pandas_views(store: Store):
    """trials_df decodes recipes and filters; epochs_df and runs_df list what was stored."""
    store.start_run("r1", "table5", "tiny", ["harness", "run", "table5"], "abc")
    store.put_trial(_rec("a", table_name="table5", scale="tiny"))
    store.put_trial(_rec("b", table_name="table6", scale="tiny", status="failed"))
    store.put_trial(_rec("c", table_name="table5", scale="small"))
    store.finish_run("r1", n_trials=3, n_done=2, n_failed=1, n_skipped=0)

    df = store.trials_df()
    assert list(df["spec_hash"]) == ["a", "b", "c"]
    assert df.loc[0, "recipe"] == {"lr": 0.1, "epochs": 3}
    assert df.loc[0, "extra"] == {"note": "x"}
    assert set(TRIAL_COLUMNS) <= set(df.columns)
    assert list(store.trials_df(table_name="table5", scale="tiny")["spec_hash"]) == ["a"]
    assert list(store.trials_df(status="done")["spec_hash"]) == ["a", "c"]
    assert list(store.trials_df(spec_hash=["b", "c"])["spec_hash"]) == ["b", "c"]
    assert list(store.trials_df(scale=None)["spec_hash"]) == ["a", "b", "c"]
    assert store.trials_df(table_name="nope").empty
    with pytest.raises(TypeError, match="unknown filter"):
        store.trials_df(tabel_name="table5")

    ep = store.epochs_df(["a", "c"])
    assert set(ep["spec_hash"]) == {"a", "c"} and len(ep) == 6
    assert list(ep.columns) == ["spec_hash", *EPOCH_KEYS]
    assert len(store.epochs_df()) == 9

    runs = store.runs_df()
    assert runs.loc[0, "run_id"] == "r1"
    assert json.loads(runs.loc[0, "argv"]) == ["harness", "run", "table5"]
    assert (runs.loc[0, "n_done"], runs.loc[0, "n_failed"]) == (2, 1)
    assert runs.loc[0, "finished_at"] is not None
    with pytest.raises(ValueError, match="no run"):
        store.finish_run("nope", 0, 0, 0, 0)


def test_load_is_read_only(tmp_path: Path):
    """load() returns (trials, epochs) for the filter; a read-only Store refuses writes."""
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.put_trial(_rec("a", scale="tiny"))
        s.put_trial(_rec("b", scale="small"))
    trials, epochs = load(path, scale="tiny")
    assert list(trials["spec_hash"]) == ["a"]
    assert set(epochs["spec_hash"]) == {"a"}
    with Store(path, readonly=True) as ro:
        with pytest.raises(StoreError, match="read-only"):
            ro.put_trial(_rec("c"))
    with pytest.raises(StoreError, match="no results store"):
        load(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


def test_schema_version_stored(store: Store):
    """meta holds the current schema_version."""
    row = store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert int(row[0]) == SCHEMA_VERSION == 4
    assert store.schema_version() == SCHEMA_VERSION


def test_v1_store_is_migrated_keeping_rows(tmp_path: Path):
    """Opening a v1 store adds extra_json and metrics_json, bumps the version and keeps its
    trial and epochs."""
    path = tmp_path / "old.sqlite"
    _make_v1(path)
    with Store(path, readonly=True) as ro:  # readable before migration, not changed
        assert ro.schema_version() == 1
        assert ro.trials_df().loc[0, "extra"] == {}
    with Store(path) as s:
        assert s.schema_version() == 4
        cols = [r[1] for r in s.conn.execute("PRAGMA table_info(trials)")]
        assert cols == list(TRIAL_COLUMNS)
        old = s.get_trial("old1")
        assert (old.status, old.top1, old.extra) == ("done", 0.5, {})
        assert old.epochs_rows[0]["loss"] == 1.25
        s.put_trial(_rec("new", extra={"k": 1}))
        assert s.get_trial("new").extra == {"k": 1}
        assert s.integrity_ok()


def test_v2_store_moves_transfer_metrics_out_of_extras(tmp_path: Path):
    """A store written by main f0e31ab (v2: mAP/mIoU kept among the extras) opens: read-only
    it already reads them as metrics; writable it is migrated to v3 with the same split."""
    path = tmp_path / "v2.sqlite"
    _make_v1(path)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE trials ADD COLUMN extra_json TEXT")
    conn.execute("UPDATE trials SET extra_json=? WHERE spec_hash='old1'",
                 ('{"map": 41.5, "miou": 30.25, "node": "vm", "workers": 1}',))
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with Store(path, readonly=True) as ro:
        assert ro.schema_version() == 2
        rec = ro.get_trial("old1")
        assert (rec.metrics, rec.extra) == ({"map": 41.5, "miou": 30.25}, {"node": "vm", "workers": 1})
    with Store(path) as s:
        assert s.schema_version() == 4
        rec = s.get_trial("old1")
        assert (rec.metrics, rec.extra) == ({"map": 41.5, "miou": 30.25}, {"node": "vm", "workers": 1})
        df = s.trials_df()
        assert df.loc[0, "metrics"] == {"map": 41.5, "miou": 30.25}
        raw = s.conn.execute("SELECT extra_json, metrics_json FROM trials").fetchone()
        assert json.loads(raw[0]) == {"node": "vm", "workers": 1}
        assert json.loads(raw[1]) == {"map": 41.5, "miou": 30.25}


def test_failed_migration_leaves_v1_untouched(tmp_path: Path, monkeypatch):
    """A migration step that fails half-way is rolled back: the store stays at version 1."""
    import harness.store as store_mod

    def broken(conn):
        store_mod._migrate_1_to_2(conn)
        raise RuntimeError("boom")

    path = tmp_path / "old.sqlite"
    _make_v1(path)
    monkeypatch.setitem(store_mod._MIGRATIONS, 1, broken)
    with pytest.raises(RuntimeError, match="boom"):
        Store(path)
    conn = sqlite3.connect(path)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(trials)")]
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    n = conn.execute("SELECT count(*) FROM trials").fetchone()[0]
    conn.close()
    assert "extra_json" not in cols and version == "1" and n == 1


def test_newer_version_refused(tmp_path: Path):
    """A store written by a newer harness (version 99) raises StoreError, unchanged."""
    path = tmp_path / "future.sqlite"
    with Store(path) as s:
        s.put_trial(_rec())
        s.conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"schema version 99.*nothing was changed") as err:
            Store(path, readonly=readonly)
        assert str(path) in str(err.value)
    assert isinstance(err.value, HarnessError)
    assert path.read_bytes() == before


def test_garbage_file_refused_and_untouched(tmp_path: Path):
    """A file of random bytes raises StoreError naming it, and its bytes stay the same."""
    path = tmp_path / "harness.sqlite"
    data = os.urandom(8192)
    path.write_bytes(data)
    for readonly in (False, True):
        with pytest.raises(StoreError) as err:
            Store(path, readonly=readonly)
        msg = str(err.value)
        assert str(path) in msg and "move it aside" in msg and "\n" not in msg
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["harness.sqlite"]


def test_corrupt_sqlite_file_refused_and_untouched(tmp_path: Path):
    """A file with a valid SQLite header but damaged pages fails the integrity check."""
    path = tmp_path / "harness.sqlite"
    with Store(path) as s:
        for i in range(50):
            s.put_trial(_rec(f"h{i}", error="x" * 500))
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        s.conn.execute("PRAGMA journal_mode=DELETE")
    raw = bytearray(path.read_bytes())
    raw[4096 * 2: 4096 * 4] = os.urandom(4096 * 2)  # smash pages 3-4, keep the header
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=str(path)):
        Store(path)
    assert path.read_bytes() == bytes(raw)


def test_foreign_sqlite_file_refused(tmp_path: Path):
    """An SQLite file of some other program (tables, no meta) is not adopted."""
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE stuff (x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a harness results store"):
        Store(path)
    assert path.read_bytes() == before


def test_interrupted_put_trial_leaves_nothing(store: Store):
    """An epoch row breaking a constraint mid-transaction rolls back the trial row too."""
    bad = _rec("h1")
    bad.epochs_rows = _epochs(3) + [dict(_epochs(1)[0])]  # epoch 0 twice: PRIMARY KEY clash
    with pytest.raises(sqlite3.IntegrityError):
        store.put_trial(bad)
    assert store.get_trial("h1") is None
    assert store.trials_df().empty and store.epochs_df().empty

    store.put_trial(_rec("h2", status="failed"))  # an existing row survives a failed rerun
    bad.spec_hash = "h2"
    with pytest.raises(sqlite3.IntegrityError):
        store.put_trial(bad)
    kept = store.get_trial("h2")
    assert kept.status == "failed" and len(kept.epochs_rows) == 3
    assert not store.conn.in_transaction


def test_bad_records_rejected_before_writing(store: Store):
    """Missing spec_hash, unknown status or an unknown epoch key raise ValueError."""
    with pytest.raises(ValueError, match="spec_hash"):
        store.put_trial(TrialRecord(status="done"))
    with pytest.raises(ValueError, match="status"):
        store.put_trial(_rec(status="ok"))
    with pytest.raises(ValueError, match="unknown keys"):
        store.put_trial(_rec(epochs_rows=[{"epoch": 0, "acc": 0.5}]))
    assert store.trials_df().empty


# Permission bits (an unwritable folder or file) are tested in tests/test_store_permissions.py,
# as root too: the check runs in a child that dropped root's privileges.


def test_parent_is_a_file_refused(tmp_path: Path):
    """A path whose parent is a regular file cannot be created: StoreError naming it."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("hello")
    with pytest.raises(StoreError, match=str(blocker)):
        Store(blocker / "sub" / "harness.sqlite")
    assert blocker.read_text() == "hello"


def test_path_is_a_directory_refused(tmp_path: Path):
    """A directory at the store path is refused rather than written into."""
    with pytest.raises(StoreError, match="not a regular file"):
        Store(tmp_path)


def test_integrity_ok_on_fresh_store(store: Store):
    """A new store passes PRAGMA integrity_check."""
    assert store.integrity_ok()


def test_numpy_scalars_and_reopen(tmp_path: Path):
    """numpy scalars are stored as plain numbers; data survive close and reopen."""
    np = pytest.importorskip("numpy")
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.put_trial(_rec(seed=np.int64(3), top1=np.float32(0.5),
                         epochs_rows=[{"epoch": np.int64(0), "loss": np.float64(1.0)}]))
    with Store(path) as s:
        got = s.get_trial("h1")
    assert got.seed == 3 and isinstance(got.seed, int)
    assert got.top1 == 0.5
    assert got.epochs_rows == [{"epoch": 0, "loss": 1.0, **{k: None for k in EPOCH_KEYS[2:]}}]
