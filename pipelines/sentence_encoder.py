"""The files that make a model folder load in sentence-transformers (>= 6) with the vectors
`lm-transfer embed` makes from it: modules.json (Transformer -> Pooling [-> Normalize]),
sentence_bert_config.json (how many tokens it reads), 1_Pooling/config.json (its pooling) and
config_sentence_transformers.json. `embed` reads the same files back for its defaults, so the two
cannot drift apart.

    from sentence_transformers import SentenceTransformer
    vectors = SentenceTransformer("runs/demo-bbc/embeddings").encode(["oil prices rise"])

The Transformer module loads the folder with `AutoModel`: a classifier folder (and an `embed` output)
as TransferEncoder (BPT3C, backward reading), a forward language model as its own body, which reads at
most what the sentence_bert_config says in one pass, as `embed` does then."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

DEFAULT_MAX_LENGTH = 512  # what `embed` reads of a text when nothing else says

# lm-transfer's pooling -> sentence-transformers' pooling modes, in the order they are concatenated
# (concat pooling is [last, max, mean]: ULMFiT's order, which ST's Pooling keeps when given as a list).
POOLING_MODES = {"concat": ["lasttoken", "max", "mean"], "last": "lasttoken", "mean": "mean"}
# sentence-transformers' older 1_Pooling/config.json (a flag per mode), in the order it concatenates them.
_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max", "pooling_mode_mean_tokens": "mean",
          "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
          "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


def write_files(folder: str | Path, pooling: str, max_seq_length: int, dim: int, normalize: bool = False) -> None:
    """Writes the sentence-transformers files into a model folder (`dim`: the body's hidden size;
    a concat vector is 3 x dim wide)."""
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.base.modules.normalize.Normalize"})
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    _write_json(folder / "config_sentence_transformers.json", {"similarity_fn_name": "cosine"})
    (folder / "1_Pooling").mkdir(exist_ok=True)
    _write_json(folder / "1_Pooling" / "config.json", {"embedding_dimension": dim, "pooling_mode": POOLING_MODES[pooling],
                                                     "include_prompt": True})
    if normalize:
        (folder / "2_Normalize").mkdir(exist_ok=True)
    else:  # (a folder written again without it)
        shutil.rmtree(folder / "2_Normalize", ignore_errors=True)


def language_model_reads(recurrent: bool, model_max_length: int) -> int:
    """The tokens a language model's folder is embedded from: a recurrent body reads any length
    (DEFAULT_MAX_LENGTH); a transformer, at most the length it was trained on, in one pass."""
    return DEFAULT_MAX_LENGTH if recurrent else min(DEFAULT_MAX_LENGTH, model_max_length)


def read_defaults(folder: str | Path) -> dict:
    """{pooling, max_length} a folder's sentence-transformers files give (empty without them)."""
    folder = Path(folder)
    try:
        seq = json.loads((folder / "sentence_bert_config.json").read_text())
        pool = json.loads((folder / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    mode = pool.get("pooling_mode") or [name for flag, name in _FLAGS.items() if pool.get(flag)]
    mode = mode[0] if isinstance(mode, list) and len(mode) == 1 else mode
    pooling = next((name for name, modes in POOLING_MODES.items() if modes == mode), None)
    return {key: value for key, value in (("pooling", pooling), ("max_length", seq.get("max_seq_length")))
            if value is not None}


def _write_json(path: Path, content) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")
