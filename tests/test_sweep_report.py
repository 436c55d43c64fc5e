"""Sweep report: Markdown tables, learning-curve PNG and the report folder, on hand-built sweep results."""

import pytest

from pipelines.cards import format_duration
from pipelines.sweep.report import plot_learning_curves, summary_markdown, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cell(arm, train_examples, seed, accuracy, f1=None, per_class=None):
    return {"arm": arm, "method": "finetune", "examples_per_class": per_class or train_examples // 5,
            "train_examples": train_examples, "seed": seed, "accuracy": accuracy,
            "f1_macro": accuracy - 0.01 if f1 is None else f1, "test_examples": 445,
            "train_seconds": 10.0 + seed, "cell_seconds": 20.0 + seed}


@pytest.fixture
def rows():
    """2 arms x 2 budgets x 2 seeds, in order: 'ulmfit' appears first."""
    return [
        cell("ulmfit", 50, 0, 0.6, f1=0.5), cell("ulmfit", 50, 1, 0.8, f1=0.7),
        cell("ulmfit", 250, 0, 0.9), cell("ulmfit", 250, 1, 0.92),
        cell("scratch", 50, 0, 0.3), cell("scratch", 50, 1, 0.4),
        cell("scratch", 250, 0, 0.7), cell("scratch", 250, 1, 0.72),
    ]


@pytest.fixture
def efficiency():
    return {"reference": "scratch", "arms": {
        "scratch": {"budgets": [50, 250], "accuracy_mean": [0.35, 0.71], "accuracy_std": [0.07, 0.014],
                    "seeds": [2, 2], "reference_labels": [50.0, 250.0], "multiplier": [1.0, 1.0],
                    "multiplier_bound": [None, None], "multiplier_text": ["1.0x", "1.0x"], "area": 0.5312},
        "ulmfit": {"budgets": [50, 250], "accuracy_mean": [0.7, 0.91], "accuracy_std": [0.141, 0.014],
                   "seeds": [2, 2], "reference_labels": [235.4, None], "multiplier": [4.7, None],
                   "multiplier_bound": [None, "above"], "multiplier_text": ["4.7x", "> 1.0x"], "area": 0.8047},
    }}


def table_rows(markdown, section):
    """The table lines ('| ... |') of the '## section' block."""
    block = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in block.splitlines() if line.startswith("|")]


def assert_valid_table(lines):
    widths = {line.count(" | ") for line in lines}
    assert len(widths) == 1, lines  # every row has as many cells as the header
    assert set(lines[1].replace("|", "").split()) <= {":---", "---:"}


def test_accuracy_table_cells(rows, efficiency):
    markdown = summary_markdown(rows, efficiency, "AG News sweep")
    lines = table_rows(markdown, "Test accuracy")
    assert_valid_table(lines)
    assert lines[0] == "| Arm | 50 (10/class) | 250 (50/class) | Seeds |"
    assert lines[2] == "| ulmfit | 70.0 ± 14.1 | 91.0 ± 1.4 | 2 |"  # first-appearance order
    assert lines[3] == "| scratch | 35.0 ± 7.1 | 71.0 ± 1.4 | 2 |"
    assert table_rows(markdown, "Macro-F1")[2] == "| ulmfit | 60.0 ± 14.1 | 90.0 ± 1.4 | 2 |"


def test_missing_cell_and_single_seed(rows, efficiency):
    rows = [row for row in rows if not (row["arm"] == "scratch" and row["train_examples"] == 250)]
    rows = [row for row in rows if not (row["arm"] == "ulmfit" and row["seed"] == 1 and row["train_examples"] == 250)]
    lines = table_rows(summary_markdown(rows, efficiency, "t"), "Test accuracy")
    assert_valid_table(lines)
    assert lines[2] == "| ulmfit | 70.0 ± 14.1 | 90.0 | 1–2 |"
    assert lines[3] == "| scratch | 35.0 ± 7.1 | – | 2 |"


def test_mixed_per_class_counts_show_the_total_only(rows, efficiency):
    rows[0]["examples_per_class"] = 7
    assert table_rows(summary_markdown(rows, efficiency, "t"), "Test accuracy")[0].startswith("| Arm | 50 | 250 (50/class) |")


def test_multiplier_table_and_definition(rows, efficiency):
    markdown = summary_markdown(rows, efficiency, "t")
    lines = table_rows(markdown, "Data multiplier vs scratch")
    assert_valid_table(lines)
    assert lines[2] == "| scratch | 1.0x | 1.0x | 53.1 |"
    assert lines[3] == "| ulmfit | 4.7x | > 1.0x | 80.5 |"
    assert "log-linear interpolation" in markdown
    efficiency["area_budgets"] = [50, 250]
    assert table_rows(summary_markdown(rows, efficiency, "t"), "Data multiplier vs scratch")[0].endswith(
        "| Area under the learning curve, 50–250 labels (log budget, %) |")


def test_header_command_wall_time_and_timings(rows, efficiency):
    markdown = summary_markdown(rows, efficiency, "AG News sweep", command="python -m pipelines sweep x.yaml",
                                wall_seconds=3723, lm_seconds=125)
    assert markdown.startswith("# AG News sweep\n")
    assert "```sh\npython -m pipelines sweep x.yaml\n```" in markdown
    assert "Wall time of this run of the command: 1 h 02 min 03 s" in markdown
    assert "Language-model stages (each built once, shared by the arms that use it): 2 min 05 s" in markdown
    assert f"Cells, summed: {format_duration(sum(r['cell_seconds'] for r in rows))}" in markdown
    lines = table_rows(markdown, "Time per cell")
    assert_valid_table(lines)
    assert lines[2] == "| ulmfit | 4 | 10.5 | 20.5 |"


def test_ablation_rows_in_given_order(rows, efficiency):
    ablation = {"title": "LM fine-tuning (ULMFiT Table 6)", "budget": 50,
                "arms": [("From scratch", "scratch"), ("Full", "ulmfit"), ("Not run", "lm_discr")]}
    markdown = summary_markdown(rows, efficiency, "t", ablations=[ablation])
    lines = table_rows(markdown, "Ablations")
    assert "### LM fine-tuning (ULMFiT Table 6) — 50 (10/class) labeled examples" in markdown
    assert_valid_table(lines)
    assert lines[2:] == ["| From scratch | scratch | 35.0 ± 7.1 | 65.0 |",
                         "| Full | ulmfit | 70.0 ± 14.1 | 30.0 |",
                         "| Not run | lm_discr | – | – |"]


def test_rerun_cell_supersedes_the_earlier_one(rows, efficiency):
    rerun = cell("ulmfit", 50, 1, 0.6, f1=0.5)
    lines = table_rows(summary_markdown([*rows, rerun], efficiency, "t"), "Test accuracy")
    assert lines[2] == "| ulmfit | 60.0 ± 0.0 | 91.0 ± 1.4 | 2 |"


@pytest.mark.parametrize("seconds, text", [(12.34, "12.3 s"), (245, "4 min 05 s"), (3723, "1 h 02 min 03 s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000  # axes, lines and text, not an empty canvas


def test_plot_writes_png(rows, tmp_path):
    path = plot_learning_curves(rows, tmp_path / "curve.png", title="AG News")
    assert path == tmp_path / "curve.png"
    assert_png(path)
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temp file left behind


def test_plot_single_seed_and_single_budget(tmp_path):
    single = [cell("ulmfit", 50, 0, 0.8), cell("scratch", 50, 0, 0.5)]
    assert_png(plot_learning_curves(single, tmp_path / "single.png"))


def test_write_report_writes_both_files(rows, efficiency, tmp_path):
    paths = write_report(rows, efficiency, tmp_path / "report", "AG News sweep", command="make sweep",
                         wall_seconds=61)
    assert paths == {"summary": tmp_path / "report" / "summary.md", "curve": tmp_path / "report" / "curve.png"}
    summary = paths["summary"].read_text(encoding="utf-8")
    assert "| ulmfit | 70.0 ± 14.1 | 91.0 ± 1.4 | 2 |" in summary
    assert "](curve.png)" in summary and "Wall time of this run of the command: 1 min 01 s" in summary
    assert_png(paths["curve"])
    assert sorted(p.name for p in paths["curve"].parent.iterdir()) == ["curve.png", "summary.md"]


def test_setfits_pairs_steps_and_cap_are_reported(rows, efficiency):
    setfit = [{**cell("setfit", 50, seed, 0.7), "method": "setfit", "setfit_pairs": 1280, "setfit_steps": 80,
               "setfit_max_steps": None} for seed in (0, 1)]
    setfit += [{**cell("setfit", 250, seed, 0.9), "method": "setfit", "setfit_pairs": 1600, "setfit_steps": 100,
                "setfit_max_steps": 100} for seed in (0, 1)]
    markdown = summary_markdown([*rows, *setfit], efficiency, "sweep")
    assert table_rows(markdown, "Test accuracy")[4] == "| setfit | 70.0 ± 0.0 | 90.0 ± 0.0 (capped) | 2 |"
    lines = table_rows(markdown, "SetFit's training")
    assert_valid_table(lines)
    assert lines[2:] == ["| setfit | 50 (10/class) | 1,280 | 80 | none: SetFit's defaults |",
                         "| setfit | 250 (50/class) | 1,600 | 100 | 100 |"]
    assert "SetFit's training" not in summary_markdown(rows, efficiency, "sweep")  # no SetFit arm, no section
