"""Paper-style reports: ``reports/<scale>/<table>.md`` with figures, and ``reports/README.md``.

    from harness.report import write_report
    write_report(exp, scale, "results/harness.sqlite", seeds=[0, 1], out_dir="reports")

The report's trials are the experiment's plan (``make_plan``) looked up in the store by
spec hash; see :mod:`harness.report.tables` (data and tables), :mod:`.stats` (intervals and
verdicts), :mod:`.figures`, :mod:`.markdown` and :mod:`.index`.
"""
from __future__ import annotations

from pathlib import Path

from harness.atomic import write_text_atomic
from harness.experiments import Experiment
from harness.report.decomposition import decomposition_section, effects_rows
from harness.report.figures import deltas_figure, label_smoothing_figure, lr_schedule_figure
from harness.report.index import write_index
from harness.report.markdown import render
from harness.report.model_tricks import model_tricks_section
from harness.report.tables import load_report_data, md_table
from harness.report.verdicts import Looks
from harness.scales import Scale, ScaleOverrides

__all__ = ["write_report", "build_report"]


def build_report(exp: Experiment, scale: Scale, store_path: str | Path, seeds: list[int] | None = None,
                 out_dir: str | Path = "reports", *, data: str | None = None,
                 data_root: str | None = None, figures: bool = True,
                 looks: Looks | None = None,
                 overrides: ScaleOverrides = ScaleOverrides()) -> tuple[Path, str]:
    """Collect the data, draw the figures (under ``out_dir/<scale>/figures``) and return
    ``(report path, markdown)`` without writing the markdown or the index. ``looks``: the
    report of an adaptive run (every stored seed per cell; group-sequential levels)."""
    report_data = load_report_data(exp, scale, store_path, seeds, data=data, data_root=data_root,
                                   looks=looks, overrides=overrides)
    folder = Path(out_dir) / scale.name
    fig_dir = folder / "figures"
    verdicts = report_data.verdicts("top1") if exp.has_verdicts and "top1" in exp.metrics else None
    figs = []
    if figures and exp.kind == "classification":
        figs.append(lr_schedule_figure(report_data, fig_dir / f"{exp.name}-lr-schedule.png"))
        ls = label_smoothing_figure(report_data, fig_dir / f"{exp.name}-label-smoothing-gap.png")
        if ls is not None:
            figs.append(ls)
    if figures and verdicts and verdicts.per_model:
        d = deltas_figure(report_data.verdict_view(), verdicts.per_model, fig_dir / f"{exp.name}-deltas.png")
        if d is not None:
            figs.append(d)
    task = {m: report_data.verdicts(m) for m in exp.metrics
            if exp.has_verdicts and exp.kind != "classification" and m not in ("top1", "top5")}
    sections = model_tricks_section(report_data) + _decomposition(exp, scale, store_path, report_data,
                                                                  data_root, overrides)
    return folder / f"{exp.name}.md", render(report_data, verdicts, figs, "figures", task, sections)


def _decomposition(exp: Experiment, scale: Scale, store_path: str | Path, data,
                   data_root: str | None, overrides: ScaleOverrides) -> list[str]:
    """A stacked table's compound rows (and their stored decompositions); a decomposition's
    own per-knob effects."""
    if exp.design == "decompose":
        metric = "top1" if "top1" in exp.metrics else exp.metrics[0]
        return ["## Each knob's effect", "", md_table(["column", "effect of", "seeds per corner",
                "effect [95% CI]", "verdict"], effects_rows(data, metric, scale.equivalence_margin)), ""]
    if exp.stacked and exp.design == "table":
        trials = data.plan.all_trials()
        own = trials[0].data or None if trials else None  # a user's folder: the corners' too
        return decomposition_section(exp, scale, store_path, data_root, overrides, own)
    return []


def write_report(exp: Experiment, scale: Scale, store_path: str | Path,
                 seeds: list[int] | None = None, out_dir: str | Path = "reports", *,
                 data: str | None = None, data_root: str | None = None,
                 figures: bool = True, looks: Looks | None = None,
                 overrides: ScaleOverrides = ScaleOverrides()) -> Path:
    """Write ``out_dir/<scale>/<exp.name>.md`` (+ PNGs in ``figures/``) atomically and
    refresh ``out_dir/README.md``; returns the report's path.

    ``seeds``: the seeds run (their count picks the plan; default the experiment's or the
    scale's). ``data``: the dataset the trials ran on when it is not the scale's (Table 7's
    ImageFolder; default: the one the store recorded for this table). ``data_root``: where
    to load the test set for the label-smoothing figure (Fashion-MNIST folder).
    ``figures=False`` skips drawing (the markdown then has no figure section). ``overrides``:
    the run's --image-size / --epochs (they are in its trials' hashes).
    Raises HarnessError (one line) for a missing or unreadable store.
    """
    path, text = build_report(exp, scale, store_path, seeds, out_dir, data=data, data_root=data_root,
                              figures=figures, looks=looks, overrides=overrides)
    write_text_atomic(path, text)
    write_index(out_dir)
    return path
