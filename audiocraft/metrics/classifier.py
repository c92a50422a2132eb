"""A small music tagger used to evaluate generated audio: instrument family and style.

:class:`MusicTagger` is a compact 2D CNN over a log-mel spectrogram (about 0.25 M parameters).
It hears mono 16 kHz audio in analysis windows of ``window_seconds`` (4 s by default): each
window's log-mel has its mean removed (so the gain of a clip does not matter), goes through
four conv blocks, is averaged over frequency, pooled over time (mean and max) and projected
to a ``D``-dimensional embedding; one linear head per label set turns the embedding into
logits. A clip longer than one window is cut into consecutive windows (the last one ends
with the clip, overlapping its neighbour); its embedding is the mean of the window
embeddings and its label probabilities the mean of the window probabilities.

Two thin views plug it into the metrics of :mod:`audiocraft.metrics`:

- :class:`TaggerEmbedder` (an :class:`~audiocraft.metrics.embedders.AudioEmbedder`): the
  pooled embedding, for :class:`~audiocraft.metrics.fad.FrechetAudioDistance`;
- :class:`TaggerClassifier` (an :class:`~audiocraft.metrics.embedders.AudioClassifier`):
  the probabilities of one head, for :class:`~audiocraft.metrics.kld.KLDivergence` and
  :class:`~audiocraft.metrics.text_consistency.ClassifierTextConsistency`.

The project ships trained weights in ``audiocraft/assets/eval_classifier/`` (``config.json``
with the labels and hyper-parameters, ``model.safetensors``), made by
``scripts/train_eval_classifier.py`` on the music21/General MIDI datasets of
:mod:`audiocraft.data.synth`; :func:`load_tagger` reads them, :func:`save_tagger` writes them.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import typing as tp
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..modules.spectrogram import MelSpectrogram

__all__ = ["MusicTagger", "TaggerEmbedder", "TaggerClassifier", "load_tagger", "save_tagger", "spec_augment",
           "read_tagger_notes", "DEFAULT_TAGGER_DIR", "CONFIG_FILE", "WEIGHTS_FILE"]

#: Folder of the weights shipped with the package.
DEFAULT_TAGGER_DIR = Path(__file__).resolve().parent.parent / "assets" / "eval_classifier"
#: Hyper-parameters, labels and training notes of a saved tagger (JSON).
CONFIG_FILE = "config.json"
#: Weights of a saved tagger (safetensors, float32).
WEIGHTS_FILE = "model.safetensors"

# Front-end buffers rebuilt from the hyper-parameters: never saved, so they cannot go stale.
_FRONT_END_PREFIX = "mel."
# Three 2x2 poolings: a window needs at least this many frames.
_MIN_FRAMES = 8


def _positive_int(value: object, name: str, caller: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{caller}: `{name}` must be a positive int, got {value!r}.")
    return value


class MusicTagger(nn.Module):
    """Log-mel CNN with a pooled embedding and one classification head per label set.

    Args:
        heads: head name -> its labels, e.g. ``{'instrument_family': ['keyboard', ...],
            'style': ['solo', ...]}``; each head outputs ``len(labels)`` logits in that order.
        sample_rate: sample rate of the input audio, in Hz.
        n_mels: mel bands of the front end.
        n_fft: FFT size (and Hann window length), in samples.
        hop_length: hop between spectrogram frames, in samples.
        conv_channels: output channels of the four conv blocks.
        embedding_dim: size ``D`` of the pooled embedding.
        dropout: dropout before the heads (training only).
        window_seconds: length of one analysis window, in seconds.
        log_floor: power floor before the natural log (silence maps to ``log(log_floor)``).

    Shapes: audio ``[B, C, T]`` (samples; channels are averaged), log-mel
    ``[B, n_mels, frames]``, embeddings ``[B, D]``, logits/probabilities ``[B, L]``.
    """

    def __init__(self, heads: Mapping[str, Sequence[str]], sample_rate: int = 16000, n_mels: int = 64,
                 n_fft: int = 1024, hop_length: int = 320, conv_channels: Sequence[int] = (16, 32, 96, 192),
                 embedding_dim: int = 128, dropout: float = 0.2, window_seconds: float = 4.0,
                 log_floor: float = 1e-6) -> None:
        super().__init__()
        caller = "MusicTagger"
        if not isinstance(heads, Mapping) or not heads:
            raise TypeError(f"{caller}: `heads` must be a non-empty dict head name -> list of labels, got {heads!r:.80}.")
        for head, labels in heads.items():
            if not isinstance(head, str) or isinstance(labels, str) or not isinstance(labels, Sequence) \
                    or not labels or not all(isinstance(label, str) for label in labels):
                raise TypeError(f"{caller}: `heads[{head!r}]` must be a non-empty list of str labels, got {labels!r}.")
            if len(set(labels)) != len(labels):
                raise ValueError(f"{caller}: the labels of head {head!r} must be unique, got {list(labels)}.")
        for name, value in (("sample_rate", sample_rate), ("n_mels", n_mels), ("n_fft", n_fft),
                            ("hop_length", hop_length), ("embedding_dim", embedding_dim)):
            _positive_int(value, name, caller)
        conv_channels = tuple(conv_channels)
        if len(conv_channels) != 4:
            raise ValueError(f"{caller}: `conv_channels` must list 4 channel counts (one per conv block), "
                             f"got {conv_channels}.")
        for value in conv_channels:
            _positive_int(value, "conv_channels", caller)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{caller}: `dropout` must be in [0, 1), got {dropout!r}.")
        if not window_seconds * sample_rate / hop_length >= _MIN_FRAMES:
            raise ValueError(f"{caller}: `window_seconds` must cover at least {_MIN_FRAMES} frames "
                             f"({_MIN_FRAMES * hop_length / sample_rate:.3f} s at hop {hop_length}), "
                             f"got {window_seconds!r}.")
        if not log_floor > 0:
            raise ValueError(f"{caller}: `log_floor` must be > 0, got {log_floor!r}.")
        self.heads: dict[str, list[str]] = {head: list(labels) for head, labels in heads.items()}
        self.sample_rate = sample_rate
        self.channels = 1
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.conv_channels = conv_channels
        self.embedding_dim = embedding_dim
        self.dropout_rate = float(dropout)
        self.window_seconds = float(window_seconds)
        self.log_floor = float(log_floor)
        self.mel = MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                  power=2.0)
        blocks = []
        in_channels = 1
        for index, out_channels in enumerate(conv_channels):
            layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(out_channels), nn.ReLU()]
            if index < len(conv_channels) - 1:
                layers.append(nn.AvgPool2d(2))
            blocks.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.projection = nn.Linear(2 * conv_channels[-1], embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifiers = nn.ModuleDict({head: nn.Linear(embedding_dim, len(labels))
                                          for head, labels in self.heads.items()})

    # ----------------------------------------------------------------------- configuration

    @property
    def window_frames(self) -> int:
        """Frames in one analysis window (``window_seconds`` at ``hop_length``)."""
        return int(round(self.window_seconds * self.sample_rate / self.hop_length))

    def config(self) -> dict[str, tp.Any]:
        """The constructor arguments as a JSON-serialisable dict (``MusicTagger(**config)`` rebuilds it)."""
        return {"heads": {head: list(labels) for head, labels in self.heads.items()},
                "sample_rate": self.sample_rate, "n_mels": self.n_mels, "n_fft": self.n_fft,
                "hop_length": self.hop_length, "conv_channels": list(self.conv_channels),
                "embedding_dim": self.embedding_dim, "dropout": self.dropout_rate,
                "window_seconds": self.window_seconds, "log_floor": self.log_floor}

    # ----------------------------------------------------------------------- front end

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Natural-log mel spectrogram of whole clips.

        Args:
            wav: audio ``[B, C, T]`` at ``sample_rate`` Hz (channels are averaged).
        Returns:
            ``[B, n_mels, frames]`` float32, ``frames = 1 + T // hop_length`` (clips shorter
            than ``n_fft`` samples are zero-padded to ``n_fft``).
        """
        if not isinstance(wav, torch.Tensor) or wav.dim() != 3 or wav.shape[-1] == 0:
            got = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise ValueError(f"MusicTagger.log_mel: `wav` must be a tensor [B, C, T] with T > 0 samples at "
                             f"{self.sample_rate} Hz, got {got}; for one mono clip use wav[None, None].")
        mono = wav.float().mean(dim=1)
        if mono.shape[-1] < self.n_fft:
            mono = F.pad(mono, (0, self.n_fft - mono.shape[-1]))
        return self.mel(mono).clamp(min=self.log_floor).log()

    def windows(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Cut whole-clip log-mels into analysis windows.

        Args:
            log_mel: ``[B, n_mels, frames]``.
        Returns:
            ``[B, N, n_mels, W]``: ``W = window_frames`` and ``N = ceil(frames / W)`` windows
            starting every ``W`` frames, the last one ending with the clip; a clip of at most
            ``W`` frames is one window of all its frames (padded with silence up to 8 frames).
        """
        frames = log_mel.shape[-1]
        size = self.window_frames
        if frames <= size:
            if frames < _MIN_FRAMES:
                log_mel = F.pad(log_mel, (0, _MIN_FRAMES - frames), value=math.log(self.log_floor))
            return log_mel.unsqueeze(1)
        starts = list(range(0, frames - size + 1, size))
        if starts[-1] != frames - size:
            starts.append(frames - size)
        return torch.stack([log_mel[..., start:start + size] for start in starts], dim=1)

    # ----------------------------------------------------------------------- network

    def embed_windows(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Embeddings of log-mel windows ``[N, n_mels, W]`` -> ``[N, D]`` (any ``W >= 8``)."""
        if log_mel.dim() != 3 or log_mel.shape[1] != self.n_mels or log_mel.shape[-1] < _MIN_FRAMES:
            raise ValueError(f"MusicTagger: log-mel windows must have shape [N, {self.n_mels}, W] with W >= "
                             f"{_MIN_FRAMES} frames, got {tuple(log_mel.shape)}.")
        centred = log_mel - log_mel.mean(dim=(1, 2), keepdim=True)
        hidden = self.blocks(centred.unsqueeze(1))  # [N, channels, mels', frames']
        hidden = hidden.mean(dim=2)  # average over frequency
        pooled = torch.cat([hidden.mean(dim=-1), hidden.amax(dim=-1)], dim=-1)
        return F.relu(self.projection(pooled))

    def classify(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embeddings ``[N, D]`` -> logits ``[N, L_head]`` of every head."""
        hidden = self.dropout(embedding)
        return {head: layer(hidden) for head, layer in self.classifiers.items()}

    def forward(self, log_mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every head for log-mel windows ``[N, n_mels, W]`` -> ``{head: [N, L_head]}``."""
        return self.classify(self.embed_windows(log_mel))

    # ----------------------------------------------------------------------- whole clips

    def clip_outputs_from_log_mel(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Window-averaged embedding and probabilities of whole clips given their log-mels.

        Args:
            log_mel: ``[B, n_mels, frames]`` from :meth:`log_mel`.
        Returns:
            ``(embedding [B, D], {head: probabilities [B, L_head]})``: means over the windows of
            each clip (probabilities are averaged after the softmax, so rows sum to 1).
        """
        windows = self.windows(log_mel)
        batch, count = windows.shape[:2]
        embedding = self.embed_windows(windows.flatten(0, 1))
        logits = self.classify(embedding)
        probabilities = {head: value.softmax(dim=-1).view(batch, count, -1).mean(dim=1)
                         for head, value in logits.items()}
        return embedding.view(batch, count, -1).mean(dim=1), probabilities

    def clip_outputs(self, wav: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Window-averaged embedding ``[B, D]`` and probabilities ``{head: [B, L]}`` of audio ``[B, C, T]``."""
        return self.clip_outputs_from_log_mel(self.log_mel(wav))


def spec_augment(log_mel: torch.Tensor, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2,
                 time_width: int = 25, generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment-style masking (Park et al., 2019) of log-mel crops, for training.

    Each crop gets ``freq_masks`` bands of ``0..freq_width`` mel bins and ``time_masks`` spans
    of ``0..time_width`` frames, at random places, set to the crop's mean value.

    Args:
        log_mel: ``[N, n_mels, W]``.
        freq_masks, freq_width: number and maximum width (mel bins) of frequency masks.
        time_masks, time_width: number and maximum width (frames) of time masks.
        generator: random generator (None: torch's global one).
    Returns:
        A masked copy ``[N, n_mels, W]``.
    """
    if log_mel.dim() != 3:
        raise ValueError(f"spec_augment: `log_mel` must be [N, n_mels, W], got {tuple(log_mel.shape)}.")
    out = log_mel.clone()
    count, mels, frames = out.shape
    fill = out.mean(dim=(1, 2), keepdim=True).expand_as(out)
    keep = torch.ones_like(out, dtype=torch.bool)
    for masks, width, size, axis in ((freq_masks, freq_width, mels, 1), (time_masks, time_width, frames, 2)):
        positions = torch.arange(size)
        for _ in range(masks):
            widths = torch.randint(0, min(width, size) + 1, (count,), generator=generator)
            starts = (torch.rand(count, generator=generator) * (size - widths + 1)).long()
            inside = (positions[None] >= starts[:, None]) & (positions[None] < (starts + widths)[:, None])  # [N, size]
            keep &= ~(inside[:, :, None] if axis == 1 else inside[:, None, :])
    return torch.where(keep, out, fill)


class TaggerEmbedder(nn.Module):
    """:class:`~audiocraft.metrics.embedders.AudioEmbedder` view of a :class:`MusicTagger`.

    ``embed(wav [B, C, T])`` at ``sample_rate`` Hz -> ``[B, D]``: the pooled penultimate
    embedding, averaged over the clip's analysis windows.

    Args:
        tagger: the tagger (None: :func:`load_tagger` with the shipped weights).
    """

    def __init__(self, tagger: MusicTagger | None = None) -> None:
        super().__init__()
        self.tagger = (load_tagger() if tagger is None else _check_tagger(tagger, "TaggerEmbedder")).eval()
        self.sample_rate: int = self.tagger.sample_rate
        self.channels: int = 1

    @property
    def dimension(self) -> int:
        """Size ``D`` of the embeddings."""
        return self.tagger.embedding_dim

    @torch.no_grad()
    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, C, T]`` at ``sample_rate`` Hz -> embeddings ``[B, D]`` (float32)."""
        self.tagger.eval()
        return self.tagger.clip_outputs(wav)[0]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(wav)


class TaggerClassifier(nn.Module):
    """:class:`~audiocraft.metrics.embedders.AudioClassifier` view of one head of a :class:`MusicTagger`.

    ``predict_proba(wav [B, C, T])`` at ``sample_rate`` Hz -> ``[B, L]``: the head's label
    probabilities averaged over the clip's analysis windows (rows sum to 1).

    Args:
        tagger: the tagger (None: :func:`load_tagger` with the shipped weights).
        head: which label set, e.g. ``'instrument_family'`` or ``'style'``.
    """

    def __init__(self, tagger: MusicTagger | None = None, head: str = "instrument_family") -> None:
        super().__init__()
        self.tagger = (load_tagger() if tagger is None else _check_tagger(tagger, "TaggerClassifier")).eval()
        if head not in self.tagger.heads:
            raise ValueError(f"TaggerClassifier: `head` must be one of the tagger's heads {list(self.tagger.heads)}, "
                             f"got {head!r}.")
        self.head = head
        self.sample_rate: int = self.tagger.sample_rate
        self.channels: int = 1
        self.labels: list[str] = list(self.tagger.heads[head])

    @torch.no_grad()
    def predict_proba(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, C, T]`` at ``sample_rate`` Hz -> probabilities ``[B, L]`` over :attr:`labels`."""
        self.tagger.eval()
        return self.tagger.clip_outputs(wav)[1][self.head]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`predict_proba`."""
        return self.predict_proba(wav)


def _check_tagger(tagger: object, caller: str) -> MusicTagger:
    if not isinstance(tagger, MusicTagger):
        raise TypeError(f"{caller}: `tagger` must be a MusicTagger (e.g. from load_tagger()), "
                        f"got {type(tagger).__name__}.")
    return tagger


# --------------------------------------------------------------------------- save / load


def _write_atomically(path: Path, write: tp.Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a hidden file next to ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # some writers create 0600 files; the weights are shared data
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_tagger(tagger: MusicTagger, path: str | os.PathLike, notes: Mapping[str, tp.Any] | None = None) -> Path:
    """Save a tagger to the folder ``path`` (created if needed): config.json + model.safetensors.

    Each file is written to a temporary file and renamed, so an interrupted save never leaves a
    truncated file. Front-end buffers (mel filterbank, window) are not saved: they are rebuilt
    from the hyper-parameters.

    Args:
        tagger: the tagger to save.
        path: output folder.
        notes: JSON-serialisable extra information stored under ``"notes"`` in config.json
            (e.g. the training data and accuracies).
    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    tagger = _check_tagger(tagger, "save_tagger")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"save_tagger: `path` must be a folder, got the file {str(folder)!r}; choose a folder path.")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().cpu().contiguous().clone() for name, value in tagger.state_dict().items()
               if not name.startswith(_FRONT_END_PREFIX)}
    document = {"format": "audiocraft-music-tagger", "version": 1, "config": tagger.config(),
                "notes": dict(notes or {})}
    text = json.dumps(document, indent=1)
    _write_atomically(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    _write_atomically(folder / CONFIG_FILE, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    return folder


def read_tagger_notes(path: str | os.PathLike | None = None) -> dict[str, tp.Any]:
    """The ``notes`` dict stored in a saved tagger's config.json (None: the shipped tagger)."""
    folder = _tagger_folder(path, "read_tagger_notes")
    return dict(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("notes", {}))


def _tagger_folder(path: str | os.PathLike | None, caller: str) -> Path:
    folder = DEFAULT_TAGGER_DIR if path is None else Path(path).expanduser()
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        where = "the shipped evaluation classifier folder" if path is None else "`path`"
        raise FileNotFoundError(
            f"{caller}: {where} {str(folder)!r} lacks {' and '.join(missing)}. Train the classifier with "
            f"`python scripts/train_eval_classifier.py --data <dataset root> --out {folder}` (datasets from "
            f"scripts/make_music_dataset.py), or pass the folder of a saved tagger as `path`.")
    return folder


def load_tagger(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> MusicTagger:
    """Load a tagger saved by :func:`save_tagger`, in eval mode.

    Args:
        path: the folder holding config.json and model.safetensors (None: the weights shipped
            in ``audiocraft/assets/eval_classifier/``).
        device: where to put the model.
    Returns:
        The :class:`MusicTagger`.
    Raises:
        FileNotFoundError: a file is missing (the message says how to make it).
        ValueError: the files are not a tagger or do not match each other.
    """
    from safetensors.torch import load_file

    folder = _tagger_folder(path, "load_tagger")
    try:
        document = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        config = document["config"]
        tagger = MusicTagger(**config)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"load_tagger: {str(folder / CONFIG_FILE)!r} is not a MusicTagger config ({err}); "
                         f"re-create it with scripts/train_eval_classifier.py.") from err
    state = load_file(str(folder / WEIGHTS_FILE))
    expected = {name for name in tagger.state_dict() if not name.startswith(_FRONT_END_PREFIX)}
    if set(state) != expected:
        raise ValueError(f"load_tagger: {str(folder / WEIGHTS_FILE)!r} does not match its config: missing "
                         f"{sorted(expected - set(state))}, unexpected {sorted(set(state) - expected)}; "
                         f"save both files together with save_tagger().")
    tagger.load_state_dict(state, strict=False)
    return tagger.to(device).eval()
