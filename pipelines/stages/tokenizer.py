"""Stage 1: a subword tokenizer trained with `tokenizers` on the pre-training text, or a
checkpoint's own tokenizer."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..backbones import load_tokenizer
from ..data import lm_text_splits

SPECIAL = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}


def build_tokenizer(texts, algorithm: str, vocab_size: int, min_frequency: int = 2,
                    lowercase: bool = False) -> PreTrainedTokenizerFast:
    specials = list(SPECIAL.values())
    if algorithm == "bpe":  # byte-level: every string is encodable, no <unk> at run time
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=True)
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                          show_progress=True)
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=1_000_000, **SPECIAL)


def run(ctx) -> dict:
    cfg = ctx.config
    if not ctx.state.is_main_process:
        return {}  # one process builds and writes the tokenizer; the runner holds the others
    if cfg.from_checkpoint:
        tokenizer = load_tokenizer(cfg.from_checkpoint)
        texts_seen = 0
    else:
        train, _ = lm_text_splits(cfg.data, ctx.seed)
        column, seen = cfg.data.text_column, [0]

        def texts():  # in batches: a stream, or a large dataset, is never held whole
            for batch in train.iter(batch_size=1000):
                seen[0] += len(batch[column])
                yield from batch[column]

        tokenizer = build_tokenizer(texts(), cfg.algorithm, cfg.vocab_size, cfg.min_frequency, cfg.lowercase)
        texts_seen = seen[0]
    tokenizer.save_pretrained(ctx.partial_dir)
    return {"vocab_size": len(tokenizer), "training_texts": texts_seen}
