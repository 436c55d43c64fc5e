"""The label_efficiency evaluate module on synthetic learning curves with known answers."""

import json
import math

import pytest

from pipelines.metrics import LabelEfficiency
from pipelines.metrics.label_efficiency import _times

REFERENCE = {10: 0.5, 100: 0.7, 1000: 0.9}


def compute(arm_curve: dict, reference: dict = REFERENCE, arm: str = "ulmfit"):
    cells = [("scratch", b, a) for b, a in reference.items()] + [(arm, b, a) for b, a in arm_curve.items()]
    arms, budgets, accuracies = zip(*cells)
    return LabelEfficiency().compute(arms=list(arms), budgets=list(budgets), accuracies=list(accuracies))


def test_multiplier_in_range_by_log_linear_interpolation():
    result = compute({10: 0.7})["arms"]["ulmfit"]
    assert result["reference_labels"] == pytest.approx([100])
    assert result["multiplier"] == pytest.approx([10.0]) and result["multiplier_text"] == ["10.0x"]
    result = compute({10: 0.8})["arms"]["ulmfit"]
    assert result["reference_labels"] == pytest.approx([10 ** 2.5])  # halfway between 100 and 1000 in log
    assert result["multiplier"] == pytest.approx([10 ** 1.5]) and result["multiplier_text"] == ["31.6x"]
    assert result["multiplier_bound"] == [None]


def test_beyond_the_reference_is_a_lower_bound():
    result = compute({10: 0.95})["arms"]["ulmfit"]
    assert result["multiplier_bound"] == ["above"] and result["reference_labels"] == [None]
    assert result["multiplier"] == [100.0] and result["multiplier_text"] == ["> 100x"]


def test_below_the_reference_smallest_budget_is_an_upper_bound():
    result = compute({100: 0.4})["arms"]["ulmfit"]
    assert result["multiplier_bound"] == ["below"] and result["multiplier_text"] == ["<= 0.1x"]
    assert result["reference_labels"] == [10.0] and result["multiplier"] == pytest.approx([0.1])


def test_flat_reference():
    flat = {10: 0.6, 100: 0.6, 1000: 0.6}
    at = compute({50: 0.6}, flat)["arms"]["ulmfit"]
    assert at["multiplier_bound"] == [None] and at["reference_labels"] == [10.0] and at["multiplier"] == [0.2]
    above = compute({50: 0.61}, flat)["arms"]["ulmfit"]
    assert above["multiplier_bound"] == ["above"] and above["multiplier"] == pytest.approx([1000 / 50])


def test_noisy_reference_uses_the_first_crossing():
    noisy = {10: 0.5, 100: 0.8, 1000: 0.7, 10000: 0.9}
    result = compute({10: 0.75}, noisy)["arms"]["ulmfit"]
    assert result["reference_labels"][0] == pytest.approx(10 ** (1 + 0.25 / 0.3))  # not between 1000 and 10000
    assert result["multiplier_bound"] == [None]


def test_a_dip_in_the_reference_is_read_through_its_running_maximum():
    # 0.65 lies between 0.6 (reached at 10 labels, then a dip to 0.5 at 100) and 0.9 at 1,000: the
    # reference already had 0.6 at 100 labels, so interpolate from (100, 0.6), not from (100, 0.5).
    dip = {10: 0.6, 100: 0.5, 1000: 0.9}
    result = compute({10: 0.65}, dip)["arms"]["ulmfit"]
    assert result["reference_labels"][0] == pytest.approx(100 * 10 ** (0.05 / 0.3))
    # its own dip reads as reached earlier: the reference needs at most 10 labels for 0.5
    assert compute({}, dip)["arms"]["scratch"]["multiplier_text"] == ["1.0x", "<= 0.1x", "1.0x"]


def test_reference_against_itself_is_one_where_its_curve_rises():
    result = compute({})["arms"]["scratch"]
    assert result["multiplier"] == pytest.approx([1.0, 1.0, 1.0])
    assert result["multiplier_bound"] == [None, None, None] and result["multiplier_text"] == ["1.0x"] * 3


def test_mean_and_std_over_seeds():
    result = LabelEfficiency().compute(arms=["scratch"] * 3, budgets=[10, 10, 100], accuracies=[0.6, 0.8, 0.9])
    arm = result["arms"]["scratch"]
    assert arm["budgets"] == [10, 100] and arm["seeds"] == [2, 1]
    assert arm["accuracy_mean"] == pytest.approx([0.7, 0.9])
    assert arm["accuracy_std"] == pytest.approx([math.sqrt(0.02), 0.0])


@pytest.mark.parametrize("curve, area", [({10: 0.8, 100: 0.8, 1000: 0.8}, 0.8), (REFERENCE, 0.7), ({50: 0.65}, 0.65),
                                         ({10: 0.5, 1000: 0.9}, 0.7)])
def test_area_under_the_learning_curve_on_the_log_budget_axis(curve, area):
    assert compute(curve)["arms"]["ulmfit"]["area"] == pytest.approx(area)


def test_area_spans_the_budgets_every_arm_covers():
    # The reference runs to 1,000 labels, the arm stops at 100: both are integrated over 10-100, so
    # the reference's accuracy at 1,000 does not inflate its area against the arm's.
    result = compute({10: 0.6, 100: 0.8})
    assert result["area_budgets"] == [10, 100]
    assert result["arms"]["scratch"]["area"] == pytest.approx(0.6)
    assert result["arms"]["ulmfit"]["area"] == pytest.approx(0.7)
    # a span edge between an arm's budgets reads its curve there, linearly in log budget
    inside = compute({100: 0.8, 10000: 1.0})  # span 100-1000; the arm reads 0.9 at 1,000
    assert inside["area_budgets"] == [100, 1000] and inside["arms"]["ulmfit"]["area"] == pytest.approx(0.85)


def test_arms_without_common_budgets_get_no_area():
    result = compute({5000: 0.9, 10000: 0.95})
    assert result["area_budgets"] is None
    assert result["arms"]["ulmfit"]["area"] is None and result["arms"]["scratch"]["area"] is None


def test_missing_reference_names_the_arms():
    with pytest.raises(ValueError, match="reference arm 'scratch' has no cells.*ulmfit"):
        LabelEfficiency().compute(arms=["ulmfit"], budgets=[10], accuracies=[0.5])


@pytest.mark.parametrize("cells, message", [(([], [], []), "no cells"),
                                            ((["scratch"], [0], [0.5]), "positive"),
                                            ((["scratch"], [10], [float("nan")]), "finite")])
def test_bad_inputs_raise(cells, message):
    arms, budgets, accuracies = cells
    with pytest.raises(ValueError, match=message):
        LabelEfficiency().compute(arms=arms, budgets=budgets, accuracies=accuracies)


def test_multiplier_text_switches_to_integers_at_100():
    result = compute({10: 0.95, 1: 0.95})["arms"]["ulmfit"]
    assert result["multiplier_text"] == ["> 1000x", "> 100x"]
    assert _times(99.96) == "100x" and _times(99.94) == "99.9x"  # rounds before choosing the format


def test_result_is_json():
    result = compute({10: 0.95, 100: 0.8})
    assert json.loads(json.dumps(result)) == result
