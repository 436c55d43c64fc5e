"""Label efficiency of classifier arms against a reference arm (ULMFiT Fig. 3), as an `evaluate` module.

Input: one entry per sweep cell (arm, number of labeled training examples, test accuracy).
For each arm and budget n, with a = the arm's mean accuracy over seeds at n:

- reference labels m: how many labels the reference arm needs to reach a. The reference's
  learning curve is its mean accuracy per budget, (n_1, r_1) ... (n_k, r_k) by budget, read through
  its running maximum R_i = max(r_1..r_i) (a dip in a noisy curve does not make the reference need
  more labels than it already did); m is found at the first budget i with R_i >= a, interpolating
  linearly in log(budget) between (n_{i-1}, R_{i-1}) and (n_i, R_i).
  If a = r_1, m = n_1; if a < r_1, m = n_1 is an upper bound ("below": the reference needs at most
  its smallest budget); if no r_i reaches a, m is unknown and n_k is a lower bound ("above").
- data multiplier: m / n ("12.3x", "> 20x", "<= 0.5x").
- area: the area under mean accuracy over log10(budget) (linear between budgets), divided by the
  log10 span: a mean accuracy in [0, 1] over the log-budget axis. Every arm is integrated over the
  same span, the budgets all arms cover (`area_budgets`: the largest smallest budget to the smallest
  largest one), so areas compare across arms that stop at different budgets; a span of one budget
  gives the accuracy there, and arms whose budgets do not overlap get no area (None).

    LabelEfficiency().compute(arms=[...], budgets=[...], accuracies=[...], reference="scratch")
"""

from __future__ import annotations

import math

import datasets
import evaluate
import numpy as np


class LabelEfficiency(evaluate.Metric):
    """Per arm and budget: mean/std accuracy over seeds, data multiplier against `reference`, and area."""

    def _info(self):
        features = datasets.Features({"arms": datasets.Value("string"), "budgets": datasets.Value("int64"),
                                      "accuracies": datasets.Value("float64")})
        return evaluate.MetricInfo(
            description="Data multiplier and area under the learning curve of each arm against a reference arm.",
            citation="Howard & Ruder (2018), Universal Language Model Fine-tuning for Text Classification, Fig. 3.",
            inputs_description="arms: arm name per cell; budgets: labeled training examples; accuracies: test "
                               "accuracy; reference: the arm to compare against (default 'scratch')",
            features=features)

    def _compute(self, arms, budgets, accuracies, reference: str = "scratch"):
        if len(arms) == 0:
            raise ValueError("label_efficiency: no cells given")
        # budgets go through log(), and a NaN accuracy would silently read as "beats the reference"
        if any(int(b) <= 0 for b in budgets):
            raise ValueError(f"label_efficiency: budgets must be positive label counts, got {sorted(set(budgets))}")
        if not all(math.isfinite(a) for a in accuracies):
            raise ValueError("label_efficiency: accuracies must be finite numbers")
        curves: dict[str, dict[int, list[float]]] = {}
        for arm, budget, accuracy in zip(arms, budgets, accuracies):
            curves.setdefault(arm, {}).setdefault(int(budget), []).append(float(accuracy))
        if reference not in curves:
            raise ValueError(f"label_efficiency: reference arm '{reference}' has no cells (arms: {', '.join(curves)})")
        ref_budgets = sorted(curves[reference])
        ref_means = [float(np.mean(curves[reference][b])) for b in ref_budgets]
        span = (max(min(cells) for cells in curves.values()), min(max(cells) for cells in curves.values()))
        return {"reference": reference, "area_budgets": list(span) if span[0] <= span[1] else None,
                "arms": {arm: _arm_summary(cells, ref_budgets, ref_means, span) for arm, cells in curves.items()}}


def reference_labels(accuracy: float, ref_budgets: list[int], ref_means: list[float]) -> tuple[float | None, str | None]:
    """(labels the reference needs to reach `accuracy`, bound): bound "below" means at most that
    many, "above" means more than its largest budget (labels None)."""
    best = np.maximum.accumulate(ref_means)
    for i, (budget, mean) in enumerate(zip(ref_budgets, best)):
        if mean >= accuracy:
            if i == 0:
                return float(budget), "below" if mean > accuracy else None
            lo_budget, lo_mean = ref_budgets[i - 1], best[i - 1]
            fraction = (accuracy - lo_mean) / (mean - lo_mean)
            return math.exp(math.log(lo_budget) + fraction * (math.log(budget) - math.log(lo_budget))), None
    return None, "above"


def _arm_summary(cells: dict[int, list[float]], ref_budgets: list[int], ref_means: list[float],
                 area_span: tuple[int, int]) -> dict:
    budgets = sorted(cells)
    means = [float(np.mean(cells[b])) for b in budgets]
    out = {"budgets": budgets, "accuracy_mean": means,
           "accuracy_std": [float(np.std(cells[b], ddof=1)) if len(cells[b]) > 1 else 0.0 for b in budgets],
           "seeds": [len(cells[b]) for b in budgets], "reference_labels": [], "multiplier": [],
           "multiplier_bound": [], "multiplier_text": []}
    for budget, mean in zip(budgets, means):
        labels, bound = reference_labels(mean, ref_budgets, ref_means)
        multiplier = (labels if labels is not None else ref_budgets[-1]) / budget
        out["reference_labels"].append(labels)
        out["multiplier"].append(multiplier)
        out["multiplier_bound"].append(bound)
        out["multiplier_text"].append({"above": "> ", "below": "<= ", None: ""}[bound] + _times(multiplier))
    out["area"] = _area(budgets, means, *area_span)
    return out


def _area(budgets: list[int], means: list[float], low: int, high: int) -> float | None:
    if low > high:
        return None
    logs = np.log10(budgets)
    if low == high:
        return float(np.interp(np.log10(low), logs, means))
    # the curve is linear between budgets, so the trapezoid over its own budgets inside the span is exact
    points = np.log10([low, *(b for b in budgets if low < b < high), high])
    return float(np.trapezoid(np.interp(points, logs, means), points) / (points[-1] - points[0]))


def _times(value: float) -> str:
    # compare the rounded value, so 99.96 prints "100x" rather than "100.0x"
    return f"{value:.0f}x" if round(value, 1) >= 100 else f"{value:.1f}x"
