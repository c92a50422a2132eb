"""Two small EnCodec runs to check a set-up end to end: ``dora -P audiocraft grid compression.debug``.

Set the dataset with `dset=...` in `launcher.bind_` (the debug solver uses dset=audio/example).
"""
from .._base_explorers import CompressionExplorer


@CompressionExplorer
def explorer(launcher):
    launcher.slurm_(gpus=2)
    launcher.bind_(solver="compression/debug")
    with launcher.job_array():
        launcher()                               # 32 codebooks of 1024 with quantizer dropout
        launcher({"rvq.bins": 2048, "rvq.n_q": 4})  # 4 codebooks of 2048, like MusicGen's codec
