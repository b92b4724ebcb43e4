"""The test cluster's audit hook (tests/cluster_site/sitecustomize.py) in one process: it
records what a worker on another machine could not do (read or write a file that exists in
the driver's folder, create one there) and ignores a read-only probe of a missing path, which
fails alike on one machine and on many."""
import json
import os
import subprocess
import sys
from pathlib import Path

SITE = Path(__file__).parent / "cluster_site"

PROBE = """
import os
for path, mode in [("missing.pyx", "rb"), ("present.txt", "r"), ("new.txt", "w")]:
    try:
        open(path, mode).close()
    except OSError:
        pass
try:
    os.open("missing2", os.O_RDONLY)
except OSError:
    pass
os.mkdir("made")
"""


def test_guard_records_reads_and_writes_but_not_failed_lookups(tmp_path):
    forbidden, log = tmp_path / "driver", tmp_path / "log"
    forbidden.mkdir()
    log.mkdir()
    (forbidden / "present.txt").write_text("x")
    env = {**os.environ, "PYTHONPATH": str(SITE), "CLUSTER_GUARD_FORBID": str(forbidden),
           "CLUSTER_GUARD_LOG": str(log), "CLUSTER_NODE": "nodeB"}
    subprocess.run([sys.executable, "-c", PROBE], cwd=forbidden, env=env, check=True)
    seen = sorted((r["event"], Path(r["path"]).name)
                  for r in (json.loads(p.read_text()) for p in log.glob("violation-*.json")))
    assert seen == [("open", "new.txt"), ("open", "present.txt"), ("os.mkdir", "made")]
