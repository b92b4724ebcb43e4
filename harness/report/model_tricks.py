"""The report's "Model-level tricks" section: what zero-gamma, no bias decay and the ResNet
tweaks did to each external model (``timm:NAME``, ``torchvision:NAME``) of the table.

Read from the trials' stored ``metrics["model_tricks"]`` (written by
``harness.tasks.model_tricks``), so it says what the trained networks really got; the
harness's own models get no section (every trick is defined for them, Sec 3.1 and 4).
"""
from __future__ import annotations

from harness.models.external import is_external
from harness.report.tables import ReportData

INTRO = ("Sec 3.1's zero-gamma and no bias decay apply where they are defined for a model: "
         "gamma = 0 in each BN that ends a residual branch (found in the model's torch.fx graph), "
         "weight decay 0 on its 1-D parameters. Sec 4's ResNet-B/C/D are the harness's own ResNets; "
         "another library's model is built as that library defines it. Per model, what its "
         "stored trials record (`metrics.model_tricks`):")


def model_trick_notes(data: ReportData) -> dict[str, dict[str, list[str]]]:
    """External model -> trick -> the distinct notes its stored trials carry, in plan order."""
    out: dict[str, dict[str, list[str]]] = {}
    for cell in data.cells.values():
        for spec, rec in zip(cell.specs, cell.records):
            if not is_external(spec.model):
                continue
            per_trick = out.setdefault(spec.model, {})
            notes = ((rec.metrics or {}).get("model_tricks") or {}) if rec is not None else {}
            for trick, note in notes.items():
                seen = per_trick.setdefault(trick, [])
                if note not in seen:
                    seen.append(note)
    return out


def model_tricks_section(data: ReportData) -> list[str]:
    """Markdown lines of the section; none when the table has no external model."""
    notes = model_trick_notes(data)
    if not notes:
        return []
    lines = ["## Model-level tricks on external models", "", INTRO, ""]
    for model, per_trick in notes.items():
        if not per_trick:
            lines.append(f"- `{model}`: no stored trial yet")
            continue
        lines.append(f"- `{model}`" + (f" ({'; '.join(per_trick.pop('library'))})" if "library" in per_trick else ""))
        lines += [f"  - {trick}: {' / '.join(n)}" for trick, n in per_trick.items()]
    return lines + [""]
