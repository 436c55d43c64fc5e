"""The recipe's `sweep` section (lm-transfer sweep), typed: its arms, budgets, seeds and ablation tables.

Checked by OmegaConf like every recipe section (pipelines/config.py loads it); what the fields mean
for a run is pipelines/sweep/'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


@dataclass
class SelfTrainingSection:
    """Self-training around an arm: its classifier, trained on a cell's labeled examples, labels a
    seeded sample of unlabeled text; the most confident share (equal per class) joins the labeled
    examples to train the student; each round's student is the next round's teacher."""

    # Unlabeled texts sampled per cell (seeded by the cell's seed): from data.unlabeled_splits, or,
    # when the data has none, from the train split's texts with their labels unused.
    unlabeled: int = 4000
    rounds: int = 1
    # The share of the sample kept as pseudo-labeled examples, split equally over the classes and
    # taken by the teacher's confidence.
    keep: float = 0.5
    # The arm that trains the student (e.g. tfidf_lr); None: the arm itself.
    student: Optional[str] = None


@dataclass
class ArmSection:
    """One arm of a label-efficiency sweep: a recipe fragment merged over the recipe for its cells."""

    # How a cell trains its classifier (pipelines/sweep/methods.py, setfit_method.py): finetune, the classify stage
    # (ULMFiT techniques as configured); probe, the body frozen, pooled features + logistic
    # regression; tfidf, TF-IDF + logistic regression (no model); word_vectors, averaged GloVe or
    # word2vec vectors + logistic regression (no model); setfit, SetFit on the classify
    # section's init_from sentence encoder. None: the method of the arm this one is merged over
    # (finetune when there is none).
    method: Optional[str] = None
    # Start from this arm's definition (built-in or the recipe's) and merge this one over it.
    based_on: Optional[str] = None
    description: str = ""
    # Run this arm only at budgets up to this many examples per class (e.g. the reference arm goes
    # further than expensive arms, so their multipliers stay in range). None: every budget.
    max_examples_per_class: Optional[int] = None
    # The from-scratch baseline of the merged classify section (stages.classify.from_scratch):
    # init_from's architecture with random weights, plain fine-tuning, as classify.compare_scratch.
    from_scratch: Optional[bool] = None
    # The method's own settings, e.g. setfit's {max_steps: 100} (a cap on SetFit's own step count).
    options: Dict[str, Any] = field(default_factory=dict)
    self_training: Optional[SelfTrainingSection] = None
    # An ensemble (ULMFiT sec. 4's bidirectional classifier: forward + backward): the arms whose class
    # probabilities this arm averages, each trained on the cell's labeled examples (a member that is
    # also a sweep arm: its cell of the same budget and seed, run earlier in the same sweep, is reused).
    ensemble: List[str] = field(default_factory=list)
    # Recipe sections to merge over the recipe, e.g. {classify: {peft: {r: 4}}}. Kept unresolved
    # until the arm is built, so ${lm_finetune.output_dir} means the arm's own LM.
    recipe: Dict[str, Any] = field(default_factory=dict)


@dataclass
class AblationTable:
    title: str = MISSING
    # Row label -> arm, in table order.
    rows: Dict[str, str] = MISSING


@dataclass
class SweepSection:
    output_dir: str = MISSING
    arms: List[str] = MISSING
    # Label budgets: per class, or totals (split equally over classes); exactly one of the two.
    examples_per_class: Optional[List[int]] = None
    total_examples: Optional[List[int]] = None
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    # The arm every other arm's data multiplier is measured against.
    reference: str = "scratch"
    # More arms to measure data multipliers against, those of them the sweep runs: the baseline a
    # user knows beside the reference.
    also_against: List[str] = field(default_factory=lambda: ["tfidf_lr"])
    # Stratified, seeded test subset for speed; None: the full test split.
    test_examples: Optional[int] = 2000
    # The pretrained checkpoint of the checkpoint_* arms (Hub id, local folder or packaged model).
    checkpoint: Optional[str] = None
    # A fragment merged over the recipe for every arm (before the arm's own), e.g. shorter
    # documents for the cells: {classify: {max_length: 256}}.
    recipe: Dict[str, Any] = field(default_factory=dict)
    # Extra or tuned arms, merged over the built-in arm of the same name (pipelines/sweep/arms.yaml).
    arm_definitions: Dict[str, ArmSection] = field(default_factory=dict)
    # ULMFiT Tables 6-7: extra arms run at one budget, reported as tables.
    ablation_examples_per_class: Optional[int] = None
    ablations: List[AblationTable] = field(default_factory=list)
    # Keep each fine-tuned cell's classifier in <output_dir>/models/<arm>-<per class>-<seed>, with
    # metrics.json, recipe.yaml and its card, so `lm-transfer publish` takes it (one model per cell).
    save_models: bool = False


@dataclass
class TrainSection:
    """`lm-transfer train`: one method, an arm of the sweep's kind, trained on every labeled example of
    the train split (self-trained on the data's unlabeled splits when the arm says so) and written
    as one classifier folder."""

    # An arm (pipelines/sweep/arms.yaml, or the recipe's sweep.arm_definitions) whose method keeps a
    # model, or auto: chosen by what the data is (pipelines/sweep/choose.py).
    arm: str = "auto"
    output_dir: str = MISSING
