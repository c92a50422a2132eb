"""Where training runs keep their files, set by environment variables.

- ``AUDIOCRAFT_DORA_DIR``: root of the Dora experiments (one folder per signature under
  ``xps/``); default ``~/.cache/audiocraft/dora``.
- ``AUDIOCRAFT_REFERENCE_DIR``: root of the reference files that configs name with the
  ``//reference/`` prefix (e.g. metric models); default ``~/.cache/audiocraft/reference``.

Nothing here imports Dora or Hydra.
"""
from __future__ import annotations

import os
from pathlib import Path

DORA_DIR_ENV = "AUDIOCRAFT_DORA_DIR"
REFERENCE_DIR_ENV = "AUDIOCRAFT_REFERENCE_DIR"
DEFAULT_DORA_DIR = "~/.cache/audiocraft/dora"
DEFAULT_REFERENCE_DIR = "~/.cache/audiocraft/reference"
REFERENCE_PREFIX = "//reference/"


class AudioCraftEnvironment:
    """The folders of the training environment (AudioCraft's class name, plain functions inside)."""

    @staticmethod
    def get_dora_dir() -> Path:
        """Root folder of the Dora experiments: ``$AUDIOCRAFT_DORA_DIR`` or ``~/.cache/audiocraft/dora``."""
        return Path(os.environ.get(DORA_DIR_ENV) or DEFAULT_DORA_DIR).expanduser()

    @staticmethod
    def get_reference_dir() -> Path:
        """Root of the ``//reference/`` files: ``$AUDIOCRAFT_REFERENCE_DIR`` or ``~/.cache/audiocraft/reference``."""
        return Path(os.environ.get(REFERENCE_DIR_ENV) or DEFAULT_REFERENCE_DIR).expanduser()

    @staticmethod
    def resolve_reference_path(path: str | os.PathLike) -> Path:
        """Turn ``//reference/<rest>`` into ``<reference dir>/<rest>``; other paths are only ``~``-expanded."""
        text = str(path)
        if text.startswith(REFERENCE_PREFIX):
            return AudioCraftEnvironment.get_reference_dir() / text[len(REFERENCE_PREFIX):]
        return Path(text).expanduser()


get_dora_dir = AudioCraftEnvironment.get_dora_dir
get_reference_dir = AudioCraftEnvironment.get_reference_dir
resolve_reference_path = AudioCraftEnvironment.resolve_reference_path
