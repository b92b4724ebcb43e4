"""One trial attempt's files on whichever node Ray runs it: the worker side of --storage.

The driver names a trial's files as storage URIs (:class:`TrialFiles`, in the trial's Ray
config); no trial reads a path of the driver's. On a storage this node can open as a
filesystem (the default results folder, a shared filesystem) the trainer works in it
directly, as on one machine. On an object store the attempt works in a temp folder of its
own on this node: it fetches the trial's checkpoint (a retry resumes from it), its log and
its teacher or backbone before training, uploads the checkpoint and the log after every
saved epoch (``TrainOptions.after_checkpoint``, before any hook of the caller's), uploads
the log and any error at the end, and removes the folder.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from harness import storage as st
from harness.trial import TrainOptions


@dataclass(frozen=True)
class TrialFiles:
    """Where one trial's files live (storage URIs or shared paths), as the driver names them."""

    checkpoint: str
    error: str
    log: str
    teacher: str | None = None
    backbone: str | None = None
    marker: str | None = None  # local storages: the root's marker file and the id it holds
    marker_id: str | None = None

    @classmethod
    def of(cls, storage: st.Storage, spec_hash: str, teacher: str | None = None,
           backbone: str | None = None, marker_id: str | None = None) -> "TrialFiles":
        return cls(checkpoint=storage.checkpoint(spec_hash), error=storage.error(spec_hash),
                   log=storage.log(spec_hash), teacher=teacher, backbone=backbone,
                   marker=storage.marker(), marker_id=marker_id)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class StorageNotVisible(RuntimeError):
    """A local storage root that this node does not see (not a shared filesystem)."""


class Workspace:
    """The files of one attempt on this node; a context manager (see the module's doc)."""

    def __init__(self, files: TrialFiles, rank: int = 0) -> None:
        self.files, self.rank = files, rank
        self.remote = st.local_path(files.checkpoint) is None
        self.tmp: Path | None = None
        self._log: TextIO | None = None

    # ---- set-up and tear-down ------------------------------------------------------------
    def __enter__(self) -> "Workspace":
        if not self.remote:
            self._check_visible()
            self.log_path = Path(self.files.log)  # every rank appends, as on one machine
            self.ckpt_dir = Path(self.files.checkpoint).parent
            self.teacher = self.files.teacher and self._fetch(self.files.teacher, "teacher.pt")
            self.backbone = self.files.backbone and self._fetch(self.files.backbone, "backbone.pt")
        else:
            self.tmp = Path(tempfile.mkdtemp(prefix="harness-trial-"))
            self.log_path = self.tmp / "trial.log"
            self.ckpt_dir = self.tmp / "ckpt"
            self.ckpt_dir.mkdir()
            if self.rank == 0 and st.exists(self.files.log):
                st.download(self.files.log, self.log_path)  # earlier attempts' lines
            if st.exists(self.files.checkpoint):
                st.download(self.files.checkpoint, self.ckpt_dir / "ckpt.pt")  # resume
            self.teacher = self.files.teacher and self._fetch(self.files.teacher, "teacher.pt")
            self.backbone = self.files.backbone and self._fetch(self.files.backbone, "backbone.pt")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a")
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._log:
                self._log.close()
            self._push_log()
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def _check_visible(self) -> None:
        """A local storage root must be the driver's own folder (seen through a shared
        filesystem on other nodes), not a same-named local folder or none at all."""
        if not self.files.marker:
            return
        try:
            seen = Path(self.files.marker).read_text().strip()
        except OSError:
            seen = None
        if seen != self.files.marker_id:
            root = os.path.dirname(self.files.marker)
            raise StorageNotVisible(
                f"storage {root!r} is not the driver's folder on node {socket.gethostname()}: on a "
                "cluster whose nodes share no filesystem pass --storage s3://BUCKET/PREFIX (or a "
                "shared filesystem path)")

    def _fetch(self, uri: str, name: str) -> str:
        """A checkpoint this trial reads (teacher, backbone) as a local path on this node."""
        path = st.local_path(uri)
        if path is not None:
            return path
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix="harness-trial-"))
        return str(st.download(uri, self.tmp / name))

    # ---- during the attempt --------------------------------------------------------------
    def log(self, msg: str) -> None:
        assert self._log is not None
        self._log.write(msg + "\n")
        self._log.flush()

    def options(self, opts: TrainOptions) -> TrainOptions:
        """The trainer's options with this node's paths, and the upload after each epoch."""
        return dataclasses.replace(opts, checkpoint_dir=str(self.ckpt_dir), teacher_ckpt=self.teacher or None,
                                   backbone_ckpt=self.backbone or None,
                                   after_checkpoint=self._after_checkpoint(opts.after_checkpoint))

    def _after_checkpoint(self, then: Callable[[dict[str, Any]], None] | None):
        if not self.remote:
            return then

        def after(row: dict[str, Any]) -> None:
            st.upload(self.ckpt_dir / "ckpt.pt", self.files.checkpoint)  # stored before anything else
            self._push_log()
            if then:
                then(row)

        return after

    def clear_error(self) -> None:
        """A message from an earlier attempt is stale."""
        if self.remote:
            st.delete(self.files.error)
        else:
            Path(self.files.error).unlink(missing_ok=True)

    def record_error(self, msg: str) -> None:
        st.write_text(self.files.error, msg)

    def _push_log(self) -> None:
        if self.remote and self.log_path.exists():
            key = self.files.log if self.rank == 0 else f"{self.files.log}.rank{self.rank}"
            st.upload(self.log_path, key)
