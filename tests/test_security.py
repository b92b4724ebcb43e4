"""Security: untrusted files are refused without running code or changing them, Ray listens
only on loopback, and names that become paths cannot leave their folder.

Store migration and the store's own refusal tests live in tests/test_store.py.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from harness.checkpoint import CheckpointError, load_checkpoint, save_atomic
from harness.cli import main
from harness.errors import HarnessError
from harness.experiments import load_experiment

pytestmark = pytest.mark.usefixtures("ray_down_after_module")

RAN: list[str] = []  # filled if unpickling ever executes the payload below


def _record(what: str) -> str:
    RAN.append(what)
    return what


class Payload:
    """Unpickling this calls _record: proof that code ran, if it ever does."""

    def __reduce__(self):
        return (_record, ("payload executed",))


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


# ---- checkpoints --------------------------------------------------------------------------
def _real_checkpoint(path: Path) -> Path:
    model = torch.nn.Linear(8, 4)
    return save_atomic({"model": model.state_dict(), "epoch": 1, "history": [{"loss": 1.0}]}, path)


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "empty"])
def test_corrupt_or_truncated_checkpoint_is_one_line_error(tmp_path, damage):
    """A checkpoint of random bytes, cut in half, or empty raises CheckpointError with a
    one-line message naming the file (never a traceback from the zip/pickle layer)."""
    path = _real_checkpoint(tmp_path / "ckpt.pt")
    data = path.read_bytes()
    if damage == "truncated":
        blobs = [data[: len(data) // 2]]
    elif damage == "empty":
        blobs = [b""]
    else:  # seeded, so a failure replays; garbage after a pickle header reaches the unpickler
        rngs = [random.Random(seed) for seed in range(100)]
        blobs = [r.randbytes(len(data)) for r in rngs[:50]]
        blobs += [b"\x80\x02" + r.randbytes(len(data)) for r in rngs[50:]]
    for blob in blobs:
        path.write_bytes(blob)
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(path)
        msg = str(exc.value)
        assert "\n" not in msg and str(path) in msg


def test_truncated_checkpoint_stops_train_with_exit_2(tmp_path, capsys, monkeypatch):
    """``train --checkpoint-dir`` over a truncated ckpt.pt exits 2 with one line naming the
    file, and leaves the file as it was (no silent restart from scratch)."""
    monkeypatch.chdir(tmp_path)
    ckpt = _real_checkpoint(tmp_path / "ck" / "ckpt.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    before = ckpt.read_bytes()
    rc = main(["train", "--model", "resnet18", "--scale", "smoke", "--checkpoint-dir", str(tmp_path / "ck")])
    assert rc == 2
    assert str(ckpt) in _one_line_error(capsys)
    assert ckpt.read_bytes() == before


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    """A checkpoint that carries a pickled object (whose unpickling would call a function)
    is refused by load_checkpoint (weights_only=True), and the payload never runs."""
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": Payload()}, path)
    RAN.clear()
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "refused" in str(exc.value) and "\n" not in str(exc.value)
    assert RAN == []
    # control: the same file does run the payload when loaded without weights_only
    torch.load(path, weights_only=False)
    assert RAN == ["payload executed"]


# ---- results store ------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["run", "paper_table2", "--scale", "smoke"],
    ["list", "trials"],
    ["report", "paper_table2", "--scale", "smoke"],
])
def test_corrupt_store_exit_2_and_file_unchanged(tmp_path, capsys, monkeypatch, argv):
    """A store file of random bytes: run, list and report exit 2 with one line naming the
    file, and the file's bytes are unchanged (no repair, no overwrite, no -wal/-shm)."""
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "results" / "harness.sqlite"
    store.parent.mkdir()
    store.write_bytes(os.urandom(8192))
    before = _snapshot(tmp_path)
    rc = main([*argv, "--store", str(store)])
    assert rc == 2
    assert str(store) in _one_line_error(capsys)
    assert _snapshot(tmp_path) == before


def test_unwritable_results_folder_exit_2_nothing_written(tmp_path, capsys, monkeypatch):
    """A results folder that cannot be created (its parent is a regular file; root ignores
    chmod, so this stands in for a read-only folder): exit 2, one line, nothing written."""
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be\n")
    before = _snapshot(tmp_path)
    rc = main(["run", "paper_table2", "--scale", "smoke", "--store", str(blocker / "harness.sqlite")])
    assert rc == 2
    assert "results" in _one_line_error(capsys)
    assert _snapshot(tmp_path) == before


# ---- Ray on the network -------------------------------------------------------------------
@pytest.mark.slow
def test_ray_listens_only_on_loopback(mixed_ray_run):
    """While a run is live, every TCP socket in LISTEN state owned by this process or any of
    its descendants (GCS, raylet, agents, trial workers) is bound to 127.0.0.1 or ::1, and
    the dashboard web UI is off: Ray's head process runs only in its minimal, frontend-less
    mode (usage-stats module) and nothing listens on the dashboard port."""
    listeners = mixed_ray_run.listeners
    assert any("gcs_server" in ln.cmd for ln in listeners), listeners  # the check saw Ray
    assert any("raylet" in ln.cmd for ln in listeners), listeners
    exposed = [ln for ln in listeners if not ln.loopback]
    assert exposed == [], exposed
    dashboards = [c for c in mixed_ray_run.tree_cmds if "dashboard/dashboard.py" in c]
    assert all("--minimal" in c and "--disable-frontend" in c for c in dashboards), dashboards
    assert all(ln.port != 8265 and "dashboard.py" not in ln.cmd for ln in listeners), listeners


# ---- names that become paths --------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "paper_table6/../../x",
                                  "..", "~/x", "paper_table6\x00.yaml", "../missing.yaml"])
def test_table_names_cannot_reach_arbitrary_files(name, monkeypatch, tmp_path):
    """A TABLE argument is a known paper table or an existing .yaml/.toml file; anything else
    (traversal, absolute paths, NUL bytes, missing files) is a HarnessError."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HarnessError):
        load_experiment(name)


@pytest.mark.parametrize("bad", ["../../escaped", "/tmp/abs", "a/b", ".hidden", "x\\y", "", "a..b"])
def test_experiment_name_cannot_escape_reports_folder(tmp_path, capsys, monkeypatch, bad):
    """An experiment file's ``name`` becomes report and Ray folder names: a name with a path
    separator, a leading dot or '..' is refused (exit 2, one line), nothing is written."""
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"name: {bad!r}\nrows: [{{label: a}}]\ncolumns: [{{label: R, model: resnet18}}]\n")
    before = _snapshot(tmp_path)
    rc = main(["run", str(exp), "--scale", "smoke", "--store", str(tmp_path / "results" / "s.sqlite")])
    assert rc == 2
    assert "name" in _one_line_error(capsys)
    assert _snapshot(tmp_path) == before
    assert not (tmp_path.parent / "escaped.md").exists()
