"""The stage-2 text tower: BERT with video cross-attention in its upper layers.

As the official ``xbert.py`` (``BertForMaskedLM`` with ``fusion_layer``): layers ``[0,
fusion_layer)`` are plain BERT layers that encode the caption alone (``forward_text``); layers
``[fusion_layer, num_layers)`` add a cross-attention block between self-attention and the FFN whose
keys and values come from the video tokens (``forward_fusion``); the masked-LM head sits on top.
Post-LN everywhere, exact GELU, absolute positions, token type 0.

Parameter names are this library's own; :func:`bert_state_dict` converts HuggingFace ``BertModel`` /
``BertForMaskedLM`` weights and the official ``text_encoder.*`` weights, and :func:`load_bert`
loads a HuggingFace BERT folder (e.g. ``bert-base-uncased`` or the MiniLM of :func:`umt.text.minilm_dir`).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.utils.checkpoint import checkpoint

from umt.errors import InputError
from umt.models._io import AssumedSizeWarning, read_state_dict
from umt.models.registry import Family, register_family

__all__ = ["BertTextEncoder", "bert_state_dict", "load_bert", "init_bert_weights"]


class BertAttention(nn.Module):
    """Multi-head attention + output projection + dropout + residual + LayerNorm (post-LN).

    Self-attention when ``context`` is None, else cross-attention with keys/values from
    ``context`` (``kv_dim`` wide)."""

    def __init__(
        self, dim: int, num_heads: int, kv_dim: int, eps: float, dropout: float, attn_dropout: float
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise InputError(f"text width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.attn_dropout = attn_dropout
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim)
        self.v = nn.Linear(kv_dim, dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        context: torch.Tensor | None = None,
        causal: bool = False,
        context_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [B, L, C]``, ``key_mask [B, L_k]`` bool (True = attend) or None, ``context
        [B, L_k, C_kv]`` or None -> ``[B, L, C]``. ``causal``: token ``i`` attends to tokens
        ``<= i`` only (a decoder's self-attention; combined with ``key_mask``).

        ``context_index [B]`` (cross-attention only): row ``i`` of ``x`` attends to context row
        ``context_index[i]`` of a ``[U, L_k, C_kv]`` context (``key_mask [U, L_k]``). The keys
        and values are computed once per context row and then gathered: re-ranking many
        captions against one video projects its tokens once instead of once per caption."""
        src = x if context is None else context
        q, k, v = self._split(self.q(x)), self._split(self.k(src)), self._split(self.v(src))
        if context_index is not None:
            if context is None:
                raise ValueError("context_index needs a context (cross-attention)")
            k, v = k.index_select(0, context_index), v.index_select(0, context_index)
            if key_mask is not None:
                key_mask = key_mask.index_select(0, context_index)
        mask = key_mask[:, None, None, :] if key_mask is not None else None  # [B, 1, 1, L_k]
        if causal:
            n = x.shape[1]
            tri = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()  # [L, L]
            mask = tri if mask is None else mask & tri  # [B, 1, L, L]
        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, h, L, D]
        y = y.transpose(1, 2).flatten(2)  # [B, L, C]
        return self.norm(x + self.drop(self.out(y)))


class BertLayer(nn.Module):
    """Self-attention, optional cross-attention to the video, FFN (GELU); each post-LN."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        eps: float,
        dropout: float,
        attn_dropout: float,
        cross_dim: int | None,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.self_attn = BertAttention(dim, num_heads, dim, eps, dropout, attn_dropout)
        self.cross_attn = (
            BertAttention(dim, num_heads, cross_dim, eps, dropout, attn_dropout)
            if cross_dim is not None
            else None
        )
        self.ffn_in = nn.Linear(dim, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, dim)
        self.ffn_drop = nn.Dropout(dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        vision: torch.Tensor | None = None,
        vision_mask: torch.Tensor | None = None,
        vision_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [B, L, C]`` -> ``[B, L, C]``; ``vision [B, N, C_v]`` for a fusion layer (or
        ``[U, N, C_v]`` with ``vision_index [B]``: see :class:`BertAttention`)."""
        x = self.self_attn(x, key_mask, causal=self.causal)
        if self.cross_attn is not None:
            if vision is None:
                raise InputError("a fusion layer needs the video tokens (vision_embeds)")
            x = self.cross_attn(x, vision_mask, vision, context_index=vision_index)
        h = self.ffn_out(F.gelu(self.ffn_in(x)))
        return self.ffn_norm(x + self.ffn_drop(h))


class MLMHead(nn.Module):
    """BERT's masked-LM head: dense, GELU, LayerNorm, then the word embeddings (tied) + a bias."""

    def __init__(self, dim: int, vocab_size: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: torch.Tensor, word_weight: torch.Tensor) -> torch.Tensor:
        """``[B, L, C]`` -> ``[B, L, vocab]``."""
        x = self.norm(F.gelu(self.dense(x)))
        return F.linear(x, word_weight, self.bias)


@torch.no_grad()
def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's ``_init_weights``: Linear / Embedding weights N(0, std), biases 0, LayerNorm (1, 0),
    the padding row of an embedding 0. Apply with ``model.apply``."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.normal_(0.0, std)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.fill_(1.0)
        module.bias.zero_()
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.zero_()
    if isinstance(module, MLMHead):
        module.bias.zero_()


class BertTextEncoder(nn.Module, PyTorchModelHubMixin, library_name="umt", tags=["text", "umt"]):
    """BERT text encoder with cross-attention to the video from ``fusion_layer`` on.

    Args:
        vocab_size, hidden_size, num_layers, num_heads, intermediate_size,
        max_position_embeddings, type_vocab_size, layer_norm_eps: BERT sizes.
        dropout, attention_dropout: BERT's hidden and attention-probability dropout.
        fusion_layer: first layer with cross-attention (``num_layers``: a text-only BERT).
        encoder_width: width of the video tokens the cross-attention reads.
        mlm_head: build the masked-LM head (tied to the word embeddings).
        pad_token_id: the padding row of the word embeddings.
        is_decoder: causal self-attention in every layer (the QA answer decoder, the official
            ``BertLMHeadModel``); its LM head is ``mlm_head``.
        sep_after_text: the tower reads a single text as ``[CLS] X [SEP]`` (trained the standard
            BERT way, e.g. the MiniLM sentence model) instead of the official UMT tokenizer's
            ``[CLS] X`` (False: the official family and every tower converted from an official
            file). Saved with the model; tokenizers of the model follow it
            (:meth:`umt.text.Tokenizer.from_pretrained`).
    """

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        intermediate_size: int = 3072,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        fusion_layer: int = 9,
        encoder_width: int = 768,
        mlm_head: bool = True,
        pad_token_id: int = 0,
        is_decoder: bool = False,
        sep_after_text: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= fusion_layer <= num_layers:
            raise InputError(f"fusion_layer {fusion_layer} must be within [0, {num_layers}]")
        if not 0 <= pad_token_id < vocab_size:
            raise InputError(
                f"pad_token_id {pad_token_id} is outside the vocabulary ({vocab_size})"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.fusion_layer = fusion_layer
        self.encoder_width = encoder_width
        self.max_position_embeddings = max_position_embeddings
        self.is_decoder = bool(is_decoder)
        self.sep_after_text = bool(sep_after_text)
        self.grad_checkpointing = False

        self.word_embed = nn.Embedding(vocab_size, hidden_size, padding_idx=pad_token_id)
        self.pos_embed = nn.Embedding(max_position_embeddings, hidden_size)
        self.type_embed = nn.Embedding(type_vocab_size, hidden_size)
        self.embed_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.embed_drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            BertLayer(
                hidden_size,
                num_heads,
                intermediate_size,
                layer_norm_eps,
                dropout,
                attention_dropout,
                encoder_width if i >= fusion_layer else None,
                causal=self.is_decoder,
            )
            for i in range(num_layers)
        )
        self.mlm_head = MLMHead(hidden_size, vocab_size, layer_norm_eps) if mlm_head else None
        self.apply(init_bert_weights)

    # ------------------------------------------------------------------ settings
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every layer in the backward pass (``torch.utils.checkpoint``, non-reentrant)."""
        self.grad_checkpointing = bool(enable)

    def no_weight_decay(self) -> set[str]:
        """Names exempt from weight decay besides every 1-D parameter (BERT has none)."""
        return set()

    # ------------------------------------------------------------------ steps
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word + position + token-type-0 embeddings, LayerNorm, dropout: ``[B, L] -> [B, L, C]``."""
        if input_ids.ndim != 2:
            raise InputError(f"expected input_ids [B, L], got shape {tuple(input_ids.shape)}")
        n = input_ids.shape[1]
        if n > self.max_position_embeddings:
            raise InputError(
                f"{n} tokens but the text encoder has {self.max_position_embeddings} positions"
            )
        pos = torch.arange(n, device=input_ids.device)
        x = self.word_embed(input_ids) + self.pos_embed(pos) + self.type_embed.weight[0]
        return self.embed_drop(self.embed_norm(x))

    def _run(
        self,
        layers: range,
        x: torch.Tensor,
        attention_mask: torch.Tensor,
        vision: torch.Tensor | None = None,
        vision_mask: torch.Tensor | None = None,
        vision_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if attention_mask.shape != x.shape[:2]:
            raise InputError(
                f"attention_mask {tuple(attention_mask.shape)} does not match the text "
                f"{tuple(x.shape[:2])}"
            )
        key_mask = attention_mask.bool()  # [B, L], True = a real token
        vmask = vision_mask.bool() if vision_mask is not None else None
        for i in layers:
            layer = self.layers[i]
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, key_mask, vision, vmask, vision_index, use_reentrant=False)
            else:
                x = layer(x, key_mask, vision, vmask, vision_index)
        return x

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Caption alone: embeddings and layers ``[0, fusion_layer)``. ``[B, L] -> [B, L, C]``;
        ``attention_mask [B, L]`` is 1 on tokens, 0 on padding."""
        return self._run(range(self.fusion_layer), self.embed(input_ids), attention_mask)

    def forward_fusion(
        self,
        text_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        vision_embeds: torch.Tensor,
        vision_mask: torch.Tensor | None = None,
        vision_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Layers ``[fusion_layer, num_layers)`` with cross-attention to the video.

        ``text_embeds [B, L, C]``, ``attention_mask [B, L]``, ``vision_embeds [B, N, C_v]``,
        ``vision_mask [B, N]`` (1 = attend; None = every video token) -> ``[B, L, C]``.
        With ``vision_index [B]`` (long), ``vision_embeds [U, N, C_v]`` / ``vision_mask [U, N]``
        hold each video once and caption ``i`` attends to video ``vision_index[i]``: the same
        result as gathering the videos first, with the keys and values projected once per video."""
        if vision_embeds.shape[-1] != self.encoder_width:
            raise InputError(
                f"vision_embeds are {vision_embeds.shape[-1]} wide; the cross-attention reads "
                f"{self.encoder_width}"
            )
        if vision_index is None and vision_embeds.shape[0] != text_embeds.shape[0]:
            raise InputError(
                f"{text_embeds.shape[0]} captions but {vision_embeds.shape[0]} videos: give "
                "vision_index to pair them"
            )
        if vision_index is not None:
            if vision_index.shape != text_embeds.shape[:1]:
                raise InputError(
                    f"vision_index {tuple(vision_index.shape)} must hold one video per caption "
                    f"({text_embeds.shape[0]})"
                )
            vision_index = vision_index.to(vision_embeds.device, torch.long)
        layers = range(self.fusion_layer, self.num_layers)
        return self._run(
            layers, text_embeds, attention_mask, vision_embeds, vision_mask, vision_index
        )

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The masked-LM head: ``[B, L, C] -> [B, L, vocab]``."""
        if self.mlm_head is None:
            raise RuntimeError("this text encoder has no masked-LM head (mlm_head=False)")
        return self.mlm_head(hidden, self.word_embed.weight)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        vision_embeds: torch.Tensor | None = None,
        vision_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text layers, then, with ``vision_embeds``, the fusion layers: ``[B, L] -> [B, L, C]``."""
        x = self.forward_text(input_ids, attention_mask)
        if vision_embeds is None:
            return x
        return self.forward_fusion(x, attention_mask, vision_embeds, vision_mask)

    def extra_repr(self) -> str:
        dec = ", is_decoder=True" if self.is_decoder else ""
        sep = ", sep_after_text=True" if self.sep_after_text else ""
        return f"fusion_layer={self.fusion_layer}, encoder_width={self.encoder_width}{dec}{sep}"


# --------------------------------------------------------------------------- conversion
_LAYER_NAMES = {
    "attention.self.query": "self_attn.q",
    "attention.self.key": "self_attn.k",
    "attention.self.value": "self_attn.v",
    "attention.output.dense": "self_attn.out",
    "attention.output.LayerNorm": "self_attn.norm",
    "crossattention.self.query": "cross_attn.q",
    "crossattention.self.key": "cross_attn.k",
    "crossattention.self.value": "cross_attn.v",
    "crossattention.output.dense": "cross_attn.out",
    "crossattention.output.LayerNorm": "cross_attn.norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}
_TOP_NAMES = {
    "embeddings.word_embeddings": "word_embed",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.token_type_embeddings": "type_embed",
    "embeddings.LayerNorm": "embed_norm",
    "cls.predictions.transform.dense": "mlm_head.dense",
    "cls.predictions.transform.LayerNorm": "mlm_head.norm",
}
_DROPPED = re.compile(
    r"^(pooler\.|embeddings\.position_ids$|cls\.seq_relationship\.|cls\.predictions\.decoder\.)"
)
_OURS = re.compile(r"^(word_embed|pos_embed|type_embed|embed_norm|layers\.\d+|mlm_head)\.")


def _bert_prefix(keys: list[str]) -> str | None:
    """The prefix in front of ``embeddings.word_embeddings.weight`` (``""``, ``bert.``,
    ``text_encoder.bert.``, ...), or None when there is no BERT."""
    for k in keys:
        if k.endswith("embeddings.word_embeddings.weight"):
            return k[: -len("embeddings.word_embeddings.weight")]
    return None


def is_bert_state_dict(sd: dict[str, torch.Tensor]) -> bool:
    """Whether ``sd`` holds BERT weights (HuggingFace, official or this library's names)."""
    return _bert_prefix(list(sd)) is not None or "word_embed.weight" in sd


def bert_state_dict(
    sd: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert BERT weights to :class:`BertTextEncoder` names and infer its sizes.

    Accepts HuggingFace ``BertModel`` (``embeddings.*``, ``encoder.layer.*``, with or without a
    ``bert.`` prefix), ``BertForMaskedLM`` (``bert.*``, ``cls.predictions.*``), the official
    stage-2 ``text_encoder.bert.*`` / ``text_encoder.cls.*`` (``crossattention`` in the fusion
    layers) and this library's own names (as they are). ``pooler.*``, ``position_ids``, the NSP
    head and the tied decoder are dropped. Returns ``(state_dict, config)``; the config holds the
    sizes the shapes tell (not heads, eps or dropouts): vocab_size, hidden_size, num_layers,
    intermediate_size, max_position_embeddings, type_vocab_size, fusion_layer (first layer with
    cross-attention, else num_layers), encoder_width (when there is cross-attention), mlm_head.
    """
    keys = list(sd)
    prefix = _bert_prefix(keys)
    if prefix is None:
        if "word_embed.weight" not in sd:
            raise InputError(
                f"no BERT weights (no embeddings.word_embeddings.weight); first keys: "
                f"{', '.join(keys[:4])}"
            )
        out = {k: v for k, v in sd.items() if _OURS.match(k)}
        extra = [k for k in sd if k not in out]
        if extra:
            raise InputError(f"unexpected tensors beside the text encoder: {', '.join(extra[:3])}")
    else:
        # The heads (cls.*) sit beside the encoder: "bert." -> "" and "text_encoder.bert." ->
        # "text_encoder.".
        outer = prefix[: -len("bert.")] if prefix.endswith("bert.") else prefix
        out = {}
        decoder = None
        unknown = []
        for k, v in sd.items():
            if k.startswith(prefix):
                name = k[len(prefix) :]
            elif k.startswith(outer + "cls."):
                name = k[len(outer) :]
            else:
                continue  # other parts of a larger checkpoint
            if name == "cls.predictions.decoder.weight":
                decoder = v
            if _DROPPED.match(name):
                continue
            name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
            name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
            new = _rename(name)
            if new is None:
                unknown.append(k)
            else:
                out[new] = v
        if unknown:
            raise InputError(f"unknown BERT tensors: {', '.join(unknown[:3])}")
        if decoder is not None and "word_embed.weight" in out:
            if decoder.shape != out["word_embed.weight"].shape or not torch.equal(
                decoder, out["word_embed.weight"]
            ):
                raise InputError(
                    "the masked-LM decoder is not tied to the word embeddings; umt's BERT ties them"
                )
    return out, _infer_config(out)


def _rename(name: str) -> str | None:
    m = re.match(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", name)
    if m:
        mapped = _LAYER_NAMES.get(m.group(2))
        return None if mapped is None else f"layers.{m.group(1)}.{mapped}.{m.group(3)}"
    if name == "cls.predictions.bias":
        return "mlm_head.bias"
    m = re.match(r"(.+)\.(weight|bias)$", name)
    if m and m.group(1) in _TOP_NAMES:
        return f"{_TOP_NAMES[m.group(1)]}.{m.group(2)}"
    return None


def _infer_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    needed = ("word_embed.weight", "pos_embed.weight", "layers.0.ffn_in.weight")
    absent = [k for k in needed if k not in sd]
    if absent:
        raise InputError(f"incomplete BERT weights (no {', '.join(absent)})")
    word = sd["word_embed.weight"]
    layers = sorted({int(k.split(".")[1]) for k in sd if k.startswith("layers.")})
    cross = sorted({int(k.split(".")[1]) for k in sd if re.match(r"layers\.\d+\.cross_attn\.", k)})
    cfg: dict[str, Any] = dict(
        vocab_size=word.shape[0],
        hidden_size=word.shape[1],
        num_layers=layers[-1] + 1,
        intermediate_size=sd["layers.0.ffn_in.weight"].shape[0],
        max_position_embeddings=sd["pos_embed.weight"].shape[0],
        fusion_layer=cross[0] if cross else layers[-1] + 1,
        mlm_head="mlm_head.dense.weight" in sd,
    )
    if "type_embed.weight" in sd:
        cfg["type_vocab_size"] = sd["type_embed.weight"].shape[0]
    if cross:
        cfg["encoder_width"] = sd[f"layers.{cross[0]}.cross_attn.k.weight"].shape[1]
    return cfg


# --------------------------------------------------------------------------- loading
_HF_CONFIG = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "layer_norm_eps": "layer_norm_eps",
    "hidden_dropout_prob": "dropout",
    "attention_probs_dropout_prob": "attention_dropout",
    "pad_token_id": "pad_token_id",
}


def bert_config_from_hf(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """:class:`BertTextEncoder` arguments from a HuggingFace BERT ``config.json`` dict."""
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu":
        raise InputError(f"{where}: hidden_act {act!r} is not supported (umt's BERT uses 'gelu')")
    pos = cfg.get("position_embedding_type", "absolute")
    if pos != "absolute":
        raise InputError(f"{where}: position_embedding_type {pos!r} is not supported")
    out = {ours: cfg[theirs] for theirs, ours in _HF_CONFIG.items() if cfg.get(theirs) is not None}
    if "fusion_layer" in cfg:
        out["fusion_layer"] = cfg["fusion_layer"]
    if "encoder_width" in cfg:
        out["encoder_width"] = cfg["encoder_width"]
    return out


def _bert_files(path: Path) -> tuple[Path, Path | None]:
    """(weights file, config.json or None) of a HuggingFace BERT folder or file."""
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin", "model.pth", "pytorch_model.pth"):
            if (path / name).is_file():
                weights = path / name
                break
        else:
            raise FileNotFoundError(
                f"{path}: folder has no model.safetensors or pytorch_model.bin (BERT weights)"
            )
        cfg = path / "config.json"
    elif path.is_file():
        weights, cfg = path, path.with_name("config.json")
    else:
        raise FileNotFoundError(f"{path}: no such BERT folder or file")
    return weights, cfg if cfg.is_file() else None


SENTENCE_MODEL_FILES = ("sentence_bert_config.json", "modules.json")


def trained_with_sep(path: str | Path) -> bool:
    """Whether the BERT at ``path`` reads a single text as ``[CLS] X [SEP]``: a
    sentence-transformers model (its folder holds ``sentence_bert_config.json`` or
    ``modules.json``; e.g. the bundled MiniLM, trained and used that way). A plain BERT checkpoint
    (``bert-base-uncased``, as the official recipes start from) is fine-tuned on the official
    tokenizer's ``[CLS] X``."""
    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    return any((folder / name).is_file() for name in SENTENCE_MODEL_FILES)


def load_bert(
    path: str | Path, fusion_layer: int, encoder_width: int, **overrides: Any
) -> BertTextEncoder:
    """A :class:`BertTextEncoder` from HuggingFace BERT weights (``BertModel`` or
    ``BertForMaskedLM``): a folder with ``config.json`` + ``model.safetensors`` /
    ``pytorch_model.bin``, or a weights file (with ``config.json`` beside it, if any).

    ``fusion_layer`` and ``encoder_width`` set where cross-attention to the video starts and how
    wide the video tokens are; ``overrides`` are other :class:`BertTextEncoder` arguments (e.g.
    ``mlm_head=False``, ``dropout``). What the file lacks is newly initialised as BERT does
    (normal, std 0.02) and reported with a ``UserWarning``: the cross-attention blocks (never in
    a HuggingFace file) and the masked-LM head (absent from a ``BertModel`` file).
    ``sep_after_text`` (unless overridden) is :func:`trained_with_sep` of the folder.
    """
    path = Path(path)
    weights, cfg_file = _bert_files(path)
    sd = read_state_dict(weights)
    try:
        ours, inferred = bert_state_dict(sd)
    except ValueError as err:
        raise InputError(f"{weights}: {err}") from None
    if cfg_file is not None:
        try:
            hf = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{cfg_file}: invalid JSON ({err})") from None
        if not isinstance(hf, dict):
            raise InputError(f"{cfg_file}: not a JSON object")
        cfg = bert_config_from_hf(hf, str(cfg_file))
    else:
        cfg = {}
    for key in ("vocab_size", "hidden_size", "num_layers", "intermediate_size"):
        if key in cfg and cfg[key] != inferred[key]:
            raise InputError(
                f"{cfg_file}: {key} is {cfg[key]} but the weights in {weights} hold {inferred[key]}"
            )
    for key in ("vocab_size", "hidden_size", "num_layers", "intermediate_size"):
        cfg[key] = inferred[key]
    cfg.setdefault("max_position_embeddings", inferred["max_position_embeddings"])
    if "type_vocab_size" in inferred:
        cfg.setdefault("type_vocab_size", inferred["type_vocab_size"])
    if "num_heads" not in cfg and "num_heads" not in overrides:
        cfg["num_heads"] = max(1, cfg["hidden_size"] // 64)
        warnings.warn(
            f"{weights}: no config.json: assumed num_heads={cfg['num_heads']} (head width 64); "
            "pass num_heads= if it differs",
            AssumedSizeWarning,
            stacklevel=2,
        )
    cfg.update(fusion_layer=fusion_layer, encoder_width=encoder_width)
    cfg.setdefault("mlm_head", True)
    cfg["sep_after_text"] = trained_with_sep(path)
    cfg.update(overrides)
    try:
        model = BertTextEncoder(**cfg)
    except TypeError as err:
        raise TypeError(f"load_bert: {err}") from None
    expected = model.state_dict()
    wrong = [k for k, v in ours.items() if k in expected and expected[k].shape != v.shape]
    if wrong:
        k = wrong[0]
        raise InputError(
            f"{weights}: {k} is {list(ours[k].shape)} in the weights but "
            f"{list(expected[k].shape)} in the model"
        )
    dropped_cross = sorted(
        {int(k.split(".")[1]) for k in ours if ".cross_attn." in k}
        - {int(k.split(".")[1]) for k in expected if ".cross_attn." in k}
    )
    if dropped_cross:
        raise InputError(
            f"{weights}: the weights have cross-attention in layer {dropped_cross[0]}, below "
            f"fusion_layer={model.fusion_layer}"
        )
    ours = {k: v for k, v in ours.items() if k in expected}
    missing = [k for k in expected if k not in ours]
    if missing:
        new = _describe_new(missing, model)
        if new is None:
            raise InputError(f"{weights}: BERT weights without {', '.join(missing[:3])}")
        warnings.warn(
            f"{weights}: newly initialised (not in the file): {new}", UserWarning, stacklevel=2
        )
    model.load_state_dict(ours, strict=False)
    return model


def _describe_new(missing: list[str], model: BertTextEncoder) -> str | None:
    """What ``missing`` names, when it is only cross-attention and the MLM head; else None."""
    cross = sorted({int(k.split(".")[1]) for k in missing if ".cross_attn." in k})
    head = any(k.startswith("mlm_head.") for k in missing)
    rest = [k for k in missing if ".cross_attn." not in k and not k.startswith("mlm_head.")]
    if rest:
        return None
    parts = []
    if cross:
        parts.append(f"cross-attention of layers {cross[0]}-{cross[-1]}")
    if head:
        parts.append("the masked-LM head")
    return ", ".join(parts)


# --------------------------------------------------------------------------- umt's format
def _describe(model: BertTextEncoder, cfg: dict[str, Any]) -> list[str]:
    return [
        "model: BERT text encoder",
        f"sizes: width {model.hidden_size}, layers {model.num_layers}, heads "
        f"{model.layers[0].self_attn.num_heads}, cross-attention from layer "
        f"{model.fusion_layer}, vocab {model.vocab_size}",
    ]


# umt's format only (hub's generic loader); a HuggingFace BERT folder loads with load_bert,
# which also places the cross-attention layers
register_family(
    Family(
        BertTextEncoder,
        "text-encoder",
        _describe,
        foreign_hint=" holds no text tower on its own; load a HuggingFace BERT with "
        "umt.models.text_bert.load_bert",
    )
)
