"""``synesthesia convert``: turn a foreign checkpoint into safetensors + config.json.

Each kind maps to a converter ``fn(src: Path, dst: Path, **options) -> Path``, found by import
path so that the command line stays fast to start.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import InputError

# kind -> ("module under core", "function", "help")
CONVERTERS: dict[str, tuple[str, str, str]] = {}
CONVERTERS.update({"stylegan": ("s2v.generator", "convert_stylegan", "StyleGAN2/3 generator, rosinality .pt or NVIDIA .pkl (sniffed)"), "stylegan-rosinality": ("s2v.generator", "convert_rosinality", "rosinality stylegan2-pytorch .pt"), "stylegan-nvidia": ("s2v.generator", "convert_nvidia", "NVIDIA stylegan2-ada / stylegan3 .pkl")})
CONVERTERS["vta-ldm"] = ("v2a.convert", "convert_vta_ldm", "VTA-LDM checkpoint folder with pytorch_model_2.bin")
CONVERTERS.update({"s2v-seed-audio-encoder": ("s2v.audio_encoder", "convert_seed_audio_encoder", "Lee et al. CVPR 2022 / seed resnet18.pth audio encoder"), "s2v-seed-inversion": ("s2v.inversion_encoder", "convert_seed_inversion", "seed audio_inversion_.pth (pSp GradualStyleEncoder)"), "s2v-seed-walker": ("s2v.walker", "convert_seed_walker", "folder with the seed's coarse/mid/fineformer_.pth")})
CONVERTERS.update({"audioldm-vae": ("v2a.vae", "convert_audioldm_vae", "AudioLDM mel VAE: original .ckpt or diffusers vae/ folder"), "hifigan": ("v2a.vocoder", "convert_vocoder", "HiFi-GAN vocoder: AudioLDM .ckpt / vocoder/ folder, jik876 generator")})
CONVERTERS.update({"grounding-dino": ("v2a.grounding_convert", "convert_grounding_dino", "original groundingdino_swint_ogc.pth -> HF folder"), "sam": ("v2a.grounding_convert", "convert_sam", "original sam_vit_*.pth -> HF folder")})


def convert(kind: str, src, dst, **options) -> Path:
    if kind not in CONVERTERS:
        raise InputError(f"unknown checkpoint kind {kind!r}: choose one of {', '.join(sorted(CONVERTERS)) or '(none yet)'}")
    module, fn, _ = CONVERTERS[kind]
    func = getattr(importlib.import_module(f"..{module}", __package__), fn)
    return func(Path(src), Path(dst), **options)


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert a foreign checkpoint to safetensors + config.json")
    p.add_argument("kind", help="checkpoint kind: " + ", ".join(f"{k} ({v[2]})" for k, v in sorted(CONVERTERS.items())))
    p.add_argument("src", help="the checkpoint file or folder to read")
    p.add_argument("-o", "--output", required=True, help="output folder (model.safetensors + config.json)")
    p.set_defaults(func=lambda a: print(convert(a.kind, a.src, a.output)) or 0)
