"""LoRA fine-tuning of the MusicGen language model, through ``peft``.

Low-rank adapters are added next to chosen ``nn.Linear`` layers of an :class:`~audiocraft.models.LMModel`:
a wrapped layer computes ``W x + (alpha / rank) * B A x`` with ``A`` [rank, in] and ``B`` [out, rank];
``B`` starts at zero, so a fresh adapter leaves the model unchanged. Only the adapters train; the
base weights stay frozen, and the adapters alone are saved (kilobytes to a few megabytes).

Which layers. ``target_modules`` names layers by their own name, matched inside the transformer
and the output heads only (never inside the conditioners, e.g. the T5 encoder):

- ``linear1``, ``linear2``: the feed-forward block of every transformer layer;
- ``out_proj``: the output projection of the self- and cross-attention;
- ``linears``: the K output heads (one ``nn.Linear`` per codebook).

These are the defaults. The attention's input projection is a packed ``in_proj_weight``
parameter [3D, D] used through ``F.linear``, not an ``nn.Linear``, so it cannot be targeted and
stays frozen: the attention adapts through ``out_proj``.

Typical use::

    lm = add_lora(lm, rank=8, alpha=16)      # in place; only adapters require grad
    ...train...
    save_lora(lm, 'adapters.pt')             # the adapters and their settings
    load_lora(other_lm, 'adapters.pt')       # same base model -> same logits
    merge_lora(lm)                           # folds B A into W, removes the wrappers (for export)

``MusicGen.load_lora(path)`` adds saved adapters to a loaded model. A model with adapters
still accepts a plain state dict (its ``load_state_dict`` maps ``x.weight`` to the wrapped
``x.base_layer.weight`` and keeps the current adapters when the state holds none).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Layer names adapted by default (see the module docstring).
DEFAULT_TARGET_MODULES = ("linear1", "linear2", "out_proj", "linears")
_ADAPTER_NAME = "default"
_LORA_KEY_MARK = ".lora_"


@dataclass
class LoraSettings:
    """How adapters are added (saved with them).

    Attributes:
        rank: rank r of each adapter (> 0).
        alpha: scale numerator: the update is ``(alpha / rank) * B A x``.
        dropout: dropout on the adapter input, in training (in [0, 1)).
        target_modules: layer names to adapt, among ``linear1``, ``linear2``, ``out_proj``, ``linears``.
    """
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"LoRA `rank` must be a positive int, got {self.rank!r} (config `lora.rank`).")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ValueError(f"LoRA `alpha` must be a positive number, got {self.alpha!r} (config `lora.alpha`).")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA `dropout` must be in [0, 1), got {self.dropout!r} (config `lora.dropout`).")
        if isinstance(self.target_modules, str) or not isinstance(self.target_modules, Sequence) \
                or not self.target_modules or not all(isinstance(n, str) for n in self.target_modules):
            raise ValueError(f"LoRA `target_modules` must be a non-empty list of layer names such as "
                             f"{list(DEFAULT_TARGET_MODULES)}, got {self.target_modules!r}.")
        self.alpha = float(self.alpha)
        self.dropout = float(self.dropout)
        self.target_modules = [str(name) for name in self.target_modules]


def _import_peft():
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("LoRA needs the `peft` package: pip install peft") from exc
    return peft


def _is_lora_layer(module: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer
    return isinstance(module, BaseTunerLayer)


def has_lora(lm: nn.Module) -> bool:
    """True if adapters were added to ``lm`` (and not merged)."""
    return getattr(lm, "_lora_settings", None) is not None


def lora_target_names(lm: nn.Module, target_modules: Sequence[str]) -> list[str]:
    """Full names of the ``nn.Linear`` layers of ``lm`` that ``target_modules`` selects.

    A layer is selected when its own name (``linear1``, ``out_proj``) or, for the output heads
    ``linears.<k>``, its container's name is in ``target_modules``; only layers under
    ``transformer`` and ``linears`` are considered.
    Raises:
        ValueError: a name in ``target_modules`` selects nothing.
    """
    selected, used = [], set()
    for name, module in lm.named_modules():
        if not isinstance(module, nn.Linear) or not name.startswith(("transformer.", "linears.")):
            continue
        parts = name.split(".")
        own = parts[-1] if not parts[-1].isdigit() else parts[-2]
        if own in target_modules:
            selected.append(name)
            used.add(own)
    unknown = [target for target in target_modules if target not in used]
    if unknown:
        raise ValueError(f"LoRA `target_modules` {unknown} match no nn.Linear of the LM; available names: "
                         f"{list(DEFAULT_TARGET_MODULES)} (the packed attention input projection cannot be adapted).")
    return selected


def add_lora(lm: nn.Module, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
             target_modules: Sequence[str] = DEFAULT_TARGET_MODULES) -> nn.Module:
    """Add LoRA adapters to ``lm`` in place and freeze every other parameter.

    Args:
        lm: the language model (:class:`~audiocraft.models.LMModel`).
        rank, alpha, dropout, target_modules: see :class:`LoraSettings`.
    Returns:
        ``lm`` itself. Its output is unchanged until the adapters train (``B`` starts at 0).
    Raises:
        ValueError: bad settings, or ``lm`` already has adapters (merge them first).
    """
    if not isinstance(lm, nn.Module):
        raise TypeError(f"add_lora: `lm` must be an LMModel (torch.nn.Module), got {type(lm).__name__}.")
    if has_lora(lm):
        raise ValueError("add_lora: `lm` already has LoRA adapters; call merge_lora(lm) first to add new ones.")
    settings = LoraSettings(rank, alpha, dropout, list(target_modules))
    peft = _import_peft()
    names = lora_target_names(lm, settings.target_modules)
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=names, bias="none")
    peft.inject_adapter_in_model(config, lm, adapter_name=_ADAPTER_NAME)
    for param_name, param in lm.named_parameters():
        param.requires_grad_(_LORA_KEY_MARK in f".{param_name}")
    lm._lora_settings = settings
    lm._lora_wrapped = names
    lm._lora_hook = lm.register_load_state_dict_pre_hook(_accept_plain_state)
    return lm


def _accept_plain_state(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Load-state pre-hook: a state without adapters loads into a model with adapters.

    ``<layer>.weight``/``.bias`` become ``<layer>.base_layer.weight``/``.bias`` and, if the state
    holds no adapter at all, the current adapter weights are kept.
    """
    for name in getattr(module, "_lora_wrapped", ()):
        for leaf in ("weight", "bias"):
            plain, wrapped = f"{prefix}{name}.{leaf}", f"{prefix}{name}.base_layer.{leaf}"
            if plain in state_dict and wrapped not in state_dict:
                state_dict[wrapped] = state_dict.pop(plain)
    if not any(_LORA_KEY_MARK in key for key in state_dict):
        for key, value in lora_state_dict(module).items():
            state_dict[prefix + key] = value


def lora_state_dict(lm: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights of ``lm`` only (detached CPU copies), keyed as in ``lm.state_dict()``."""
    return {key: value.detach().cpu().clone() for key, value in lm.state_dict().items() if _LORA_KEY_MARK in key}


def _model_signature(lm: nn.Module) -> dict[str, int]:
    layers = getattr(getattr(lm, "transformer", None), "layers", ())
    return {"n_q": int(getattr(lm, "n_q", 0)), "card": int(getattr(lm, "card", 0)),
            "dim": int(getattr(lm, "dim", 0)), "num_layers": len(layers)}


def save_lora(lm: nn.Module, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the adapters of ``lm`` (and their settings) to ``path``, atomically.

    The file is ``{'lora_state': {name: tensor}, 'lora_config': LoraSettings fields,
    'base_model': {n_q, card, dim, num_layers}, 'version': ...}`` and loads with
    ``torch.load(weights_only=True)``.
    Raises:
        ValueError: ``lm`` has no adapters. FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    from .. import __version__
    from .export import _atomic_save

    if not has_lora(lm):
        raise ValueError("save_lora: `lm` has no LoRA adapters; add them with add_lora(lm, ...) and train them.")
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"save_lora: `path` {str(path)!r} is a folder; pass a file name, e.g. "
                                f"{str(path / 'lora.pt')!r}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"save_lora: `path` {str(path)!r} exists; pass overwrite=True to replace it.")
    package = {"lora_state": lora_state_dict(lm), "lora_config": asdict(lm._lora_settings),
               "base_model": _model_signature(lm), "version": __version__}
    return _atomic_save(package, path)


def load_lora(lm: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Add the adapters saved by :func:`save_lora` to ``lm`` (in place) and load their weights.

    If ``lm`` already has adapters with the same settings, only their weights are replaced.
    Returns ``lm``. Raises FileNotFoundError (no file) or ValueError (adapters made for another
    model, or for other settings than the adapters already in ``lm``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"load_lora: no adapter file at {str(path)!r}; pass the file written by save_lora "
                                "(e.g. <xp folder>/lora.pt from export_musicgen).")
    package = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(package, dict) or "lora_state" not in package or "lora_config" not in package:
        raise ValueError(f"load_lora: {str(path)!r} is not a LoRA adapter file (expected 'lora_state' and "
                         "'lora_config', as written by save_lora).")
    expected, actual = package.get("base_model", {}), _model_signature(lm)
    different = {key: (value, actual.get(key)) for key, value in expected.items() if actual.get(key) != value}
    if different:
        details = ", ".join(f"{key}: adapters {a} vs model {b}" for key, (a, b) in different.items())
        raise ValueError(f"load_lora: the adapters in {str(path)!r} were trained on another model ({details}); "
                         "load them on the base model they were trained from.")
    settings = LoraSettings(**package["lora_config"])
    if not has_lora(lm):
        add_lora(lm, settings.rank, settings.alpha, settings.dropout, settings.target_modules)
    elif asdict(lm._lora_settings) != asdict(settings):
        raise ValueError(f"load_lora: `lm` already has adapters {asdict(lm._lora_settings)} but {str(path)!r} holds "
                         f"{asdict(settings)}; merge_lora(lm) first or load into a model without adapters.")
    current = lm.state_dict()
    state = package["lora_state"]
    missing = sorted(set(k for k in current if _LORA_KEY_MARK in k) - set(state))
    unexpected = sorted(set(state) - set(current))
    if missing or unexpected:
        raise ValueError(f"load_lora: {str(path)!r} does not match the adapters of `lm` (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}).")
    with torch.no_grad():
        for key, value in state.items():
            current[key].copy_(value)
    return lm


def merge_lora(lm: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and remove the wrappers, in place.

    Afterwards ``lm`` has exactly the parameter names of a model without adapters (e.g. for
    :func:`audiocraft.models.export.export_lm`) and computes what the adapted model computed
    in eval mode. Every parameter requires grad again. Returns ``lm``.
    """
    if not has_lora(lm):
        raise ValueError("merge_lora: `lm` has no LoRA adapters to merge.")
    for name in list(lm._lora_wrapped):
        parent_name, _, child = name.rpartition(".")
        parent = lm.get_submodule(parent_name) if parent_name else lm
        wrapper = getattr(parent, child) if not child.isdigit() else parent[int(child)]
        if not _is_lora_layer(wrapper):
            raise RuntimeError(f"merge_lora: {name} is not a LoRA layer any more; was the model modified?")
        wrapper.merge()
        base = wrapper.get_base_layer()
        if child.isdigit():
            parent[int(child)] = base
        else:
            setattr(parent, child, base)
    lm._lora_hook.remove()
    del lm._lora_settings, lm._lora_wrapped, lm._lora_hook
    for param in lm.parameters():
        param.requires_grad_(True)
    return lm
