"""LoRA through peft for the classify stage: adapters on the backbone, the new head trained in full,
merged back before saving so the output folder is a plain model."""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from .config import PeftSection


def lora_targets(model: nn.Module) -> list[str]:
    """Every Linear and Embedding layer of the backbone (for AWD-LSTM: its embedding; the LSTM
    weights are not Linear layers)."""
    return [name for name, module in model.named_modules()
            if name.startswith("backbone.") and isinstance(module, (nn.Linear, nn.Embedding))]


def apply_lora(model: nn.Module, section: PeftSection) -> PeftModel:
    targets = section.target_modules or lora_targets(model)
    config = LoraConfig(r=section.r, lora_alpha=section.alpha, lora_dropout=section.dropout,
                        target_modules=targets, modules_to_save=["head"])
    return get_peft_model(model, config)


def merge_lora(model: nn.Module) -> nn.Module:
    return model.merge_and_unload() if isinstance(model, PeftModel) else model
