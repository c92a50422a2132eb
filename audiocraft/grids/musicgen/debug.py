"""Two tiny MusicGen runs to check a set-up end to end: ``dora -P audiocraft grid musicgen.debug``.

The debug solver uses the tiny random codec (``//pretrained/debug_compression_model``) and
``dset=audio/example``; bind another dataset with ``dset=...`` if you have no ``egs/example``.
"""
from ._explorers import LMExplorer


@LMExplorer
def explorer(launcher):
    launcher.slurm_(gpus=1)
    launcher.bind_(solver="musicgen/debug")
    with launcher.job_array():
        launcher()                     # full training of the toy LM
        launcher({"lora.use": True})   # LoRA adapters only
