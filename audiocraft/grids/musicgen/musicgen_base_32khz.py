"""Text-to-music MusicGen at 32 kHz, the released recipe: ``dora -P audiocraft grid musicgen.musicgen_base_32khz``.

Point ``dset`` at your captioned music dataset (``config/dset/audio/<name>.yaml``) before launching.
"""
from ._explorers import LMExplorer


@LMExplorer
def explorer(launcher):
    launcher.slurm_(gpus=32)
    launcher.bind_(solver="musicgen/musicgen_base_32khz")
    launcher({"model/lm/model_scale": "small"})
    launcher.slurm(gpus=48)({"model/lm/model_scale": "medium"})
    launcher.slurm(gpus=64)({"model/lm/model_scale": "large"})
