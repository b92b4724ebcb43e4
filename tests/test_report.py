"""Tests for harness/report (paper-style reports) and ``python -m harness report``.

Each test builds a small fake store in tmp_path from a real plan (made-up numbers, a few
trials failed, diverged or missing), writes the report there and reads the markdown back.
No training and no Ray: a report only reads the store (Figure 4 included: it draws the
logit gaps a trial stores when it finishes).
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from harness.experiments import load_experiment, make_plan
from harness.report import write_report
from harness.scales import get_scale
from harness.store import Store, TrialRecord

PAPER = yaml.safe_load((Path(__file__).resolve().parent.parent / "harness" / "paper_data.yaml").read_text())
SMOKE = get_scale("smoke")
T975_DF1 = 12.706204736174698  # t quantile 0.975, 1 degree of freedom (two seeds)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Table 6, ResNet-50-D column: hand-made top-1 per (row, seed) for the verdict checks.
# Every cell spreads 0.8 over its two seeds (the formula cells below 0.3), so the column's
# pooled seed SD is about 0.48 on 6 df; the expected verdicts are worked out in the test.
HAND = {
    ("Efficient", 0): 70.0, ("Efficient", 1): 70.8,
    ("+ cosine decay", 0): 71.6, ("+ cosine decay", 1): 72.4,  # +1.6: reproduced
    ("+ label smoothing", 0): 70.2, ("+ label smoothing", 1): 71.0,  # -1.4: contradicted
    ("+ distill w/o mixup", 0): 70.2, ("+ distill w/o mixup", 1): 71.0,  # 0.0: no effect
}
FAILED = ("+ mixup w/o distill", "MobileNet")  # seed 0 failed, seed 1 missing
MISSING = ("+ distill w/ mixup", "Inception-V3")  # both seeds missing
DIVERGED = ("+ distill w/o mixup", "MobileNet")  # both seeds diverged
ERROR = "RuntimeError: CUDA out of memory (made up)"


def record(spec, status="done", **kw) -> TrialRecord:
    """A plausible stored trial for ``spec``."""
    base = dict(spec_hash=spec.hash, run_id="run-1", table_name=spec.table, row_label=spec.row,
                column_label=spec.column, model=spec.model,
                recipe_json=json.dumps(spec.recipe.to_dict()), scale=spec.scale, seed=spec.seed,
                data=spec.dataset, status=status, top1=None, top5=None, train_img_per_s=1000.0,
                epoch_s=2.0, wall_s=10.0, epochs=1, device="cpu:test x1", precision="fp32",
                torch_version="2.99.0", torchvision_version="0.99.0", ray_version="2.60.0",
                git_commit="abc123def456", dataset_fingerprint="fptrain/fptest",
                started_at="2026-01-02T03:04:05+00:00", finished_at="2026-01-02T03:14:05+00:00",
                error=None, checkpoint=None, params=1_000_000, macs=2_000_000)
    base.update(kw)
    return TrialRecord(**base)


def table6_store(tmp_path: Path, gaps: dict | None = None) -> tuple[Path, object]:
    """Store with every Table 6 trial (2 seeds) except the FAILED/MISSING/DIVERGED cells."""
    exp = load_experiment("paper_table6")
    plan = make_plan(exp, SMOKE, seeds=2)
    path = tmp_path / "store.sqlite"
    rows = [r.label for r in exp.rows]
    cols = [c.label for c in exp.columns]
    with Store(path) as st:
        for spec in plan.teachers:
            st.put_trial(record(spec, top1=50.0, top5=90.0))
        for (row, col), specs in plan.trials.items():
            for spec in specs:
                cell = (row, col)
                if cell == MISSING or (cell == FAILED and spec.seed == 1):
                    continue
                if cell == FAILED:
                    st.put_trial(record(spec, "failed", error=ERROR))
                    continue
                if cell == DIVERGED:
                    st.put_trial(record(spec, "diverged", error="non-finite loss nan in epoch 1"))
                    continue
                top1 = HAND.get((row, spec.seed)) if col == "ResNet-50-D" else None
                if top1 is None:
                    top1 = 60.0 + 2 * rows.index(row) + cols.index(col) + 0.3 * spec.seed
                gap = (gaps or {}).get((row, col, spec.seed))
                epochs = [{"epoch": 1, "loss": 2.0, "lr": 0.1, "top1": top1 - 5, "top5": 80.0},
                          {"epoch": 2, "loss": 1.5, "lr": 0.01, "top1": top1, "top5": 85.0}]
                # one trial was stored by another table under other labels: it must still count
                other = {"table_name": "paper_table8", "row_label": "elsewhere"} \
                    if (row, col, spec.seed) == ("Efficient", "MobileNet", 0) else {}
                st.put_trial(record(spec, top1=top1, top5=top1 + 20, epochs_rows=epochs,
                                    metrics={"logit_gap": gap} if gap else {}, **other))
        # a trial with Table 6's labels but another hash (another scale): must be ignored
        stray = dataclasses.replace(plan.trials[("Efficient", "ResNet-50-D")][0], scale="local")
        st.put_trial(record(stray, top1=99.99, top5=99.99))
    return path, exp


def md_table(text: str, heading: str) -> list[list[str]]:
    """Rows (header first) of the first pipe table after ``heading``."""
    lines = text.splitlines()
    i = lines.index(heading)
    out = []
    for line in lines[i + 1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if not set(line) <= set("|:- "):
                out.append(cells)
        elif out:
            break
    return out


def delta_row(text: str, row: str, column: str) -> list[str]:
    table = md_table(text, "## Each trick vs the row it adds to (top-1)")
    return next(r for r in table if r[0] == row and r[2] == column)


def _gap_summary(mean: float) -> dict:
    """A logit-gap summary as a classification trial stores it (128 smoke test images)."""
    return {"classes": 10, "n": 128, "mean": mean,
            "quantiles": [round(mean - 1 + 2 * i / 100, 4) for i in range(101)]}


@pytest.fixture(scope="module")
def table6_report(tmp_path_factory):
    """The Table 6 report written once from the fake store, with the two seed-0 logit-gap
    summaries Figure 4 needs ('+ cosine decay' and '+ label smoothing', ResNet-50-D)."""
    tmp = tmp_path_factory.mktemp("t6")
    gaps = {("+ cosine decay", "ResNet-50-D", 0): _gap_summary(6.0),
            ("+ label smoothing", "ResNet-50-D", 0): _gap_summary(3.0)}
    store, exp = table6_store(tmp, gaps)
    out = tmp / "reports"
    path = write_report(exp, SMOKE, str(store), seeds=[0, 1], out_dir=out)
    return path, path.read_text(), out, exp


def test_report_path_layout_and_paper_layout(table6_report):
    """reports/<scale>/<table>.md with the paper's row and column labels in paper order."""
    path, text, out, exp = table6_report
    assert path == out / "smoke" / "paper_table6.md"
    top1 = md_table(text, "### Top-1 accuracy (%)")
    assert [r[0] for r in top1[1:]] == [r.label for r in exp.rows]
    for col in exp.columns:
        assert f"{col.label} (ours)" in top1[0] and f"{col.label} (paper)" in top1[0]
    assert "### Top-5 accuracy (%)" in text
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_paper_numbers_equal_paper_data(table6_report):
    """Every paper cell equals paper_data.yaml (77.16 and 79.29 for ResNet-50-D top-1)."""
    _, text, _, exp = table6_report
    rows = PAPER["tables"]["table6"]["rows"]
    for heading, metric in (("### Top-1 accuracy (%)", "top1"), ("### Top-5 accuracy (%)", "top5")):
        table = md_table(text, heading)
        header = table[0]
        for i, line in enumerate(table[1:]):
            for col in exp.columns:
                shown = float(line[header.index(f"{col.label} (paper)")])
                assert shown == rows[i][col.paper[metric]]
    top1 = md_table(text, "### Top-1 accuracy (%)")
    j = top1[0].index("ResNet-50-D (paper)")
    assert top1[1][j] == "77.16" and top1[-1][j] == "79.29"


def test_ours_mean_and_interval_in_cells(table6_report):
    """A cell shows mean ± t-interval half-width (n seeds), matched by hash, not by label."""
    _, text, _, _ = table6_report
    top1 = md_table(text, "### Top-1 accuracy (%)")
    j = top1[0].index("ResNet-50-D (ours)")
    pair = [HAND[("Efficient", 0)], HAND[("Efficient", 1)]]
    hw = T975_DF1 * statistics.stdev(pair) / math.sqrt(2)
    assert top1[1][j] == f"{sum(pair) / 2:.2f} ± {hw:.2f} (n=2)"  # the stray 99.99 (other hash) is ignored
    k = top1[0].index("MobileNet (ours)")
    assert top1[1][k].endswith("(n=2)")  # the trial stored under another table's labels counts


def test_failed_missing_diverged_cells_and_list(table6_report):
    """Cells say 'failed: <error>', 'not run', 'diverged'; the list names each trial and why."""
    _, text, _, exp = table6_report
    top1 = md_table(text, "### Top-1 accuracy (%)")
    by_row = {r[0]: r for r in top1[1:]}
    h = top1[0]
    assert by_row[FAILED[0]][h.index(f"{FAILED[1]} (ours)")] == f"failed: {ERROR}"
    assert by_row[MISSING[0]][h.index(f"{MISSING[1]} (ours)")] == "not run"
    assert by_row[DIVERGED[0]][h.index(f"{DIVERGED[1]} (ours)")] == "diverged"

    plan = make_plan(exp, SMOKE, seeds=2)
    listed = md_table(text, "## Trials without a result")
    assert listed[0] == ["trial", "row", "column", "seed", "status", "reason"]
    by_hash = {r[0]: r for r in listed[1:]}
    expect = {(FAILED, 0): ("failed", ERROR), (FAILED, 1): ("missing", "not in the store"),
              (MISSING, 0): ("missing", "not in the store"), (MISSING, 1): ("missing", "not in the store"),
              (DIVERGED, 0): ("diverged", "non-finite loss"), (DIVERGED, 1): ("diverged", "non-finite loss")}
    for (cell, seed), (status, why) in expect.items():
        spec = plan.trials[cell][seed]
        line = by_hash[spec.hash[:8]]
        assert line[1:5] == [cell[0], cell[1], str(seed), status]
        assert why in line[5]
    assert len(listed) - 1 == len(expect)
    summary = json.loads(text.splitlines()[0].split("harness-report", 1)[1].rsplit("-->", 1)[0])
    assert summary["trials"] == {"total": 38, "done": 32, "failed": 1, "diverged": 2, "missing": 3}
    assert "38 planned: 32 done, 1 failed, 2 diverged, 3 missing" in text


def pooled_sd_by_hand(cells: list[list[float]]) -> tuple[float, int]:
    """sqrt(sum of within-cell squared deviations / (N - k)) and N - k, in plain Python."""
    ss = sum(sum((x - sum(c) / len(c)) ** 2 for x in c) for c in cells)
    df = sum(len(c) for c in cells) - len(cells)
    return math.sqrt(ss / df), df


def test_verdicts_for_hand_made_deltas(table6_report):
    """ResNet-50-D rows vs their parents, checked by hand: the seed SD pooled over the
    column's six cells, a difference of means with it (t on the pooled df), and each verdict
    from its definition (smoke margin 1.0): all four decided/undecided classes occur."""
    from scipy.stats import t

    _, text, _, _ = table6_report
    rows = [r.label for r in load_experiment("paper_table6").rows]
    value = {(r, s): HAND.get((r, s), 60.0 + 2 * rows.index(r) + 0.3 * s) for r in rows for s in (0, 1)}
    sd, df = pooled_sd_by_hand([[value[(r, 0)], value[(r, 1)]] for r in rows])
    assert df == 6 and sd == pytest.approx(math.sqrt(1.37 / 6))
    cases = {  # row: (parent, paper delta, expected verdict)
        "+ cosine decay": ("Efficient", 77.91 - 77.16, "reproduced"),
        "+ label smoothing": ("+ cosine decay", 78.31 - 77.91, "contradicted; smaller than the paper's"),
        "+ distill w/o mixup": ("+ label smoothing", 78.67 - 78.31, "no effect"),
        "+ mixup w/o distill": ("+ label smoothing", 79.15 - 78.31, "contradicted; smaller than the paper's"),
        "+ distill w/ mixup": ("+ label smoothing", 79.29 - 78.31, "undecided; smaller than the paper's"),
    }
    for row, (parent, paper, expected) in cases.items():
        mean = (value[(row, 0)] + value[(row, 1)] - value[(parent, 0)] - value[(parent, 1)]) / 2
        se = sd * math.sqrt(1 / 2 + 1 / 2)
        lo, hi = mean - t.ppf(0.975, df) * se, mean + t.ppf(0.975, df) * se
        line = delta_row(text, row, "ResNet-50-D")
        assert line[1] == parent and line[3] == "2/2"
        assert line[4] == f"{round(mean, 2) + 0.0:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        assert line[6] == f"{paper:+.2f}"
        assert line[7] == expected, (row, line)
        if expected.startswith("undecided"):  # 0 inside the 95% interval, the 90% one not inside +-1
            h90 = t.ppf(0.95, df) * se
            assert lo < 0 < hi and not (-1 < mean - h90 and mean + h90 < 1)
            assert float(line[8]) > abs(mean)  # an MDE larger than what was seen
    # rows that add to '+ label smoothing' are compared with it, not with the previous row
    assert delta_row(text, "+ distill w/ mixup", "ResNet-50-D")[1] == "+ label smoothing"
    assert delta_row(text, "+ distill w/ mixup", "Inception-V3")[7] == "not run"
    assert delta_row(text, "+ distill w/o mixup", "MobileNet")[7] == "not run"  # diverged


def test_pooled_trick_verdicts_by_hand(table6_report):
    """The per-trick table pools the per-model deltas with inverse-variance weights and a t
    interval on the smallest model df; checked by hand for '+ cosine decay' over the models."""
    from scipy.stats import norm, t

    _, text, _, _ = table6_report
    table = md_table(text, "Per trick, pooled over the models: " + text.split(
        "Per trick, pooled over the models: ")[1].split("\n")[0])
    row = next(r for r in table if r[0] == "+ cosine decay")
    exp = load_experiment("paper_table6")
    rows = [r.label for r in exp.rows]
    means, ws, dfs = [], [], []
    for j, col in enumerate(c.label for c in exp.columns):
        def v(r, s):
            if col == "ResNet-50-D":
                return HAND.get((r, s), 60.0 + 2 * rows.index(r) + 0.3 * s)
            return 60.0 + 2 * rows.index(r) + j + 0.3 * s
        cells = [[v(r, 0), v(r, 1)] for r in rows
                 if (r, col) not in (FAILED, MISSING, DIVERGED)]
        sd, df = pooled_sd_by_hand(cells)
        if sd == 0:
            continue  # no noise, no weight (an exact difference has no interval)
        means.append((v("+ cosine decay", 0) + v("+ cosine decay", 1) - v("Efficient", 0) - v("Efficient", 1)) / 2)
        ws.append(1 / sd ** 2)  # the delta's variance is sd^2 (1/2 + 1/2)
        dfs.append(df)
    mean = sum(w * m for w, m in zip(ws, means)) / sum(ws)
    half = t.ppf(0.975, min(dfs)) / math.sqrt(sum(ws))
    assert len(ws) == 3 and half > norm.ppf(0.975) / math.sqrt(sum(ws))
    assert row[2] == f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


def test_header_deviations_and_provenance(table6_report):
    """Every deviation of the scale is a bullet; provenance names versions, devices, dates."""
    _, text, _, _ = table6_report
    assert SMOKE.deviations
    for d in SMOKE.deviations:
        assert f"- {d}" in text
    for item in ("abc123def456", "2.99.0", "0.99.0", "2.60.0", "cpu:test x1", "fp32",
                 "fptrain/fptest", "2026-01-02T03:04:05+00:00", "2026-01-02T03:14:05+00:00"):
        assert item in text
    # 35 stored trials x 10 s (the stray one of another hash is not counted)
    assert "5m 50s (350.0 s)" in text


def test_figures_are_png_and_linked(table6_report):
    """Figures 3 and 4 analogues and the deltas bars exist as PNGs, linked relatively."""
    path, text, out, _ = table6_report
    for name in ("paper_table6-lr-schedule.png", "paper_table6-label-smoothing-gap.png",
                 "paper_table6-deltas.png"):
        png = out / "smoke" / "figures" / name
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert f"](figures/{name})" in text
    assert not [p for p in (out / "smoke" / "figures").iterdir() if p.name.startswith(".")]
    # Figure 4 drew both trials' stored gaps (128 smoke test images)
    from tricks.label_smoothing import theoretical_gap

    assert "mean gap on the 128 test images" in text
    assert f"theory {theoretical_gap(0.1, 10):.2f} for K=10" in text


def test_label_smoothing_figure_skipped_without_stored_gaps(tmp_path):
    """Without stored logit gaps Figure 4 is not drawn and says why (nothing is raised)."""
    from harness.report.figures import label_smoothing_figure
    from harness.report.tables import load_report_data

    store, exp = table6_store(tmp_path)
    data = load_report_data(exp, SMOKE, store, seeds=[0, 1])
    fig = label_smoothing_figure(data, tmp_path / "fig4.png")
    assert fig is not None and fig.path is None
    assert "skipped: trial '+ label smoothing'" in fig.notes[0]
    assert "stored without logit gaps" in fig.notes[0]
    assert not (tmp_path / "fig4.png").exists()
    no_ls = dataclasses.replace(exp, rows=exp.rows[:2])  # Efficient, + cosine decay: no smoothing
    assert label_smoothing_figure(load_report_data(no_ls, SMOKE, store), tmp_path / "x.png") is None


def test_index_lists_reports(table6_report):
    """reports/README.md lists every report with scale, headline and verdict counts."""
    _, text, out, _ = table6_report
    index = (out / "README.md").read_text()
    assert "[paper_table6](smoke/paper_table6.md)" in index
    assert "32/38 done" in index and "vs paper 79.29" in index
    assert "reproduced:" in index and "contradicted:" in index
    (out / "local").mkdir(exist_ok=True)
    (out / "local" / "custom.md").write_text("# A hand-written note\n")
    from harness.report.index import write_index

    index = write_index(out).read_text()
    assert "[custom](local/custom.md)" in index and "A hand-written note" in index


def test_table3_speedup(tmp_path):
    """Table 3: time/epoch and img/s of Baseline vs Efficient, our speed-up beside the paper's."""
    exp = load_experiment("paper_table3")
    plan = make_plan(exp, SMOKE, seeds=2)
    times = {("Baseline", 0): 3.0, ("Baseline", 1): 3.2, ("Efficient", 0): 1.0, ("Efficient", 1): 1.0}
    with Store(tmp_path / "s.sqlite") as st:
        for (row, col), specs in plan.trials.items():
            for spec in specs:
                t = times[(col, spec.seed)]
                st.put_trial(record(spec, top1=70.0, top5=90.0, epoch_s=t, train_img_per_s=600.0 / t))
    path = write_report(exp, SMOKE, str(tmp_path / "s.sqlite"), out_dir=tmp_path / "r", figures=False)
    text = path.read_text()
    speed = md_table(text, "## Training speed: Baseline vs Efficient")
    by_model = {r[0]: dict(zip(speed[0], r)) for r in speed[1:]}
    assert set(by_model) == {"ResNet-50", "Inception-V3", "MobileNet"}
    ratios = [3.0, 3.2]
    hw = T975_DF1 * statistics.stdev(ratios) / math.sqrt(2)
    r50 = by_model["ResNet-50"]
    assert r50["speed-up (ours)"] == f"3.10x ± {hw:.2f} (n=2)"
    assert r50["speed-up (paper)"] == "3.0x (13.3 min -> 4.4 min)"  # 13.3 / 4.4 = 3.02
    assert by_model["Inception-V3"]["speed-up (paper)"].startswith(f"{19.8 / 8:.1f}x")
    assert by_model["MobileNet"]["speed-up (paper)"].startswith(f"{6.2 / 3.7:.1f}x")
    assert r50["img/s ratio (ours)"].startswith("3.10x")
    epoch = md_table(text, "### Time per epoch")
    header = epoch[0]
    assert epoch[1][header.index("Efficient (paper)")] == "4.4 min"
    assert epoch[1][header.index("Baseline (paper)")] == "13.3 min"
    assert epoch[1][header.index("Baseline (ours)")].startswith("3.1 ± ")
    assert "### Training throughput (images/s)" in text
    assert "## Each trick" not in text  # Table 3 is not stacked


def test_table5_params_and_macs(tmp_path):
    """Table 5: params and MACs columns, ours from the store beside the paper's '25 M', '3.8 G'."""
    exp = load_experiment("paper_table5")
    plan = make_plan(exp, SMOKE, seeds=2)
    macs = {"ResNet-50": 4_100_000_000, "ResNet-50-B": 4_300_000_000, "ResNet-50-C": 4_500_000_000,
            "ResNet-50-D": 4_500_000_000}
    with Store(tmp_path / "s.sqlite") as st:
        for (row, col), specs in plan.trials.items():
            for spec in specs:
                st.put_trial(record(spec, top1=76.0, top5=93.0, params=25_557_032, macs=macs[row]))
    text = write_report(exp, SMOKE, str(tmp_path / "s.sqlite"), out_dir=tmp_path / "r",
                        figures=False).read_text()
    params = md_table(text, "### Parameters")
    flops = md_table(text, "### MACs (the paper's 'FLOPs')")
    paper_rows = PAPER["tables"]["table5"]["rows"]
    assert [r[0] for r in params[1:]] == ["ResNet-50", "ResNet-50-B", "ResNet-50-C", "ResNet-50-D"]
    for i, line in enumerate(params[1:]):
        assert line[1:] == ["25.6 M", paper_rows[i]["params"]]
    assert [r[1:] for r in flops[1:]] == [["4.1 G", "3.8 G"], ["4.3 G", "4.1 G"], ["4.5 G", "4.3 G"],
                                          ["4.5 G", "4.3 G"]]
    assert "## Each trick vs the row it adds to (top-1)" in text  # Table 5 is stacked


def test_design_section_hook(tmp_path, monkeypatch):
    """A factorial experiment appends harness.analysis.designs.design_section's markdown."""
    store, exp = table6_store(tmp_path)
    seen = {}

    def design_section(e, trials_df):
        seen["n"] = len(trials_df)
        return "## Factorial analysis\n\nmain effects here\n"

    from harness.report import markdown

    monkeypatch.setattr(markdown, "design_section", design_section)
    monkeypatch.setattr(markdown, "label_trials", lambda plan, df: df)
    fexp = dataclasses.replace(exp, design="factorial")
    text = write_report(fexp, SMOKE, str(store), out_dir=tmp_path / "r", figures=False).read_text()
    assert "## Factorial analysis" in text and "main effects here" in text
    assert seen["n"] == 35  # the plan's stored trials (teachers included), matched by hash


def test_cli_report(tmp_path, capsys):
    """`report` writes the file; a missing store and 'grid' are one-line errors, exit 2."""
    from harness.cli import main

    store, _ = table6_store(tmp_path)
    out = tmp_path / "reports"
    rc = main(["report", "paper_table6", "--scale", "smoke", "--store", str(store), "--seeds", "2",
               "--out", str(out), "--no-figures"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out / "smoke" / "paper_table6.md")
    assert (out / "smoke" / "paper_table6.md").is_file()

    rc = main(["report", "paper_table6", "--scale", "smoke", "--store", str(tmp_path / "nope.sqlite")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no results store" in err
    rc = main(["report", "grid", "--scale", "smoke", "--store", str(store)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "run grid" in err
    rc = main(["report", "paper_table99", "--store", str(store)])
    assert rc == 2 and "unknown table" in capsys.readouterr().err


def test_transfer_report_has_task_metric_deltas(tmp_path):
    """Table 9: besides the backbones' top-1 deltas, the mIoU deltas with their own verdicts,
    computed from hand-made per-seed mIoU values and the paper's mIoU column."""
    exp = load_experiment("paper_table9")
    plan = make_plan(exp, SMOKE, seeds=2)
    miou = {("D-efficient", 0): 40.0, ("D-efficient", 1): 41.0,
            ("+ cosine", 0): 41.0, ("+ cosine", 1): 42.02}  # delta [1.00, 1.02]: paper +0.45
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        for spec in [*plan.teachers, *plan.backbones]:
            st.put_trial(record(spec, top1=70.0 + spec.seed, top5=90.0))
        for (row, _), specs in plan.trials.items():
            for spec in specs:
                m = miou.get((row, spec.seed), 30.0)
                st.put_trial(record(spec, metrics={"miou": m, "pixacc": 80.0}))
    text = write_report(exp, SMOKE, str(path), out_dir=tmp_path / "r", figures=False).read_text()
    from scipy.stats import t

    table = md_table(text, "## Each trick vs the row it adds to (mIoU, the transfer task)")
    assert table[0][4] == "Δ mIoU (ours) [CI]" and table[0][6] == "Δ mIoU (paper)"
    row = next(r for r in table if r[0] == "+ cosine")
    rows = [r.label for r in exp.rows]
    sd, df = pooled_sd_by_hand([[miou.get((r, s), 30.0) for s in (0, 1)] for r in rows])
    half = t.ppf(0.975, df) * sd
    assert row[4] == f"+1.01 [{1.01 - half:+.2f}, {1.01 + half:+.2f}]" and row[6] == "+0.45"
    assert row[7] == ("reproduced" if 1.01 - half > 0 else "undecided")


def test_regime_section_from_stored_training_accuracy(tmp_path):
    """Cells whose trials stored a training top-1 show train / test (gap) averaged by hand;
    a report without any shows no regime section."""
    exp = load_experiment("paper_table6")
    plan = make_plan(exp, SMOKE, seeds=2)
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        for spec in plan.teachers:
            st.put_trial(record(spec, top1=50.0, top5=90.0))
        for (row, col), specs in plan.trials.items():
            for spec in specs:
                extra = {"metrics": {"train_top1": 90.0 + spec.seed}} if row == "Efficient" else {}
                st.put_trial(record(spec, top1=80.0 + 2 * spec.seed, top5=95.0, **extra))
    text = write_report(exp, SMOKE, str(path), out_dir=tmp_path / "r", figures=False).read_text()
    table = md_table(text, "## Regime: training vs test top-1")
    eff = next(r for r in table if r[0] == "Efficient")
    assert eff[1] == "90.50 / 81.00 (+9.50, n=2)"  # (90 + 91) / 2 vs (80 + 82) / 2
    assert next(r for r in table if r[0] == "+ cosine decay")[1] == "—"
    bare, _ = table6_store(tmp_path / "bare")
    assert "## Regime" not in write_report(exp, SMOKE, str(bare), out_dir=tmp_path / "r2",
                                           figures=False).read_text()


def test_trial_stores_its_training_accuracy(tmp_path):
    """A smoke classification trial stores train_top1: top-1 on its training images under the
    evaluation transform, recomputed here from the saved checkpoint; its test top-1 is the
    same as a trial's that did not compute it would be (no random draw is spent)."""
    import torch

    from harness.batches import make_batches
    from harness.recipe import named_recipe
    from harness.spec import TrialSpec
    from harness.trainer import TrainOptions, run_trial
    from harness.trial import load_classifier

    spec = TrialSpec("resnet18", named_recipe("baseline"), "smoke", 0)
    res = run_trial(spec, TrainOptions(threads=1, checkpoint_dir=str(tmp_path), log=lambda m: None))
    assert res.status == "done" and 0 <= res.metrics["train_top1"] <= 100
    model = load_classifier(str(tmp_path / "ckpt.pt"), torch.device("cpu"))
    batches = make_batches(spec.dataset, SMOKE, 16, torch.device("cpu"), 0)
    hit = n = 0
    with torch.no_grad():
        for x, y in batches.train_eval_batches():
            hit += int((model(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).sum())
            n += len(y)
    assert n == min(10_000, len(batches.y))
    assert res.metrics["train_top1"] == pytest.approx(100.0 * hit / n, abs=1e-9)


def test_table3_column_verdicts_compare_efficient_with_baseline(tmp_path):
    """Table 3 (reference_column: Baseline): Efficient vs Baseline per model and pooled, the
    mean delta by hand, the paper's delta from the paper's table (76.21 - 75.87 for
    ResNet-50), a clear gain 'reproduced' and a clear loss 'contradicted'."""
    exp = load_experiment("paper_table3")
    plan = make_plan(exp, SMOKE, seeds=4)
    jitter = [0.0, 0.1, -0.1, 0.05]
    base = {"ResNet-50": 80.0, "Inception-V3": 81.0, "MobileNet": 75.0}
    gain = {"ResNet-50": 3.0, "Inception-V3": 2.0, "MobileNet": -3.0}
    with Store(tmp_path / "s.sqlite") as st:
        for (row, col), specs in plan.trials.items():
            for spec in specs:
                t = base[row] + (gain[row] if col == "Efficient" else 0.0) + jitter[spec.seed] * (1 + (col == "Efficient"))
                st.put_trial(record(spec, top1=t, top5=99.0))
    text = write_report(exp, SMOKE, str(tmp_path / "s.sqlite"), seeds=[0, 1, 2, 3], out_dir=tmp_path / "r",
                        figures=False).read_text()
    assert "## Each column vs 'Baseline' (top-1)" in text
    rows = md_table(text, "## Each column vs 'Baseline' (top-1)")
    by = {r[2]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert set(by) == {"ResNet-50", "Inception-V3", "MobileNet"}
    r50 = by["ResNet-50"]
    assert (r50["row"], r50["vs"]) == ("Efficient", "Baseline")
    delta = statistics.mean(80 + 3 + 2 * j for j in jitter) - statistics.mean(80 + j for j in jitter)
    assert r50["Δ top-1 (ours) [CI]"].startswith(f"{delta:+.2f} [")
    assert r50["Δ top-1 (paper)"] == f"{76.21 - 75.87:+.2f}"
    assert r50["verdict"].startswith("reproduced") and by["MobileNet"]["verdict"].startswith("contradicted")
    head = json.loads(text.split("harness-report ", 1)[1].split(" -->", 1)[0])
    assert head["verdicts"] == {"reproduced": 2, "contradicted": 1}


def test_column_verdicts_grow_the_tables_own_cells():
    """An undecided Efficient-vs-Baseline comparison grows that model's two cells of Table 3."""
    from harness.adaptive import cells_to_grow
    from harness.report.verdicts import Comparison, TrickVerdicts
    from harness.statistics import Verdict

    plan = make_plan(load_experiment("paper_table3"), SMOKE, seeds=3)
    c = Comparison("Efficient", "Baseline", "MobileNet", None, 2.87, Verdict("undecided", None, ""))
    grow = cells_to_grow(TrickVerdicts("top1", 0.5, None, [c], [], {}, swapped=True))
    assert grow == {("MobileNet", "Efficient"), ("MobileNet", "Baseline")} and grow <= set(plan.trials)
