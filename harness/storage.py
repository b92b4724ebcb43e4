"""Where a run keeps what its trials share across nodes (``--storage``, ``$HARNESS_STORAGE``).

A storage is a local folder (the default: the results folder beside the store, for one
machine), a path on a filesystem every node mounts, or any URI pyarrow's filesystems take:
``s3://bucket/prefix`` (with query options such as ``endpoint_override=HOST:PORT&scheme=http``
for S3-compatible servers), ``gs://bucket/prefix``, ``hdfs://...``, ``abfs://...``.
Credentials come from each node's standard environment (``AWS_ACCESS_KEY_ID`` ...,
``GOOGLE_APPLICATION_CREDENTIALS``, instance roles), never from the URI.

Layout under the root, keyed by spec hash so that a retry, a later run or a student on any
node finds what it needs:

  checkpoints/<hash>/ckpt.pt     the trial's checkpoint, every epoch (a teacher's or a
                                 backbone's final one is what its students read)
  checkpoints/<hash>/error.txt   the one-line error of its last failed attempt
  logs/<hash>.log                the trial's log, all attempts
  ray/                           Ray Tune's experiment state
  .harness-storage               local roots only: an id that tells a node it sees the
                                 driver's folder (not a same-named folder of its own)

The results store itself stays a SQLite file on the driver. pyarrow is imported only inside
the functions (it comes with Ray, and ``harness train`` runs without either).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.errors import HarnessError

STORAGE_ENV = "HARNESS_STORAGE"
MARKER = ".harness-storage"
PROBE_TIMEOUT_S = 30.0
SCHEMES = "a local path, file://, s3://, gs://, hdfs://, viewfs://, abfs://, abfss://"
_ROOT = str(Path(__file__).resolve().parents[1])  # the folder that holds the harness package
_PROBED: set[str] = set()  # roots probed by this process


@dataclass(frozen=True)
class Storage:
    """A storage root: an absolute local path, or ``scheme://netloc/path[?query]``."""

    root: str

    @classmethod
    def parse(cls, text: str) -> "Storage":
        """The storage a --storage value names; a malformed one is a one-line HarnessError."""
        text = (text or "").strip()
        if not text:
            raise HarnessError(f"bad --storage {text!r}; valid: {SCHEMES}")
        if text.startswith("file://"):
            text = urlsplit(text).path
        if "://" not in text:
            return cls(str(Path(text).expanduser().resolve()))
        parts = urlsplit(text)
        if not parts.scheme or not parts.netloc:
            raise HarnessError(f"bad --storage {text!r}; expected SCHEME://BUCKET/PREFIX ({SCHEMES})")
        if "@" in parts.netloc:
            raise HarnessError(f"bad --storage {_redact(text)!r}: credentials in the URI are not accepted; "
                               "set them in each node's environment (AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, ...)")
        return cls(urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, "")))

    @classmethod
    def local(cls, folder: str | Path) -> "Storage":
        return cls(str(Path(folder).resolve()))

    @property
    def is_local(self) -> bool:
        """A filesystem path (this machine's, or one every node mounts at the same place)."""
        return "://" not in self.root

    def uri(self, *parts: str) -> str:
        """The URI (or path) of ``parts`` below the root, query options kept."""
        if self.is_local:
            return os.path.join(self.root, *parts)
        s = urlsplit(self.root)
        return urlunsplit((s.scheme, s.netloc, "/".join([s.path.rstrip("/"), *parts]), s.query, ""))

    def checkpoint(self, spec_hash: str) -> str:
        return self.uri("checkpoints", spec_hash, "ckpt.pt")

    def error(self, spec_hash: str) -> str:
        return self.uri("checkpoints", spec_hash, "error.txt")

    def log(self, spec_hash: str) -> str:
        return self.uri("logs", f"{spec_hash}.log")

    def ray(self) -> str:
        return self.uri("ray")

    def marker(self) -> str | None:
        return self.uri(MARKER) if self.is_local else None

    def ensure_marker(self) -> str | None:
        """Local roots: the id in the root's marker file, written once; None for object stores."""
        if not self.is_local:
            return None
        path = Path(self.root, MARKER)
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{MARKER}.{uuid.uuid4().hex}.tmp")
            tmp.write_text(uuid.uuid4().hex + "\n")
            try:
                os.link(tmp, path)  # first writer wins; a concurrent driver reads its id
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            return path.read_text().strip()

    def __str__(self) -> str:
        return self.root


def _redact(uri: str) -> str:
    s = urlsplit(uri)
    return urlunsplit((s.scheme, s.netloc.rpartition("@")[2], s.path, s.query, ""))


# ---- any path or URI -------------------------------------------------------------------
def filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it) for a local path or any URI pyarrow takes."""
    import pyarrow.fs as pafs  # heavy optional dependency (comes with Ray)

    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def local_path(uri: str) -> str | None:
    """The filesystem path of ``uri`` when it is one (no copy needed), else None."""
    if "://" not in uri:
        return uri
    return urlsplit(uri).path if uri.startswith("file://") else None


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def read_text(uri: str) -> str | None:
    """A small text file's content, or None when it does not exist."""
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as fh:
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def download(uri: str, dest: Path) -> Path:
    """Copy ``uri`` to the local file ``dest`` (written next to it, then renamed)."""
    fs, path = filesystem(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        with fs.open_input_stream(path) as src, tmp.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def upload(src: Path, uri: str) -> None:
    """Copy the local file ``src`` to ``uri`` so that readers see the old or the new file,
    never part of one (an object store's PUT completes on close; a filesystem gets a
    temp file and a rename)."""
    fs, path = filesystem(uri)
    if local_path(uri) is not None:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            shutil.copyfile(src, tmp)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return
    with src.open("rb") as fh, fs.open_output_stream(path) as out:
        shutil.copyfileobj(fh, out, 1 << 20)


def write_text(uri: str, text: str) -> None:
    fs, path = filesystem(uri)
    if local_path(uri) is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(f".{Path(path).name}.{uuid.uuid4().hex}.part")
        tmp.write_text(text)
        tmp.replace(path)
        return
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def delete(uri: str) -> None:
    fs, path = filesystem(uri)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


# ---- the probe before any training ------------------------------------------------------
def probe(storage: Storage, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Write, read back and delete a small object under the root, in a child process (a
    filesystem that hangs, e.g. waiting for cloud credentials, cannot hang the driver).
    Unreachable or unwritable storage: one-line HarnessError naming the URI; nothing is
    left behind. Each root is probed once per process."""
    if storage.root in _PROBED:
        return
    code = (f"import sys; sys.path.insert(0, {_ROOT!r}); "
            "from harness.storage import probe_main; sys.exit(probe_main(sys.argv[1]))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, storage.root], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"storage {storage.root!r} did not answer within {timeout:.0f} s "
                           "(unreachable endpoint, or no credentials on this machine?)") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"error": (proc.stderr.strip().splitlines() or
                                                            [f"probe exited {proc.returncode}"])[-1]}
    if result.get("error"):
        raise HarnessError(f"storage {storage.root!r} is not usable: {result['error']}")
    _PROBED.add(storage.root)


def _absent(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.NotFound


def _drop_empty_prefix(uri: str) -> None:
    """An object store keeps an empty "directory" object where the probe's object was (pyarrow
    marks the parent of a deleted file); a prefix the probe found absent is left absent."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    if not fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True)):
        fs.delete_dir(path)


def probe_main(root: str) -> int:
    """The probe's child process: prints one JSON line, {} or {"error": "..."}. An alarm
    ends it even when the driver that waits for it is gone."""
    signal.alarm(int(PROBE_TIMEOUT_S) + 5)
    made: list[Path] = []
    fresh = False
    try:
        key = Storage(root).uri(f".harness-probe-{uuid.uuid4().hex}")
        if "://" not in root:
            folder = Path(root)
            while not folder.exists():
                made.append(folder)
                folder = folder.parent
            for d in reversed(made):
                d.mkdir()
        else:
            fresh = _absent(root)
        payload = f"harness storage probe {uuid.uuid4().hex}"
        write_text(key, payload)
        try:
            if read_text(key) != payload:
                raise OSError("the object read back differs from the one written")
        finally:
            delete(key)
            if "://" in root and fresh:
                _drop_empty_prefix(root)
        made.clear()  # usable: the folders stay
        print(json.dumps({}))
    except Exception as exc:  # noqa: BLE001 - every failure becomes the one line
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
        print(json.dumps({"error": f"{type(exc).__name__}: {first}"}))
    finally:
        for d in made:
            try:
                d.rmdir()
            except OSError:
                pass
    return 0
