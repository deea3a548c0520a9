"""Video -> audio speed for a 10 s clip: seconds per denoising step and end to end, with the
classifier-free-guidance passes batched (one UNet call on 2B, as the pipeline does) against two
separate passes (baseline), measured in the same process on the same weights.

    python bench/bench_cfg.py                      # VTA-LDM "large" UNet, CPU fp32
    python bench/bench_cfg.py --size medium        # half the channels (faster on small CPUs)
    python bench/bench_cfg.py --device cuda --dtype bf16 --steps 10

Weights are random (the architecture and shapes are VTA-LDM's: latents (8, 256, 16), 20 CLIP
tokens of width 1024); timings do not depend on the values. End to end = CLIP ViT-L/14 on 20
frames + ``steps`` denoising steps + AudioLDM VAE decode + HiFi-GAN (AudioLDM config), and the
300-step figure is extrapolated from the measured per-step time. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

SIZES = {
    "large": {},  # VTA-LDM's diffusion_model_config_large.json
    "medium": dict(block_out_channels=(160, 320, 320, 640)),
    "small": dict(block_out_channels=(64, 128, 128, 256), attention_head_dim=(2, 4, 8, 8)),
}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(predict, z, steps, device) -> float:
    """Mean seconds per denoising step (first call is a warm-up)."""
    with torch.no_grad():
        predict(z, torch.tensor(999))
        _sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            predict(z, torch.tensor(999 - 3 * i))
        _sync(device)
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="large", choices=sorted(SIZES))
    ap.add_argument("--steps", type=int, default=3, help="denoising steps timed per mode")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-end-to-end", action="store_true", help="only the per-step comparison")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from synesthesia.core.v2a.denoiser import VTA_LDM_LARGE, VTALDM
    from synesthesia.core.v2a.sampling import guided_predictor

    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    cfg = dataclasses.replace(VTA_LDM_LARGE, **SIZES[args.size])
    torch.manual_seed(0)
    model = VTALDM(cfg).eval().requires_grad_(False).to(device, dtype)
    n_params = sum(p.numel() for p in model.unet.parameters()) / 1e6
    print(f"device {device} {args.dtype}, threads {torch.get_num_threads()}, UNet {args.size} {n_params:.0f} M params, "
          f"latents (1, {cfg.latent_channels}, {cfg.latent_time}, {cfg.latent_freq}), {args.steps} timed steps")
    frames = int(cfg.frame_rate * 10)
    cond = model.project(torch.randn(1, frames, cfg.clip_dim, device=device, dtype=dtype),
                         torch.randn(1, frames, cfg.clip_dim, device=device, dtype=dtype))
    z = torch.randn(1, cfg.latent_channels, cfg.latent_time, cfg.latent_freq, device=device, dtype=dtype)
    two = time_steps(guided_predictor(model, cond, 3.0, batched=False), z, args.steps, device)
    one = time_steps(guided_predictor(model, cond, 3.0, batched=True), z, args.steps, device)
    print(f"per step, two separate passes (baseline): {two:.3f} s")
    print(f"per step, batched CFG (one call on 2):     {one:.3f} s")
    print(f"batched CFG speed-up: {two / one:.2f}x")
    if args.no_end_to_end:
        return 0

    from synesthesia.core.v2a.pipeline import clip_image_embeds
    from synesthesia.core.v2a.vae import MelVAE
    from synesthesia.core.v2a.vocoder import Vocoder

    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    class _Clip:  # ClipEncoder's two members used by clip_image_embeds, on a random ViT-L/14
        def __init__(self):
            vc = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                  image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
            self.m = CLIPVisionModelWithProjection(vc).eval().to(device, dtype)
            self.image_size = 224

        def encode_pixels(self, px):
            return self.m(pixel_values=px.to(device, dtype)).image_embeds

    clip = _Clip()
    vae = MelVAE().eval().requires_grad_(False).to(device)
    voc = Vocoder().eval().requires_grad_(False).to(device)
    video = torch.randint(0, 256, (frames, 360, 640, 3), dtype=torch.uint8)
    with torch.no_grad():
        t0 = time.perf_counter()
        emb = clip_image_embeds(clip, video)
        _sync(device)
        t_clip = time.perf_counter() - t0
        t0 = time.perf_counter()
        mel = vae.decode(z.float())
        _sync(device)
        t_vae = time.perf_counter() - t0
        t0 = time.perf_counter()
        wav = voc(mel[:, 0])
        _sync(device)
        t_voc = time.perf_counter() - t0
    fixed = t_clip + t_vae + t_voc
    print(f"CLIP ViT-L/14 on {frames} frames: {t_clip:.2f} s; VAE decode: {t_vae:.2f} s; HiFi-GAN ({wav.shape[1] / 16000:.2f} s audio): {t_voc:.2f} s")
    for steps in (25, 300):
        print(f"end to end, {steps} steps: batched {fixed + steps * one:.1f} s, separate passes {fixed + steps * two:.1f} s "
              f"(speed-up {(fixed + steps * two) / (fixed + steps * one):.2f}x)")
    del emb
    return 0


if __name__ == "__main__":
    sys.exit(main())
