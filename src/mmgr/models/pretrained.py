"""A pretrained Hugging Face causal LM as the SID generator (`model.kind: llm`; TriAlignGR's LLM path).

The LM keeps its own vocabulary and ids; the run's SID tokens (codes, task prompts, mmgr's specials, user buckets)
are appended after it, as new tokens of its tokenizer (`extend_tokenizer`). Text tokens of the run's vocabulary are
the LM's own subword tokens (`model.words` is the LM's tokenizer). Training is LoRA (peft) on the LM's projections,
with the appended tokens' embeddings trainable and every original weight frozen.

The run's vocabulary (`Vocabulary`, a few thousand tokens) stays the model's interface: inputs are run token ids,
mapped to the LM's ids; logits are over the run's tokens only (the LM's output rows of those tokens, and the new
rows), so the trie search, the losses and the text codec work unchanged, and no step computes the LM's 262k-wide
softmax. Appended tokens live in their own table instead of a resized embedding: the same model as HF's
`resize_token_embeddings` with only the new rows trained, without copying or saving the frozen matrix.

The offline default is gemma-3-270m (its GGUF package, converted once into the mmgr cache); any local folder or
hub name of a transformers causal LM works (`model.llm.pretrained`).
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmgr.config import ModelConfig
from mmgr.errors import MmgrError
from mmgr.kvcache import cache_argument, output_with_cache, returned_cache
from mmgr.tokenizers.codes import Vocabulary

LLM_INSTALL = "pip install 'mmgr[llm]'"
OWN_SPECIALS = {"<bos>": "bos_token_id", "<eos>": "eos_token_id", "<pad>": "pad_token_id", "<unk>": "unk_token_id"}


def token_names(vocab: Vocabulary) -> list[str]:
    """Each run token's string in the extended LM tokenizer: `<mmgr:NAME>` for mmgr's specials and task prompts
    (`<mmgr:eos>`, `<mmgr:task:sid->title>`), `<mmgr:user_i>`, `<mmgr:MODALITY_LEVEL_CODE>` for codes (a namespace
    no LM vocabulary uses, so each is a new token); text tokens are "" (they are the LM's own)."""
    names = [f"<mmgr:{name[1:-1]}>" for name in vocab.specials] + [f"<mmgr:user_{i}>" for i in
                                                                    range(vocab.user_buckets)]
    for modality, sizes in vocab.levels.items():
        names += [f"<mmgr:{modality}_{level}_{code}>" for level, size in enumerate(sizes) for code in range(size)]
    return names + [""] * len(vocab.words)


def extend_tokenizer(tokenizer: Any, vocab: Vocabulary) -> np.ndarray:
    """Append the run's SID tokens to `tokenizer` (its own ids unchanged) and return int64[V_run]: each run token's
    id in the extended tokenizer. <bos>/<eos>/<pad>/<unk> are the LM's own where it has them and no other of them
    has the same id (Qwen's pad is its eos: mmgr's <pad> is then appended); text tokens are the LM's ids."""
    names = token_names(vocab)
    own: dict[str, int] = {}
    for special, attr in OWN_SPECIALS.items():
        token = getattr(tokenizer, attr, None)
        if token is not None and token not in own.values():
            own[special] = token
    appended = [name for special, name in zip(vocab.specials, names, strict=False) if special not in own]
    appended += names[len(vocab.specials):vocab.word_offset]                  # user buckets and codes
    taken = sorted(set(appended) & set(tokenizer.get_vocab()))
    if taken:
        raise MmgrError(f"the LM's tokenizer already has tokens named like mmgr's ({', '.join(taken[:3])}); "
                        "use another model.llm.pretrained")
    tokenizer.add_tokens(appended, special_tokens=True)
    specials = len(vocab.specials)
    ids = [own[special] if special in own else tokenizer.convert_tokens_to_ids(name)
           for special, name in zip(vocab.specials, names[:specials], strict=True)]
    ids += tokenizer.convert_tokens_to_ids(names[specials:vocab.word_offset])
    return np.array([*ids, *vocab.words], dtype=np.int64)


class PretrainedSidLM(nn.Module):
    """A causal LM over the run's vocabulary: run ids in, run-vocabulary logits out (`loss` when `labels` given),
    with a key/value cache like any transformers causal LM (the trie search steps it through `cache`)."""

    def __init__(self, lm: nn.Module, lm_ids: np.ndarray, first_new: int, fingerprint: str, seed: int = 0) -> None:
        super().__init__()
        self.lm = lm
        self.register_buffer("lm_ids", torch.from_numpy(lm_ids), persistent=False)        # (V_run,)
        embeddings = lm.get_input_embeddings().weight                                      # (V_lm, D)
        self.first_new, self.appended = first_new, int((lm_ids >= first_new).sum())
        self.new_embeddings = nn.Parameter(initial_rows(embeddings.detach(), self.appended, seed))
        head = lm.get_output_embeddings().weight
        self.tied = head.data_ptr() == embeddings.data_ptr()        # one matrix in and out (Gemma)
        if not self.tied:
            self.new_output = nn.Parameter(initial_rows(head.detach(), self.appended, seed + 1))
        self.softcap = getattr(lm.config, "final_logit_softcapping", None)
        self.config = lm.config
        self.fingerprint = fingerprint                                                     # of the frozen LM

    @property
    def decoder(self) -> nn.Module:
        return self.lm.get_base_model().base_model if hasattr(self.lm, "get_base_model") else self.lm.base_model

    def embed(self, input_ids: Tensor) -> Tensor:
        """(B, T) run ids -> (B, T, D) input embeddings (the LM's scaling, e.g. Gemma's sqrt(D), applied to both)."""
        lm_ids = self.lm_ids[input_ids]
        new = lm_ids >= self.first_new
        own = self.lm.get_input_embeddings()(lm_ids.masked_fill(new, 0))
        scale = getattr(self.lm.get_input_embeddings(), "embed_scale", 1.0)
        added = self.new_embeddings[(lm_ids - self.first_new).clamp(min=0)] * scale
        return torch.where(new[..., None], added.to(own.dtype), own)

    def output_rows(self) -> Tensor:
        """(V_run, D): the output layer restricted to the run's tokens, new rows included."""
        lm_ids, new = self.lm_ids, self.lm_ids >= self.first_new
        own = self.lm.get_output_embeddings().weight[lm_ids.masked_fill(new, 0)]
        added = (self.new_embeddings if self.tied else self.new_output)[(lm_ids - self.first_new).clamp(min=0)]
        return torch.where(new[:, None], added.to(own.dtype), own)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                labels: Tensor | None = None, cache: Any = None, use_cache: bool | None = None,
                logits_to_keep: int = 0) -> Any:
        from transformers.modeling_outputs import CausalLMOutputWithPast

        decoder = self.decoder
        out = decoder(inputs_embeds=self.embed(input_ids), attention_mask=attention_mask, position_ids=position_ids,
                      use_cache=use_cache, **{cache_argument(decoder): cache})
        hidden = out.last_hidden_state[:, -logits_to_keep:] if logits_to_keep else out.last_hidden_state
        rows = self.output_rows()
        logits = hidden @ rows.to(hidden.dtype).T                                          # (B, T', V_run)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return output_with_cache(CausalLMOutputWithPast, returned_cache(out), loss=loss, logits=logits)


def weights_fingerprint(lm: nn.Module) -> str:
    """sha256 of every weight's name, shape and first 1,024 values (the LM before adapters): which pretrained model
    the adapters belong to (a weight file holds only the adapters), computed in milliseconds."""
    digest = hashlib.sha256()
    for name, p in sorted(lm.named_parameters()):
        digest.update(f"{name}{tuple(p.shape)}".encode())
        digest.update(p.detach().flatten()[:1024].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def initial_rows(weights: Tensor, count: int, seed: int) -> Tensor:
    """(count, D) rows for new tokens: the mean of the LM's rows plus noise at their own spread (new tokens start
    near the LM's typical token, not at an outlier)."""
    generator = torch.Generator().manual_seed(seed)
    mean, std = weights.float().mean(0), weights.float().std(0)
    return (mean + 0.1 * std * torch.randn(count, weights.shape[1], generator=generator)).to(weights.dtype)


def load_lm(name: str) -> tuple[Any, nn.Module]:
    """(tokenizer, causal LM in float32) of `model.llm.pretrained`; failures say what to install or set."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmgr.encoders.local_lm import OFFLINE_LM, quiet_loading, resolve_pretrained

    source = resolve_pretrained(name)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(source)
            lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise MmgrError(f"model.llm.pretrained: cannot load the causal LM {name!r} ({exc}); use a local folder, a hub "
                        f"name you can reach, or the offline default {OFFLINE_LM}") from None
    return tokenizer, lm


def build_pretrained(cfg: ModelConfig, vocab: Vocabulary, seed: int) -> PretrainedSidLM:
    """`model.llm.pretrained` with the run's tokens appended and LoRA adapters (`model.llm.lora`) on its projections."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise MmgrError(f"model.kind=llm trains the pretrained LM with LoRA and needs peft: {LLM_INSTALL}") from None
    if vocab.words and vocab.word_model != cfg.llm.pretrained:
        raise MmgrError(f"this vocabulary's text tokens come from {vocab.word_model!r}, not the LM "
                        f"{cfg.llm.pretrained!r}; retrain (`mmgr train`) to rebuild it")
    tokenizer, lm = load_lm(cfg.llm.pretrained)
    first_new, fingerprint = len(tokenizer), weights_fingerprint(lm)
    lm_ids = extend_tokenizer(tokenizer, vocab)
    torch.manual_seed(seed)
    lora = LoraConfig(r=cfg.llm.lora.rank, lora_alpha=cfg.llm.lora.alpha, lora_dropout=cfg.llm.lora.dropout,
                      target_modules=list(cfg.llm.lora.targets), bias="none")
    try:
        with warnings.catch_warnings():    # peft calls a transformers method deprecated in v5 (FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            adapted = get_peft_model(lm, lora)
    except ValueError as exc:
        raise MmgrError(f"model.llm.lora.targets {cfg.llm.lora.targets} do not name modules of "
                        f"{cfg.llm.pretrained!r}: {exc}") from None
    return PretrainedSidLM(adapted, lm_ids, first_new, fingerprint, seed)
