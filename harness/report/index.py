"""reports/README.md: an index of every report under ``reports/<scale>/<table>.md``.

Each report's first line carries a JSON summary (see :mod:`harness.report.markdown`); a
markdown file without one is still listed, by its title. The index is rewritten whole,
atomically, after every report.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.report.tables import md_table

INDEX_NAME = "README.md"
_SUMMARY = re.compile(r"^<!--\s*harness-report\s+(\{.*\})\s*-->\s*$")


def read_summary(path: Path) -> dict[str, Any]:
    """The report's JSON summary, or a minimal one (title from the first heading)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {"table": path.stem, "scale": path.parent.name, "title": path.stem}
    lines = text.splitlines()
    if lines:
        m = _SUMMARY.match(lines[0])
        if m:
            try:
                return json.loads(m.group(1))
            except json.JSONDecodeError:
                pass
    title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), path.stem)
    return {"table": path.stem, "scale": path.parent.name, "title": title}


def _trials(s: dict[str, Any]) -> str:
    t = s.get("trials")
    if not isinstance(t, dict):
        return "—"
    extra = [f"{t[k]} {k}" for k in ("failed", "diverged", "missing") if t.get(k)]
    return f"{t.get('done', 0)}/{t.get('total', 0)} done" + (f" ({', '.join(extra)})" if extra else "")


def _verdicts(s: dict[str, Any]) -> str:
    v = s.get("verdicts")
    if not v:
        return "—"
    return ", ".join(f"{k}: {n}" for k, n in v.items())


def write_index(out_dir: str | Path) -> Path:
    """Rewrite ``out_dir/README.md`` from every ``out_dir/*/*.md`` found now."""
    root = Path(out_dir)
    reports = sorted(p for p in root.glob("*/*.md") if p.is_file() and not p.name.startswith("."))
    rows = []
    for p in reports:
        s = read_summary(p)
        rel = p.relative_to(root).as_posix()
        rows.append([f"[{s.get('table', p.stem)}]({rel})", s.get("scale", p.parent.name),
                     s.get("title", ""), _trials(s), s.get("headline", "—"), _verdicts(s)])
    lines = ["# Reports", "",
             "One report per table and scale, written by `python -m harness report TABLE --scale S` "
             "(and after every `python -m harness run`). Numbers: ours as mean ± 95% t-interval over "
             "seeds, the paper's beside them. Verdicts count the stacked rows' per-model top-1 deltas "
             "(reproduced / contradicted / no effect / undecided / differs / not run; a report "
             "written before these classes shows its own, e.g. 'within noise').", ""]
    if rows:
        lines.append(md_table(["report", "scale", "title", "trials", "headline (top-1)", "verdicts"], rows))
    else:
        lines.append("No reports yet.")
    return write_text_atomic(root / INDEX_NAME, "\n".join(lines) + "\n")
