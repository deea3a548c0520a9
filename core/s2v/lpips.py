"""LPIPS perceptual distance (Zhang et al., CVPR 2018), VGG-16 variant, for the image inversion
of Lee et al., ECCV 2022, sec. 4.5 / Table 3b.

d(x, y) = Σ_l mean_hw ‖ w_l ⊙ (φ̂_l(x) − φ̂_l(y)) ‖²  with φ̂_l the channel-normalised VGG-16
activations after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 and w_l the learned linear weights.

Nothing is shipped: the user gives the ImageNet VGG-16 weights (torchvision ``vgg16`` state
dict, ``features.<i>.weight/bias``) and the LPIPS linear weights (the ``lpips`` package's
``weights/v0.1/vgg.pth``, ``lin<k>.model.1.weight``). Both load by explicit key maps with every
shape checked.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from .keymap import load_mapped, strip_prefixes

# VGG-16 "D" configuration: conv widths, "M" = 2x2 max-pool (torchvision features indices follow)
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # torchvision features index of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_CHANNELS = (64, 128, 256, 512, 512)


class LPIPS(nn.Module):
    """LPIPS-VGG: images (B, 3, H, W) in [-1, 1] -> distances (B,)."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def _feats(self, x):
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
            if i >= _TAPS[-1]:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"LPIPS compares two (B, 3, H, W) batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        total = 0
        for fx, fy, lin in zip(self._feats(x), self._feats(y), self.lins):
            fx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((fx - fy).square()).mean(dim=(2, 3))
        return total[:, 0]


def load_lpips(vgg_path, lpips_path, device=None) -> LPIPS:
    """Build LPIPS-VGG from torchvision ``vgg16`` weights and the ``lpips`` linear weights."""
    from ..safeload import find_state_dict, load_state_dict

    vgg = strip_prefixes(find_state_dict(load_state_dict(vgg_path)))
    lin = strip_prefixes(find_state_dict(load_state_dict(lpips_path)))
    model = LPIPS()
    conv_idx = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    key_map = {}
    for i in conv_idx:
        key_map[f"features.{i}.weight"] = f"features.{i}.weight"
        key_map[f"features.{i}.bias"] = f"features.{i}.bias"
    for k in range(len(_CHANNELS)):
        key_map[f"lins.{k}.weight"] = f"lin{k}.model.1.weight"
    src = {**{k: v for k, v in vgg.items() if k.startswith("features.")}, **lin}
    unused = [k for k in src if k.startswith("features.") and int(k.split(".")[1]) > _TAPS[-1]]
    load_mapped(model, src, key_map, f"{vgg_path} + {lpips_path}", ignore=unused)
    return model.to(device).eval()
