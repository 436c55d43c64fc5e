"""Label-efficiency sweep (`lm-transfer sweep`): every arm x label budget x seed is one cell, a
classifier trained on that many labeled examples and scored on a fixed test subset; and
`lm-transfer train`, one arm trained on all the labels.

    arms.py           an arm: a recipe fragment (arms.yaml, sweep.arm_definitions) and a method
    cell_method.py    the interface every cell method implements (fit -> Fitted)
    methods.py        finetune, probe, tfidf, word_vectors; METHODS, every method by name
    setfit_method.py  setfit: SetFit at its own defaults (a step cap only when asked); a student that keeps its body
    self_training.py  teacher -> pseudo-labels -> student, around any arm
    plan.py           arms, budgets, seeds and data, all checked before any training
    cells.py          one cell: its labeled subset, its classifier, its row
    results.py        results.jsonl, appended as cells finish
    run.py            the sweep, in order
    report.py         label_efficiency.json, summary.md, curve.png
    train.py          `lm-transfer train`: one arm on every label -> one model folder
    choose.py         the arm `train.arm: auto` picks for the data

Pairing: for a (budget, seed) every arm gets the same stratified labeled subset, and for one seed
a smaller budget is a subset of a larger one (`data.stratified_indices`); every arm and seed is
scored on the same test texts.
"""

from .arms import Arm, build_arm
from .plan import Plan, plan_sweep, sweep_data
from .report import write_sweep_report
from .results import append_result, read_results
from .run import run_sweep

__all__ = ["Arm", "Plan", "append_result", "build_arm", "plan_sweep", "read_results", "run_sweep", "sweep_data",
           "write_sweep_report"]
