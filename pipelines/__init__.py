"""lm-transfer: ULMFiT-style transfer learning on the Hugging Face stack.

Importing the package registers its models with the transformers Auto classes, so saved folders
load with `AutoModelForCausalLM` / `AutoModelForSequenceClassification.from_pretrained`, and in
`pipeline()`. The one importer that defers it is the `lm-transfer` command (lm_transfer_cli): it
answers --help and a recipe's mistakes without torch and transformers (~10 CPU-s of imports), and
calls `register_models()` before a command loads a model.
"""

import sys

__version__ = "0.1.0"


def register_models() -> None:
    """Register lm-transfer's model classes with the transformers Auto classes (importing them does)."""
    from .models import awd_lstm, classifier  # noqa: F401


if "lm_transfer_cli" not in sys.modules:
    register_models()
