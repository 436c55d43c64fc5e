"""lm-transfer: ULMFiT-style transfer learning on the Hugging Face stack.

Importing the package registers its models with the transformers Auto classes, so saved
folders load with `AutoModelForCausalLM` / `AutoModelForSequenceClassification.from_pretrained`.
"""

from .models import awd_lstm, classifier  # noqa: F401  (registers the Auto classes)

__version__ = "0.1.0"
