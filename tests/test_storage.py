"""harness.storage and harness.workspace without Ray: URIs, the probe before training (a
real S3-compatible server on loopback: moto), and one trial attempt's files on a node
(fetch, resume, upload after each epoch, teachers, the local-folder check)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import chdir, run_cli, stderr_lines
from harness import storage as st
from harness.cli import build_parser
from harness.errors import HarnessError
from harness.orchestrator import dependency_checkpoint
from harness.records import trial_record
from harness.recipe import named_recipe
from harness.spec import TrialSpec
from harness.store import Store
from harness.trial import TrainOptions
from harness.workspace import StorageNotVisible, TrialFiles, Workspace
from ray_nodes import S3_ENV, MotoServer, free_port

SPEC = TrialSpec(model="resnet18", recipe=named_recipe("baseline"), scale="smoke", seed=0)


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(monkeypatch):
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)


# ---- URIs -------------------------------------------------------------------------------
def test_parse_keeps_query_options_and_resolves_local_paths(tmp_path):
    s = st.Storage.parse("s3://bkt/some/prefix/?endpoint_override=127.0.0.1:9000&scheme=http")
    assert not s.is_local
    assert s.checkpoint("abc") == "s3://bkt/some/prefix/checkpoints/abc/ckpt.pt?endpoint_override=127.0.0.1:9000&scheme=http"
    assert s.ray() == "s3://bkt/some/prefix/ray?endpoint_override=127.0.0.1:9000&scheme=http"
    with chdir(tmp_path):
        local = st.Storage.parse("shared/runs")
    assert local.is_local and local.root == str(tmp_path / "shared" / "runs")
    assert local.log("abc") == str(tmp_path / "shared" / "runs" / "logs" / "abc.log")
    assert st.Storage.parse(f"file://{tmp_path}").root == str(tmp_path)


@pytest.mark.parametrize("bad, says", [("", "valid:"), ("s3://", "expected SCHEME://BUCKET/PREFIX"),
                                       ("s3://AKIA:secret@bkt/p", "credentials in the URI")])
def test_bad_storage_values_are_one_line_errors(bad, says):
    with pytest.raises(HarnessError) as exc:
        st.Storage.parse(bad)
    assert says in str(exc.value) and "\n" not in str(exc.value)
    assert "secret" not in str(exc.value)


def test_storage_flag_defaults_to_the_environment_variable(monkeypatch):
    monkeypatch.setenv(st.STORAGE_ENV, "s3://from-env/p")
    for cmd in (["run", "paper_table2"], ["regress", "paper_table2"]):
        assert build_parser().parse_args(cmd).storage == "s3://from-env/p"
    assert build_parser().parse_args(["run", "paper_table2", "--storage", "/x"]).storage == "/x"


# ---- the probe --------------------------------------------------------------------------
def test_probe_local_folder_writes_nothing_it_keeps(tmp_path):
    target = tmp_path / "a" / "b"
    st.probe(st.Storage.local(target))
    assert target.is_dir() and list(target.iterdir()) == []


def test_probe_unwritable_local_folder_names_it_and_creates_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(HarnessError) as exc:
        st.probe(st.Storage.local(blocker / "x" / "y"))
    assert str(blocker / "x" / "y") in str(exc.value) and "\n" not in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_probe_s3_leaves_the_bucket_as_it_was(moto, s3_env):
    before = moto.keys()
    st.probe(st.Storage.parse(moto.uri("probe-ok")))
    assert moto.keys() == before


def test_probe_missing_bucket_names_uri_and_bucket(moto, s3_env):
    uri = moto.uri("p").replace(f"s3://{moto.bucket}/", "s3://no-such-bucket/")
    with pytest.raises(HarnessError) as exc:
        st.probe(st.Storage.parse(uri))
    assert uri in str(exc.value) and "no-such-bucket" in str(exc.value)


def test_run_with_unreachable_storage_exit_2_one_line_nothing_written(tmp_path):
    """``run --storage s3://...`` whose endpoint nobody listens on: exit 2, one line naming
    the URI, before any store, report or Ray (the Done-when check)."""
    uri = f"s3://bkt/p?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    proc = run_cli("run", "paper_table2", "--scale", "smoke", "--storage", uri, "--store",
                   str(tmp_path / "results" / "h.sqlite"), cwd=tmp_path, env=_cli_env(tmp_path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1 and repr(uri) in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def _cli_env(tmp_path: Path) -> dict[str, str]:
    from ray_nodes import base_env

    (tmp_path / "home").mkdir(exist_ok=True)
    return base_env(**S3_ENV, HOME=str(tmp_path / "home"))


# ---- one attempt's files on a node ------------------------------------------------------------
def _ckpt(path: Path, epoch: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "epoch": epoch}, path)


def test_workspace_on_object_storage_fetches_resumes_and_uploads(moto, s3_env):
    """First attempt: nothing stored; its epoch hook uploads the checkpoint before the
    caller's hook runs, and the log at the end. Second attempt (another node, say): it
    starts from the stored checkpoint and log, reads the teacher through a local copy, and
    its temp folder is gone afterwards."""
    storage = st.Storage.parse(moto.uri("ws"))
    teacher_uri = storage.checkpoint("teacher")
    local_teacher = Path(moto.log.name).parent / "teacher.pt"
    _ckpt(local_teacher, 9)
    st.upload(local_teacher, teacher_uri)
    files = TrialFiles.of(storage, SPEC.hash, teacher=teacher_uri)
    seen = []

    def caller_hook(row):
        seen.append((row["epoch"], st.exists(files.checkpoint)))

    with Workspace(files) as ws:
        opts = ws.options(TrainOptions(after_checkpoint=caller_hook))
        assert not (Path(opts.checkpoint_dir) / "ckpt.pt").exists()
        assert torch.load(opts.teacher_ckpt)["epoch"] == 9 and opts.teacher_ckpt != teacher_uri
        ws.log("attempt 1")
        _ckpt(Path(opts.checkpoint_dir) / "ckpt.pt", 1)
        opts.after_checkpoint({"epoch": 1})
        tmp = ws.tmp
    assert seen == [(1, True)] and not tmp.exists()
    assert st.read_text(files.log) == "attempt 1\n"

    with Workspace(files) as ws:
        opts = ws.options(TrainOptions())
        assert torch.load(Path(opts.checkpoint_dir) / "ckpt.pt")["epoch"] == 1  # resumes
        ws.log("attempt 2")
        ws.record_error("ValueError: boom")
    assert st.read_text(files.log) == "attempt 1\nattempt 2\n"
    assert st.read_text(files.error) == "ValueError: boom"


def test_workspace_on_a_local_root_it_does_not_see_refuses(tmp_path):
    """A local storage whose marker this node does not find (another machine's folder of
    the same name, or none): the attempt fails with one line telling to use --storage."""
    storage = st.Storage.local(tmp_path / "results")
    marker = storage.ensure_marker()
    assert storage.ensure_marker() == marker  # written once
    ok = TrialFiles.of(storage, SPEC.hash, marker_id=marker)
    with Workspace(ok) as ws:
        assert ws.options(TrainOptions()).checkpoint_dir \
            == str(tmp_path / "results" / "checkpoints" / SPEC.hash)
    with pytest.raises(StorageNotVisible) as exc:
        with Workspace(TrialFiles.of(storage, SPEC.hash, marker_id="another-driver")):
            pass
    assert "--storage s3://" in str(exc.value) and "\n" not in str(exc.value)


def test_dependency_stored_by_a_local_run_is_copied_into_object_storage(moto, s3_env, tmp_path):
    """A teacher trained earlier with the default (local) storage: its record names a driver
    path; a run with --storage s3://... copies it into the bucket and hands the students
    the bucket's URI, never the driver path."""
    local = tmp_path / "results" / "checkpoints" / SPEC.hash / "ckpt.pt"
    _ckpt(local, 3)
    with Store(str(tmp_path / "results" / "h.sqlite")) as store:
        store.put_trial(trial_record(SPEC, "r1", {"status": "done", "checkpoint": str(local)},
                                     started_at="2026-01-01T00:00:00+00:00", git_commit="x"))
        storage = st.Storage.parse(moto.uri("dep"))
        uri = dependency_checkpoint(store, storage, SPEC, "teacher")
        assert uri == storage.checkpoint(SPEC.hash)
        assert f"dep/checkpoints/{SPEC.hash}/ckpt.pt" in moto.keys("dep/")
        with pytest.raises(HarnessError) as exc:
            other = TrialSpec(model="resnet18", recipe=named_recipe("baseline"), scale="smoke", seed=1)
            dependency_checkpoint(store, storage, other, "teacher")
        assert "not trained" in str(exc.value)
