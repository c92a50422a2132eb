"""Installation script for audiocraft.

Requirements are lower bounds only: any torch >= 2.1 works. torchaudio, xformers
and the ``encodec`` package are not needed.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

REQUIRED = [
    "torch>=2.1",
    "numpy>=1.23",
    "soundfile>=0.12",
    "av>=10",
    "julius>=0.2.7",
    "omegaconf>=2.2",
    "huggingface_hub>=0.20",
    "safetensors>=0.4",
    "transformers>=4.36",
    "sentencepiece>=0.1.99",
    "tqdm>=4.60",
]

EXTRAS = {
    "train": ["dora-search>=0.1.12", "hydra-core>=1.3", "tensorboard>=2.10"],
    "demo": ["gradio>=6.0"],
    "dev": ["pytest>=7", "pytest-xdist>=3", "selenium>=4.20", "pyflakes>=3"],
    "data": ["music21>=9", "pyfluidsynth>=1.3"],
    "lora": ["peft>=0.10"],
}

setup(
    name="audiocraft",
    version="2.0.0.dev0",
    description="Audio generation with language models over neural-codec tokens (MusicGen, AudioGen, EnCodec).",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["audiocraft", "audiocraft.*"]),
    install_requires=REQUIRED,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["audiocraft=audiocraft.__main__:main"]},
    include_package_data=True,
    package_data={"audiocraft": ["assets/**/*"]},
    license="MIT",
)
