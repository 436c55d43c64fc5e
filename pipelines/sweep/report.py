"""Human-readable outputs of a label-efficiency sweep (ULMFiT Fig. 3 style).

`rows` are the finished cells read from results.jsonl (one dict per arm x budget x seed); `efficiency`
is the dict returned by the LabelEfficiency metric. The x-axis quantity everywhere is `train_examples`.
"""

import json
import os
import shutil
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..cards import format_duration
from ..record import is_current, read_metrics, write_atomically

MISSING = "–"
BAND_NOTE = "line: mean over seeds; band: min–max over seeds"


def _latest_cells(rows: Iterable[Mapping]) -> list[Mapping]:
    """One row per (arm, budget, seed): results.jsonl is append-only, so a re-run cell supersedes the older one."""
    cells = {}
    for row in rows:
        cells[(row["arm"], row["train_examples"], row["seed"])] = row
    return list(cells.values())


def _arms_in_order(rows: Iterable[Mapping]) -> list[str]:
    return list(dict.fromkeys(row["arm"] for row in rows))


def _values(rows: Iterable[Mapping], arm: str, budget: int, key: str) -> list[float]:
    return [row[key] for row in rows
            if row["arm"] == arm and row["train_examples"] == budget and row.get(key) is not None]


def _percent_cell(values: Sequence[float]) -> str:
    """'85.3 ± 1.2' (mean ± sample std in percent), '85.3' for one seed, '–' for none."""
    if not values:
        return MISSING
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def _budget_header(rows: Sequence[Mapping], budget: int) -> str:
    """'50 (10/class)' when every cell of this budget used the same per-class count, else '50'."""
    per_class = {row.get("examples_per_class") for row in rows if row["train_examples"] == budget}
    if len(per_class) == 1 and None not in per_class:
        return f"{budget} ({per_class.pop()}/class)"
    return str(budget)


def _table(header: Sequence[str], body: Iterable[Sequence[str]], left_columns: int = 1) -> str:
    """A GitHub Markdown table; the first `left_columns` columns are names, the rest right-aligned numbers."""
    def line(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    alignment = [":---"] * left_columns + ["---:"] * (len(header) - left_columns)
    return "\n".join([line(header), line(alignment), *(line(cells) for cells in body)])


def _metric_table(rows: Sequence[Mapping], arms: Sequence[str], budgets: Sequence[int], key: str) -> str:
    header = ["Arm", *(_budget_header(rows, budget) for budget in budgets), "Seeds"]
    body = []
    for arm in arms:
        seed_counts = [len(_values(rows, arm, budget, key)) for budget in budgets]
        seed_counts = [count for count in seed_counts if count]
        seeds = MISSING if not seed_counts else (
            str(seed_counts[0]) if min(seed_counts) == max(seed_counts) else f"{min(seed_counts)}–{max(seed_counts)}")
        body.append([arm, *(_percent_cell(_values(rows, arm, budget, key)) + _capped(rows, arm, budget)
                            for budget in budgets), seeds])
    return _table(header, body)


def _capped(rows: Sequence[Mapping], arm: str, budget: int) -> str:
    """' (capped)' beside a SetFit number whose training stopped at its step cap, not SetFit's own count."""
    cells = [row for row in rows if row["arm"] == arm and row["train_examples"] == budget]
    return " (capped)" if any(row.get("setfit_max_steps") and row.get("setfit_steps", 0) >= row["setfit_max_steps"]
                              for row in cells) else ""


def _setfit_section(rows: Sequence[Mapping], budgets: Sequence[int]) -> list[str]:
    """What SetFit trained on: pairs and steps of its body (mean over seeds), and its cap, if any."""
    body = []
    for arm in _arms_in_order(rows):
        for budget in budgets:
            cells = [row for row in rows if row["arm"] == arm and row["train_examples"] == budget
                     and row.get("setfit_pairs") is not None]
            if cells:
                caps = {row.get("setfit_max_steps") for row in cells}
                body.append([arm, _budget_header(rows, budget),
                             f"{statistics.fmean(r['setfit_pairs'] for r in cells):,.0f}",
                             f"{statistics.fmean(r['setfit_steps'] for r in cells):,.0f}",
                             "none: SetFit's defaults" if caps == {None} else ", ".join(map(str, sorted(caps - {None})))])
    return ["## SetFit's training", "",
            "Pairs and steps its body was trained on (mean over seeds); a cap, where one was set, is marked "
            "'(capped)' beside the numbers it stopped.", "",
            _table(["Arm", "Labels", "Pairs", "Steps", "Step cap"], body, left_columns=2)]


def _multiplier_section(rows: Sequence[Mapping], efficiency: Mapping, heading: str = "##") -> list[str]:
    reference = efficiency.get("reference")
    curves = efficiency["arms"]
    budgets = sorted({budget for curve in curves.values() for budget in curve["budgets"]})
    body = []
    for arm, curve in curves.items():
        text_by_budget = dict(zip(curve["budgets"], curve["multiplier_text"]))
        area = curve.get("area")
        body.append([arm, *(text_by_budget.get(budget) or MISSING for budget in budgets),
                     MISSING if area is None else f"{100 * area:.1f}"])
    span = efficiency.get("area_budgets")
    area_header = ("Area under the learning curve (log budget, %)" if not span or span[0] == span[1] else
                   f"Area under the learning curve, {span[0]}–{span[1]} labels (log budget, %)")
    header = ["Arm", *(_budget_header(rows, budget) for budget in budgets), area_header]
    return [
        f"{heading} Data multiplier vs {reference}",
        "",
        f"Multiplier: the number of labels `{reference}` needs to reach this arm's mean accuracy (by log-linear "
        f"interpolation of `{reference}`'s learning curve), divided by this arm's number of labels; "
        f"'>' means beyond `{reference}`'s largest budget, '<=' below its smallest.",
        "",
        _table(header, body),
    ]


def _mean_or_missing(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.1f}" if values else MISSING


def _timing_table(rows: Sequence[Mapping], arms: Sequence[str]) -> str:
    body = []
    for arm in arms:
        cells = [row for row in rows if row["arm"] == arm]
        body.append([arm, str(len(cells)),
                     _mean_or_missing([row["train_seconds"] for row in cells if row.get("train_seconds") is not None]),
                     _mean_or_missing([row["cell_seconds"] for row in cells if row.get("cell_seconds") is not None])])
    return _table(["Arm", "Cells", "Mean train seconds", "Mean cell seconds"], body)


def _self_training_section(rows: Sequence[Mapping], budgets: Sequence[int]) -> list[str]:
    """Teacher and student accuracy per round of the self-trained arms (mean over seeds)."""
    body = []
    for arm in _arms_in_order(rows):
        for budget in budgets:
            cells = [row["self_training"] for row in rows
                     if row["arm"] == arm and row["train_examples"] == budget and row.get("self_training")]
            for number in range(len(cells[0]) if cells else 0):
                rounds = [c[number] for c in cells if len(c) > number]
                body.append([arm, _budget_header(rows, budget), str(number + 1),
                             _percent_cell([r["teacher_accuracy"] for r in rounds]),
                             _percent_cell([r["student_accuracy"] for r in rounds]),
                             _mean_or_missing([r["pseudo_labeled"] for r in rounds])])
    return ["## Self-training", "",
            "Per round: the teacher's and the student's test accuracy (mean ± std over seeds, in %) and the "
            "number of pseudo-labeled examples the student was trained on beside the labeled ones.", "",
            _table(["Arm", "Labels", "Round", "Teacher", "Student", "Pseudo-labeled"], body, left_columns=2)]


def _ablation_section(rows: Sequence[Mapping], ablation: Mapping) -> list[str]:
    budget = ablation["budget"]
    body = []
    for label, arm in ablation["arms"]:
        accuracies = _values(rows, arm, budget, "accuracy")
        error = f"{100 * (1 - statistics.fmean(accuracies)):.1f}" if accuracies else MISSING
        body.append([label, arm, _percent_cell(accuracies), error])
    return [
        f"### {ablation['title']} — {_budget_header(rows, budget)} labeled examples",
        "",
        _table(["Variant", "Arm", "Accuracy (%)", "Test error (%)"], body, left_columns=2),
    ]


def summary_markdown(rows: Sequence[Mapping], efficiency: Mapping | None, title: str, *,
                     command: str | None = None, wall_seconds: float | None = None,
                     lm_seconds: float | None = None,
                     ablations: Sequence[Mapping] | None = None, ablation_rows: Sequence[Mapping] | None = None,
                     curve_image: str | None = None) -> str:
    """The sweep summary as GitHub Markdown: accuracy and macro-F1 tables, data multipliers, timings, ablations.
    Ablation tables read `ablation_rows` (default: `rows`), which may hold arms run only for them."""
    rows = _latest_cells(rows)
    arms = _arms_in_order(rows)
    budgets = sorted({row["train_examples"] for row in rows})
    lines = [f"# {title}", ""]
    if command is not None:
        lines += ["Command:", "", "```sh", command, "```", ""]
    if wall_seconds is not None:
        lines += [f"Wall time of this run of the command: {format_duration(wall_seconds)}", ""]
    # A resumed sweep's wall time covers only what was left, so the whole cost is given too (the
    # cells run only for the ablation tables included).
    cell_seconds = sum(row.get("cell_seconds") or 0 for row in _latest_cells([*rows, *(ablation_rows or [])]))
    if lm_seconds is not None:
        lines += [f"Language-model stages (each built once, shared by the arms that use it): "
                  f"{format_duration(lm_seconds)}", ""]
    if cell_seconds:
        lines += [f"Cells, summed: {format_duration(cell_seconds)}", ""]
    if curve_image is not None:
        lines += [f"![Test error vs number of labeled examples]({curve_image})", ""]
    lines += ["Columns are the number of labeled training examples; cells are mean ± sample std over seeds, in %.", ""]
    lines += ["## Test accuracy", "", _metric_table(rows, arms, budgets, "accuracy"), ""]
    lines += ["## Macro-F1", "", _metric_table(rows, arms, budgets, "f1_macro"), ""]
    if efficiency and efficiency.get("arms"):
        lines += [*_multiplier_section(rows, efficiency), ""]
        for other in (efficiency.get("other_references") or {}).values():
            lines += [*_multiplier_section(rows, other), ""]
    lines += ["## Time per cell", "", _timing_table(rows, arms), ""]
    if any(row.get("setfit_pairs") is not None for row in rows):
        lines += [*_setfit_section(rows, budgets), ""]
    if any(row.get("self_training") for row in rows):
        lines += [*_self_training_section(rows, budgets), ""]
    if ablations:
        lines += ["## Ablations", ""]
        extra = rows if ablation_rows is None else _latest_cells(ablation_rows)
        for ablation in ablations:
            lines += [*_ablation_section(extra, ablation), ""]
    return "\n".join(lines)


def card_section(rows: Sequence[Mapping], efficiency: Mapping | None, heading: str = "####") -> str:
    """The learning curves' accuracy table and data multipliers, for a model card."""
    rows = _latest_cells(rows)
    budgets = sorted({row["train_examples"] for row in rows})
    lines = [f"{heading} Test accuracy", "",
             "Mean ± sample std over seeds, in %; columns are the number of labeled training examples.", "",
             _metric_table(rows, _arms_in_order(rows), budgets, "accuracy"), ""]
    if efficiency and efficiency.get("arms"):
        lines += _multiplier_section(rows, efficiency, heading)
    return "\n".join(lines)


def plot_learning_curves(rows: Sequence[Mapping], path: str | os.PathLike, title: str | None = None) -> Path:
    """Test error (%) vs number of labeled examples (log x), one line per arm with a min–max band over seeds."""
    # matplotlib is imported here, not with the module: stages use the formatting helpers above.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    rows = _latest_cells(rows)
    # A bare Figure with its own Agg canvas leaves pyplot's global backend and figure registry untouched.
    figure = Figure(figsize=(9.5, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for arm in _arms_in_order(rows):
        errors_by_budget = {}
        for budget in sorted({row["train_examples"] for row in rows if row["arm"] == arm}):
            accuracies = _values(rows, arm, budget, "accuracy")
            if accuracies:
                errors_by_budget[budget] = [100 * (1 - accuracy) for accuracy in accuracies]
        if not errors_by_budget:
            continue
        budgets, errors = list(errors_by_budget), list(errors_by_budget.values())
        line, = axes.plot(budgets, [statistics.fmean(error) for error in errors], marker="o", label=arm)
        axes.fill_between(budgets, [min(error) for error in errors], [max(error) for error in errors],
                          color=line.get_color(), alpha=0.2, linewidth=0)
    all_budgets = sorted({row["train_examples"] for row in rows})
    axes.set_xscale("log")
    # Label the budgets actually run rather than powers of ten.
    axes.set_xticks(all_budgets, [str(budget) for budget in all_budgets])
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("Number of labeled training examples (log scale)")
    axes.set_ylabel("Test error (%)")
    axes.set_title(title or "Test error vs number of labeled examples")
    axes.grid(True, which="major", alpha=0.4)
    if axes.get_lines():
        # Beside the axes: the curves use the whole plot area.
        axes.legend(title=BAND_NOTE, title_fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    path = Path(path)
    return write_atomically(path, lambda temp: figure.savefig(temp, format="png", dpi=120))


def write_report(rows: Sequence[Mapping], efficiency: Mapping | None, folder: str | os.PathLike, title: str,
                 **summary_options) -> dict[str, Path]:
    """Write summary.md (embedding curve.png) and curve.png into `folder`; `summary_options` go to summary_markdown."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    curve = plot_learning_curves(rows, folder / "curve.png", title=title)
    text = summary_markdown(rows, efficiency, title, curve_image=curve.name, **summary_options)
    summary = write_atomically(folder / "summary.md", lambda temp: temp.write_text(text, encoding="utf-8"))
    return {"summary": summary, "curve": curve}


def write_sweep_report(plan, rows: list[dict], budgets: list[int], num_classes: int, command: str | None,
                       wall_seconds: float | None) -> dict:
    """label_efficiency.json, summary.md and curve.png of a sweep's current rows; the recipe's own
    classifier's card gets the tables. Returns the label-efficiency metrics."""
    from ..metrics.label_efficiency import LabelEfficiency

    sweep = plan.recipe.config.sweep
    # Learning curves from the sweep's budgets only: an ablation cell at another budget would add a
    # point to some arms' curves (the reference's included) and not to others.
    on_curves = set(plan.curve_cells(budgets))
    main = [r for r in rows if (r["examples_per_class"], r["seed"], r["arm"]) in on_curves]

    def against(reference: str) -> dict:
        return LabelEfficiency().compute(arms=[r["arm"] for r in main], budgets=[r["train_examples"] for r in main],
                                         accuracies=[r["accuracy"] for r in main], reference=reference)

    efficiency = against(sweep.reference)
    # The multipliers against the baselines a user knows too (TF-IDF), when the sweep runs them.
    others = [a for a in sweep.also_against if a in sweep.arms and a != sweep.reference and any(r["arm"] == a for r in main)]
    if others:
        efficiency["other_references"] = {a: against(a) for a in others}
    text = json.dumps(efficiency, indent=2)
    write_atomically(plan.output_dir / "label_efficiency.json", lambda temp: temp.write_text(text))
    ablations = [{"title": t.title, "budget": sweep.ablation_examples_per_class * num_classes,
                  "arms": list(t.rows.items())} for t in sweep.ablations]
    write_report(main, efficiency, plan.output_dir, f"Label efficiency: {plan.recipe.config.run.name}",
                 command=command, wall_seconds=wall_seconds, lm_seconds=_lm_seconds(plan),
                 ablations=ablations or None, ablation_rows=rows)
    _show_on_classifier_card(plan, card_section(main, efficiency))
    return efficiency


def _show_on_classifier_card(plan, section: str) -> None:
    """The recipe's own classifier (`lm-transfer run`), when it is built from this same recipe,
    gets the sweep's curve and tables on its model card."""
    from accelerate import PartialState

    from ..cards import write_card
    from ..runner import say_on_main

    recipe = plan.recipe
    if "classify" not in recipe.config.run.stages:
        return
    folder = Path(recipe.config.classify.output_dir)
    if not is_current(folder, recipe.fingerprints()["classify"]):
        return
    shutil.copyfile(plan.output_dir / "curve.png", folder / "curve.png")
    write_card(folder, "classify", recipe.path, recipe.resolved, read_metrics(folder), label_efficiency=section)
    say_on_main(PartialState(), f"sweep: curve and tables added to the card of {folder}")


def _lm_seconds(plan) -> float | None:
    """Wall time of the distinct LM stages the arms use, from their metrics.json."""
    folders = {getattr(arm.recipe.config, stage).output_dir for arm in plan.arms_with_students
               for stage in arm.recipe.config.run.stages}
    seconds = [m.get("stage_wall_seconds", 0) for m in map(read_metrics, folders) if m is not None]
    return sum(seconds) if seconds else None
