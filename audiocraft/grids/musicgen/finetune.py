"""Fine-tuning the bundled default model on your data, full model vs LoRA:
``dora -P audiocraft grid musicgen.finetune`` (see docs/FINETUNE.md; set ``dset`` to your dataset config).
"""
from ._explorers import LMExplorer


@LMExplorer
def explorer(launcher):
    launcher.slurm_(gpus=1)
    launcher.bind_(solver="musicgen/finetune", continue_from="//pretrained/default")
    with launcher.job_array():
        for lr in (1e-5, 3e-5):
            launcher({"optim.lr": lr})
        for rank in (8, 32):
            launcher({"lora.use": True, "lora.rank": rank, "lora.alpha": 2 * rank, "optim.lr": 1e-4})
