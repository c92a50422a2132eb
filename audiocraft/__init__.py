"""audiocraft: audio generation with language models over neural-codec tokens.

The public entry points mirror Meta's AudioCraft::

    from audiocraft.models import MusicGen
    model = MusicGen.get_pretrained()
    model.set_generation_params(duration=8)
    wav = model.generate(["lofi piano"])

Importing this package is cheap: heavy or optional dependencies (transformers,
Dora, Hydra, Gradio) are imported where they are used.
"""

__version__ = "2.0.0.dev0"
