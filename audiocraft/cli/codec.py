"""The codec verbs: ``encode`` (audio file -> tokens file) and ``decode`` (tokens file -> audio file).

A tokens file is a ``torch.save``-d dict (read it with ``torch.load(path, weights_only=True)``):

- ``codes``: int16 (int64 if the codebooks hold more than 32768 entries) [1, K, T] at ``frame_rate``;
- ``sample_rate`` (Hz), ``frame_rate`` (Hz), ``channels``: the codec's;
- ``num_samples``: length of the encoded audio at ``sample_rate`` (decoding gives ``T * hop`` samples,
  ``--trim`` cuts back to this);
- ``model``: the codec's name or absolute folder, used by ``decode`` unless ``--model`` is given;
- ``cardinality`` (codebook size), ``source`` (the audio file), ``audiocraft_version``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import AUDIO_FORMATS, CliError, add_runtime_options, add_write_options

ENCODE_EPILOG = """\
examples:
  python -m audiocraft encode song.wav --out song.tokens.pt
  python -m audiocraft encode song.wav --out song.tokens.pt --model facebook/musicgen-small"""

DECODE_EPILOG = """\
examples:
  python -m audiocraft decode song.tokens.pt --out song.decoded.wav
  python -m audiocraft decode song.tokens.pt --out song.flac --trim"""

CODEC_MODEL_HELP = ("codec to use: a model folder or Hugging Face name (its compression model), a "
                    "compression_state_dict.bin file, a transformers EnCodec (e.g. facebook/encodec_32khz) or "
                    "'debug'. Default: the bundled default model's codec")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the encode and decode sub-commands."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser(
        "encode", help="audio file -> codec tokens file", epilog=ENCODE_EPILOG, formatter_class=formatter,
        description="Encode an audio file into the discrete tokens [1, K, T] of a neural codec (EnCodec). "
                    "The audio is resampled and down/up-mixed to the codec's rate and channels first.")
    parser.add_argument("audio_file", metavar="AUDIO_FILE", help="audio to encode (wav, flac, ogg, mp3...)")
    parser.add_argument("--out", default=None, metavar="TOKENS.pt",
                        help="tokens file to write (default: <AUDIO_FILE name>.tokens.pt in the current folder)")
    parser.add_argument("--model", default=None, metavar="NAME_OR_FOLDER", help=CODEC_MODEL_HELP)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing tokens file")
    add_runtime_options(parser)
    parser.set_defaults(handler=run_encode)

    parser = subparsers.add_parser(
        "decode", help="codec tokens file -> audio file", epilog=DECODE_EPILOG, formatter_class=formatter,
        description="Decode a tokens file written by `encode` back to audio, with the codec named in the "
                    "file unless --model is given.")
    parser.add_argument("tokens_file", metavar="TOKENS.pt", help="tokens file written by `encode`")
    parser.add_argument("--out", default=None, metavar="AUDIO",
                        help="audio file to write; its extension picks the format (wav, flac, mp3, ogg) "
                             "(default: <TOKENS name>.decoded.wav in the current folder)")
    parser.add_argument("--model", default=None, metavar="NAME_OR_FOLDER",
                        help="codec to decode with (default: the one recorded in the tokens file)")
    parser.add_argument("--trim", action="store_true",
                        help="cut the output to the length of the encoded audio (default: whole frames, "
                             "frames x hop length samples)")
    add_write_options(parser.add_argument_group("audio file"), default_strategy="clip")
    add_runtime_options(parser)
    parser.set_defaults(handler=run_decode)


def _strip_suffixes(name: str) -> str:
    for suffix in (".pt", ".tokens"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    return name


# ============================================================================ encode

def run_encode(args: argparse.Namespace) -> int:
    import torch

    from .. import __version__
    from ..data.audio import audio_read
    from ..data.audio_utils import convert_audio
    from .loading import describe_model_name, load_codec, save_atomically
    from .outputs import check_targets

    out = Path(args.out).expanduser() if args.out else Path(Path(args.audio_file).name).with_suffix(".tokens.pt")
    wav, sample_rate = audio_read(args.audio_file)
    if wav.shape[-1] == 0:
        raise CliError(f"AUDIO_FILE {args.audio_file!r} holds no audio samples")
    check_targets([out], args.overwrite)
    device = _setup(args)
    start = time.perf_counter()
    codec = load_codec(args.model, device)
    wav = convert_audio(wav, sample_rate, codec.sample_rate, codec.channels)
    with torch.no_grad():
        codes, scale = codec.encode(wav[None].to(device))
    if scale is not None:
        raise CliError("this codec rescales its input (scale is not None), which tokens files do not store; "
                       "use a codec without renormalisation")
    dtype = torch.int16 if codec.cardinality <= 2 ** 15 else torch.int64
    package = {
        "codes": codes.cpu().to(dtype), "sample_rate": int(codec.sample_rate), "frame_rate": float(codec.frame_rate),
        "model": describe_model_name(args.model), "channels": int(codec.channels), "num_samples": int(wav.shape[-1]),
        "cardinality": int(codec.cardinality), "source": str(Path(args.audio_file).resolve()),
        "audiocraft_version": __version__,
    }
    save_atomically(package, out)
    print(out, flush=True)
    if not args.quiet:
        print(f"encoded {wav.shape[-1] / codec.sample_rate:.2f} s into {codes.shape[1]} x {codes.shape[2]} tokens "
              f"({codec.frame_rate:g} Hz) in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


# ============================================================================ decode

def run_decode(args: argparse.Namespace) -> int:
    import torch

    from .loading import load_codec, read_tokens_file
    from .outputs import WriteOptions, check_targets, write_audio

    tokens_path = Path(args.tokens_file).expanduser()
    if args.out:
        out = Path(args.out).expanduser()
    else:
        out = Path(_strip_suffixes(tokens_path.name) + ".decoded.wav")
    audio_format = out.suffix.lower().lstrip(".")
    if audio_format not in AUDIO_FORMATS:
        raise CliError(f"--out {str(out)!r}: cannot tell the audio format from the extension "
                       f"{out.suffix or '(none)'!r}; end the name with one of: "
                       f"{', '.join('.' + fmt for fmt in AUDIO_FORMATS)}")
    package = read_tokens_file(tokens_path)
    check_targets([out], args.overwrite)
    device = _setup(args)
    model_name = args.model if args.model is not None else str(package["model"])
    try:
        codec = load_codec(model_name, device)
    except FileNotFoundError as exc:
        if args.model is None:
            raise CliError(f"the codec recorded in {str(tokens_path)!r} ({model_name!r}) cannot be loaded "
                           f"({exc}); pass --model with the codec used by `encode`") from None
        raise
    codes = package["codes"]
    if codes.shape[1] != codec.num_codebooks or int(package["sample_rate"]) != codec.sample_rate:
        raise CliError(f"{str(tokens_path)!r} holds {codes.shape[1]} codebooks at {package['sample_rate']} Hz but "
                       f"codec {model_name!r} uses {codec.num_codebooks} at {codec.sample_rate} Hz: decode with the "
                       "codec that encoded the file (--model)")
    if int(codes.max()) >= codec.cardinality:
        raise CliError(f"{str(tokens_path)!r} holds code {int(codes.max())} but codec {model_name!r} has codebooks of "
                       f"{codec.cardinality} entries: decode with the codec that encoded the file (--model)")
    with torch.no_grad():
        audio = codec.decode(codes.to(device), None)[0]
    if args.trim:
        audio = audio[..., :int(package["num_samples"])]
    options = WriteOptions(format=audio_format, strategy=args.strategy,
                           loudness_headroom_db=args.loudness_headroom_db)
    print(write_audio(out, audio, codec.sample_rate, options), flush=True)
    return 0


def _setup(args: argparse.Namespace) -> str:
    from .common import setup_runtime
    return setup_runtime(args.device, args.threads)
