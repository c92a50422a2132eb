"""Grids of MusicGen experiments: ``dora -P audiocraft grid musicgen.<name>``.

- ``debug``: two tiny runs (full training and LoRA) to check a set-up end to end;
- ``musicgen_base_32khz``: text-to-music at 32 kHz, the three model scales (set your dataset);
- ``finetune``: fine-tuning the bundled default model on your data, full model vs LoRA.
"""
