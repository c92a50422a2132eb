"""A captioned music dataset rendered on the CPU from the music21 corpus with FluidSynth.

The pipeline, one module per idea:

- :mod:`.corpus`: which public-domain works of the music21 corpus we use, in what order, and
  how a work becomes a cached :class:`~.corpus.ParsedWork` (notes in quarter lengths + bars);
- :mod:`.instruments`: General MIDI instruments, ensembles and drum patterns;
- :mod:`.harmony`: key finding and chord roots for the generated accompaniment;
- :mod:`.plan`: a seeded :class:`~.plan.ClipPlan` per clip (bars, tempo, transposition,
  instruments, groove) and the train/valid/test split of each work;
- :mod:`.arrange`: the timed note events a plan produces (generated chords, bass and drums);
- :mod:`.render`: FluidSynth rendering of those events to mono float32 audio;
- :mod:`.captions`: the MusicInfo sidecar (description, key, bpm, genre, moods, ...) of a clip;
- :mod:`.build`: the resumable, multi-process dataset builder behind
  ``scripts/make_music_dataset.py``.

Heavy dependencies (music21, pyfluidsynth) are imported only where they are used.
See ``docs/DATASET.md``.
"""
