"""AWD-LSTM (Merity et al. 2017, "Regularizing and Optimizing LSTM Language Models"), as used by ULMFiT.

A stack of plain LSTMs regularised by five kinds of dropout, written as transformers v5 models so that
Trainer, save_pretrained/from_pretrained, the Auto classes, generate() and peft all work unchanged.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    GenerationConfig,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.utils import ModelOutput

LstmState = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # one (h, c) per layer, each (1, B, size)


@strict
class AwdLstmConfig(PreTrainedConfig):
    model_type = "awd_lstm"
    # Trainer.evaluate/predict would otherwise try to gather the recurrent state as if it were logits.
    keys_to_ignore_at_inference = ["state"]

    vocab_size: int = 16000
    embedding_size: int = 400
    hidden_size: int = 1150
    num_hidden_layers: int = 3
    # Language-model strength (fastai's AWD-LSTM LM config); a classifier built on the body takes
    # CLASSIFIER_DROPOUTS instead. `float | int` so that `output_dropout=0` passes strict validation.
    output_dropout: float | int = 0.1  # locked dropout on the last LSTM's output
    hidden_dropout: float | int = 0.15  # locked dropout between LSTM layers
    input_dropout: float | int = 0.25  # locked dropout on the embedding output
    embedding_dropout: float | int = 0.02  # drops whole word types
    weight_dropout: float | int = 0.2  # DropConnect on each LSTM's hidden-to-hidden matrix
    # Scales all five dropouts at once (fastai's drop_mult: 0.3 for IMDb LM fine-tuning, 0.5 for its classifier).
    drop_mult: float | int = 1.0
    tie_word_embeddings: bool = True
    # Embedding (and tied decoder) init U(-r, r). The paper's 0.1 left a 7.5M-parameter LM on its unigram
    # plateau (loss 6.9 on gutenberg) for its first 120 steps with Adam; 0.3 was at 6.1 by then (measured).
    initializer_range: float = 0.3
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None


# The dropouts of a classifier on an AWD-LSTM body (fastai's AWD-LSTM classifier config): stronger
# than a language model's, because a few labeled documents are far easier to memorise than a corpus.
CLASSIFIER_DROPOUTS = {"output_dropout": 0.4, "hidden_dropout": 0.3, "input_dropout": 0.4,
                       "embedding_dropout": 0.05, "weight_dropout": 0.5, "drop_mult": 1.0}


def dropout_rate(config: AwdLstmConfig, name: str) -> float:
    """One of the five dropouts as applied: its configured value times drop_mult."""
    return getattr(config, name) * config.drop_mult


@dataclass
class AwdLstmOutput(ModelOutput):
    last_hidden_state: torch.FloatTensor | None = None
    state: LstmState | None = None


@dataclass
class AwdLstmCausalLMOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    state: LstmState | None = None


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Variational dropout on (B, T, C): one mask per sequence, reused at every time step."""
    if not training or p == 0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * mask


class WeightDropLstm(nn.Module):
    """A one-layer LSTM whose hidden-to-hidden matrix gets a fresh DropConnect mask every forward pass.

    The trainable matrix lives here as `weight_hh_l0_raw`; the LSTM only ever sees a plain (dropped) tensor
    under `weight_hh_l0`. Assigning it goes through RNNBase.__setattr__, which also refreshes `_flat_weights`,
    the list the LSTM kernel actually reads.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.weight_hh_l0_raw = nn.Parameter(self.lstm.weight_hh_l0.detach().clone())
        del self.lstm._parameters["weight_hh_l0"]  # so it is neither trained nor saved twice

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                weight_dropout: float = 0.0):
        if self.training and weight_dropout > 0:
            weight = F.dropout(self.weight_hh_l0_raw, p=weight_dropout, training=True)
        else:
            weight = self.weight_hh_l0_raw.view_as(self.weight_hh_l0_raw)  # a plain Tensor, or nn.Module re-registers it
        self.lstm.weight_hh_l0 = weight
        return self.lstm(x, state)


class AwdLstmPreTrainedModel(PreTrainedModel):
    config_class = AwdLstmConfig
    config: AwdLstmConfig
    base_model_prefix = "model"
    # The loss is a mean over tokens, so Trainer must divide it by the gradient accumulation steps itself.
    accepts_loss_kwargs = False
    # Other code checks this to carry state across chunks instead of using attention/KV caches.
    is_recurrent = True

    @torch.no_grad()
    def _init_weights(self, module):
        # `transformers.initialization` functions skip tensors already loaded from a checkpoint.
        r = self.config.initializer_range
        if isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -r, r)
        elif isinstance(module, nn.Linear):
            init.uniform_(module.weight, -r, r)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):  # PyTorch's own LSTM init: U(-1/sqrt(H), 1/sqrt(H))
            bound = module.hidden_size**-0.5
            for param in module.parameters(recurse=False):
                init.uniform_(param, -bound, bound)
        elif isinstance(module, WeightDropLstm):
            bound = module.lstm.hidden_size**-0.5
            init.uniform_(module.weight_hh_l0_raw, -bound, bound)


class AwdLstmModel(AwdLstmPreTrainedModel):
    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size)
        n = config.num_hidden_layers
        # The last layer outputs embedding_size so the decoder can share the embedding matrix.
        sizes = [config.embedding_size] + [config.hidden_size] * (n - 1) + [config.embedding_size]
        self.layers = nn.ModuleList(
            WeightDropLstm(sizes[i], sizes[i + 1]) for i in range(n)
        )
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def _embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        p = dropout_rate(self.config, "embedding_dropout")
        if self.training and p > 0:
            # Zero whole rows of the vocabulary. Masking the module's *output* (not its weight) keeps this
            # working when the embedding is wrapped, e.g. by a peft LoRA layer.
            mask = x.new_empty(self.config.vocab_size, 1).bernoulli_(1 - p) / (1 - p)
            x = x * mask[input_ids]
        return x

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,  # ignored: inputs are right-padded, callers mask outputs
        state: LstmState | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> AwdLstmOutput | tuple:
        # Read at every call, so a loaded body takes a classifier's dropouts by changing its config.
        def rate(name: str) -> float:
            return dropout_rate(self.config, name)

        x = locked_dropout(self._embed(input_ids), rate("input_dropout"), self.training)
        new_state = []
        for i, layer in enumerate(self.layers):
            # None means zeros
            x, layer_state = layer(x, None if state is None else state[i], rate("weight_dropout"))
            new_state.append(layer_state)  # not detached: the caller decides where to truncate BPTT
            last = i == len(self.layers) - 1
            x = locked_dropout(x, rate("output_dropout" if last else "hidden_dropout"), self.training)
        out = AwdLstmOutput(last_hidden_state=x, state=tuple(new_state))
        return out if return_dict else out.to_tuple()


class AwdLstmForCausalLM(AwdLstmPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        self.model = AwdLstmModel(config)
        self.lm_head = nn.Linear(config.embedding_size, config.vocab_size)  # the bias is never tied
        self.post_init()
        # The LSTM state is the cache: generate() feeds each new token with the state the prefix left
        # (constant in size, however long the prefix), as RWKV's and Mamba's models do.
        self.generation_config = GenerationConfig(
            use_cache=True,
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
        )

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    # generate(): the state is the cache, under transformers' name for a recurrent model's (`state`, as
    # RWKV's). Unpadded prompts: the LSTM reads every token it is given, padding included. A `state`
    # passed to generate() is the state after some earlier text, and the whole prompt follows it.
    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # (a KV cache beside the state would be the one beam search reorders)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, state: LstmState | None = None,
                                      is_first_iteration: bool = False, **kwargs):
        # The first step reads the whole prompt; later ones only the token just generated, from the state the
        # earlier ones left (not transformers' default slicing, which follows a KV cache's length).
        if state is not None and not is_first_iteration:
            input_ids = input_ids[:, -1:]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "state": state}

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1):
        # The state is not a transformers Cache, so generate() would not carry it by itself.
        if getattr(outputs, "state", None) is not None:
            model_kwargs["state"] = outputs.state
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder, num_new_tokens)

    def _reorder_cache(self, state: LstmState, beam_idx: torch.Tensor) -> LstmState:
        """Beam search: each beam continues from the state of the beam it extends."""
        return tuple((h.index_select(1, beam_idx), c.index_select(1, beam_idx)) for h, c in state)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        state: LstmState | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> AwdLstmCausalLMOutput | tuple:
        out = self.model(input_ids, attention_mask=attention_mask, state=state)
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:
            # HF convention: labels are the inputs; token t predicts label t+1.
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten().to(logits.device), ignore_index=-100
            )
        result = AwdLstmCausalLMOutput(loss=loss, logits=logits, state=out.state)
        return result if return_dict else result.to_tuple()


# exist_ok: re-importing (or reloading) this module must not crash.
AutoConfig.register("awd_lstm", AwdLstmConfig, exist_ok=True)
AutoModel.register(AwdLstmConfig, AwdLstmModel, exist_ok=True)
AutoModelForCausalLM.register(AwdLstmConfig, AwdLstmForCausalLM, exist_ok=True)
