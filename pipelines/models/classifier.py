"""One sequence classifier for every backbone: a language model's body + ULMFiT's pooling head.

The body is any `AutoModel` (this package's AWD-LSTM, Llama, GPT-2, BERT, ...); documents are
read with BPT3C and pooled with concat pooling, then a small MLP head predicts the label.
Importing this module (as importing `pipelines` does) registers the classes with the Auto classes,
so saved folders load with `AutoModelForSequenceClassification.from_pretrained`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init
from transformers import (AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedConfig,
                          PreTrainedModel)
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput

from ..ulmfit import concat_pool, encode_bpt3c, reverse_tokens
from .awd_lstm import AwdLstmConfig, AwdLstmModel


class TransferClassifierConfig(PreTrainedConfig):
    model_type = "lm_transfer_classifier"
    sub_configs_defaults = {"backbone": SubConfigSpec(config_class=AutoConfig, model_type="awd_lstm")}

    backbone: dict | PreTrainedConfig | None = None
    pooling: str = "concat"  # concat | last | mean (config.POOLINGS)
    # forward, or backward: each document read last token first (the body is a backward LM's).
    direction: str = "forward"
    head_hidden: int = 50
    head_dropout: float = 0.1
    bptt: int = 70
    # Documents are cut to this many tokens (BPT3C reads them in bptt-sized chunks). Not named
    # max_length: transformers treats that name as a generation parameter.
    max_tokens: int = 512
    # mlp: ULMFiT's head (PoolingHead); linear: one linear layer, as a logistic-regression head fitted on
    # the pooled vectors becomes (pipelines/linear_head.py).
    head: str = "mlp"
    # Each pooled vector scaled to length 1 before the head (and in `embed`), as a sentence encoder
    # with a Normalize module (all-MiniLM-L6-v2's) gives it to SetFit's head.
    normalize: bool = False


class PoolingHead(nn.Module):
    """ULMFiT's classifier head: two blocks of batch norm, dropout and a linear layer, ReLU between.
    Batch norm matters here: it standardises each pooled feature across documents, so features that
    vary little between documents (common in a young language model) still separate classes."""

    def __init__(self, in_features: int, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.norm1 = nn.BatchNorm1d(in_features)
        self.dense = nn.Linear(in_features, hidden)
        self.norm2 = nn.BatchNorm1d(hidden)
        self.out_proj = nn.Linear(hidden, num_labels)
        self.dropout = nn.Dropout(dropout)

    def _norm(self, norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        # A training batch of one document has no batch statistics: use the running ones.
        if self.training and x.size(0) == 1:
            return nn.functional.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias)
        return norm(x)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dense(self.dropout(self._norm(self.norm1, pooled))))
        return self.out_proj(self.dropout(self._norm(self.norm2, x)))


class LinearHead(nn.Module):
    """Logits as one linear map of the pooled vector: a logistic-regression head, as weights."""

    def __init__(self, in_features: int, num_labels: int):
        super().__init__()
        self.out_proj = nn.Linear(in_features, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out_proj(pooled)


def head_for(config, width: int) -> nn.Module:
    """The head a classifier config asks for, over a body whose hidden states are `width` wide."""
    pooled = 3 * width if config.pooling == "concat" else width
    if config.head == "linear":
        return LinearHead(pooled, config.num_labels)
    return PoolingHead(pooled, config.head_hidden, config.num_labels, config.head_dropout)


def hidden_width(config: PreTrainedConfig) -> int:
    if isinstance(config, AwdLstmConfig):
        return config.embedding_size
    return config.hidden_size


class TransferClassifier(PreTrainedModel):
    config_class = TransferClassifierConfig
    base_model_prefix = "backbone"
    accepts_loss_kwargs = False  # the loss is a plain mean: Trainer scales it under accumulation
    _supports_sdpa = True  # the body is a stock transformers model: let it keep its attention kernel

    def __init__(self, config: TransferClassifierConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config.backbone)
        self.head = head_for(config, hidden_width(config.backbone))
        self.post_init()

    @classmethod
    def from_body(cls, body: PreTrainedModel, **config_kwargs) -> "TransferClassifier":
        """A classifier around an existing (e.g. pre-trained) body. The config gets a copy of the
        body's config: building a composite config resets its sub-config's attention
        implementation, which must not reach the live body."""
        config = TransferClassifierConfig(backbone=body.config.to_dict(), **config_kwargs)
        return cls(config, backbone=body)

    def _init_weights(self, module):
        # Only the head is new; the body keeps its own (pre-trained or own-init) weights.
        if isinstance(module, nn.Linear) and any(module is m for m in self.head.modules()):
            init.kaiming_uniform_(module.weight, a=5 ** 0.5)
            init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d) and any(module is m for m in self.head.modules()):
            # Buffers too: a head missing from a checkpoint is allocated empty, not constructed.
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pooled(encode_bpt3c(self.backbone, input_ids, attention_mask, self.config.bptt), attention_mask,
                      self.config.pooling, self.config.normalize)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Each document's vector as the head reads it (read_documents, pooled). Also what `lm-transfer
        embed` and the frozen probe use."""
        hidden, attention_mask = read_documents(self.backbone, self.config, input_ids, attention_mask)
        return pooled(hidden, attention_mask, self.config.pooling, self.config.normalize)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> SequenceClassifierOutput:
        logits = self.head(self.embed(input_ids, attention_mask).float())
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class AwdLstmForSequenceClassification(TransferClassifier):
    """What `AutoModelForSequenceClassification` builds from an AWD-LSTM config or language-model
    folder: the LM's body (its `model.*` weights) with the same concat-pooling head. Head settings
    not in the config take TransferClassifierConfig's defaults (and are saved with it)."""

    config_class = AwdLstmConfig
    base_model_prefix = "model"
    _supports_sdpa = False  # no attention in an LSTM

    def __init__(self, config: AwdLstmConfig):
        defaults = TransferClassifierConfig()
        for key in ("pooling", "direction", "head_hidden", "head_dropout", "bptt", "max_tokens", "head", "normalize"):
            if not hasattr(config, key):
                setattr(config, key, getattr(defaults, key))
        PreTrainedModel.__init__(self, config)
        self.model = AwdLstmModel(config)
        self.head = head_for(config, config.embedding_size)
        self.post_init()

    @property
    def backbone(self) -> AwdLstmModel:
        return self.model


class TransferEncoder(PreTrainedModel):
    """A classifier's body read as `lm-transfer embed` reads it, for `AutoModel` (and so for
    sentence-transformers): each document's first max_tokens tokens, reversed for a backward model,
    read with BPT3C. `last_hidden_state` is aligned with the input's attention mask (padding stays
    where it was), so a mean, max or last-token pooling over it is the classifier's own;
    `pooler_output` is the vector of the config's pooling. Loads a classifier folder without its head."""

    config_class = TransferClassifierConfig
    base_model_prefix = "backbone"
    _keys_to_ignore_on_load_unexpected = [r"^head\."]
    _supports_sdpa = True

    def __init__(self, config: TransferClassifierConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config.backbone)
        self.post_init()

    def _init_weights(self, module):
        pass  # nothing new: the body keeps its own weights

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs) -> BaseModelOutputWithPooling:
        hidden, attention_mask = read_documents(self.backbone, self.config, input_ids, attention_mask)
        return BaseModelOutputWithPooling(last_hidden_state=hidden,
                                          pooler_output=pooled(hidden, attention_mask, self.config.pooling,
                                                               self.config.normalize))


def read_documents(body: PreTrainedModel, config: TransferClassifierConfig, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states, attention mask) of each document's first max_tokens tokens, reversed for a
    backward model (the same tokens as forward: the document's first max_tokens), read with BPT3C."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    input_ids, attention_mask = input_ids[:, :config.max_tokens], attention_mask[:, :config.max_tokens]
    if config.direction == "backward":
        input_ids = reverse_tokens(input_ids, attention_mask)
    return encode_bpt3c(body, input_ids, attention_mask, config.bptt), attention_mask


def pooled(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, normalize: bool = False) -> torch.Tensor:
    """One vector per document: concat ([last, max, mean]), last or mean over the non-padding positions;
    scaled to length 1 when `normalize`."""
    vectors = concat_pool(hidden, attention_mask)
    width = hidden.size(-1)
    vectors = {"concat": vectors, "last": vectors[:, :width], "mean": vectors[:, 2 * width:]}[pooling]
    return nn.functional.normalize(vectors, dim=-1) if normalize else vectors


AutoConfig.register("lm_transfer_classifier", TransferClassifierConfig, exist_ok=True)
AutoModel.register(TransferClassifierConfig, TransferEncoder, exist_ok=True)
AutoModelForSequenceClassification.register(TransferClassifierConfig, TransferClassifier, exist_ok=True)
AutoModelForSequenceClassification.register(AwdLstmConfig, AwdLstmForSequenceClassification, exist_ok=True)
