"""The latent denoiser of VTA-LDM with VTA-SAM's object branch (VTA-SAM sec. II-D/II-E, eq. 1/4).

VTA-LDM (Xu et al., 2024, ``ariesssxu/vta-ldm`` ``models.py``) conditions a diffusers
``UNet2DConditionModel`` on CLIP ``image_embeds`` of frames sampled at 2 fps, each projected by
one ``Linear(clip_dim, 1024)`` into the cross-attention width; the latents of a 10.24 s clip are
``(8, 256, 16)`` (channels, time, frequency). That is the V-only path here, weight for weight:
``unet.*`` and ``video_proj`` hold exactly VTA-LDM's ``unet.*`` and
``vid_fea_extractor.linear_layer`` (see :mod:`.convert`; :mod:`.denoiser` saves and loads it).

VTA-SAM adds the object features O (per-frame object embeddings, :mod:`.grounding`). O is
projected to the cross-attention width by ``object_proj``, then, inside every cross-attention
layer, time-aligned to the latent's time axis and combined with the attention output. Table IV
compares four ways (``DenoiserConfig.scheme``), with Z = softmax(Q K_V^T / sqrt(d)) the attention
map of the latent queries over the visual tokens:

- ``"ZV+O"`` (the paper's choice, eq. 1/4): ``Z @ V + O``; O added after cross-attention;
- ``"ZV"``: ``Z @ V`` (VTA-LDM, objects ignored);
- ``"Z(V+O)"``: ``Z @ (V + O)``; O added to the visual values frame by frame;
- ``"ZO+V"``: ``Z @ O + V``; the attention reads objects and V is added time-aligned.

The per-layer projection of O (``object_layers``) starts at zero, so a VTA-LDM checkpoint with an
untrained object branch gives exactly the V-only output for ``ZV+O`` and ``Z(V+O)``.

Not in either paper, off unless ``DenoiserConfig.aligned_video``: the projected V tokens are also
added after cross-attention time-aligned to the latent (``Z @ V + O + P_l V``, one zero-initialised
``video_layers`` projection per layer). Cross-attention gives each latent row a mix of frames chosen
by content only (the keys carry no time), so the V-only path cannot learn *when* a sound happens from
*when* the picture changes; this term can. The embedded toy denoiser uses it; VTA-LDM checkpoints do
not have it and load exactly as before.

The branch is implemented with diffusers' attention-processor mechanism: every attention layer
of the UNet gets an :class:`ObjectAttnProcessor`; the object tensor and the latent's grid reach
it through ``cross_attention_kwargs``. The processor holds its weights by reference, so the
UNet's own state dict keeps VTA-LDM's key layout.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

log = logging.getLogger(__name__)

KIND = "v2a-denoiser"
SCHEMES = ("ZV+O", "ZV", "Z(V+O)", "ZO+V")


@dataclass(frozen=True)
class DenoiserConfig:
    clip_dim: int = 768  # width of the CLIP image/text embeds (ViT-L/14: 768, ViT-B: 512)
    cross_attention_dim: int = 1024  # width of the conditioning tokens inside the UNet
    latent_channels: int = 8  # channels of the mel-VAE latent
    latent_time: int = 256  # latent frames in one native window (256 = 10.24 s)
    latent_freq: int = 16  # latent frequency bins (64 mels / 4)
    latent_rate: float = 25.0  # latent frames per second (16 kHz / hop 160 / VAE factor 4)
    block_out_channels: tuple = (320, 640, 640, 1280)  # UNet widths per level
    attention_head_dim: tuple = (5, 10, 20, 20)  # diffusers' name; it is the number of heads per level
    down_block_types: tuple = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")  # UNet down blocks
    up_block_types: tuple = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")  # UNet up blocks
    layers_per_block: int = 2  # resnets per UNet block
    norm_num_groups: int = 32  # group norm groups
    use_linear_projection: bool = True  # transformer proj_in/out as Linear (VTA-LDM: True)
    upcast_attention: bool = True  # attention scores in fp32 (VTA-LDM: True)
    scheme: str = "ZV+O"  # how objects O join the cross-attention (Table IV), one of SCHEMES
    use_objects: bool = True  # build the object branch (object_proj + per-layer projections)
    frame_rate: float = 2.0  # conditioning frames per second fed to CLIP
    clip_normalize: bool = False  # VTA-LDM feeds CLIP [0, 1] pixels without CLIP's mean/std
    aligned_video: bool = False  # also add V time-aligned after cross-attention (not in VTA-LDM; see the module doc)
    num_train_timesteps: int = 1000  # diffusion steps of the training schedule
    beta_start: float = 0.00085  # first beta (Stable Diffusion 2.1 scheduler, used by VTA-LDM)
    beta_end: float = 0.012  # last beta
    beta_schedule: str = "scaled_linear"  # diffusers beta schedule name
    prediction_type: str = "v_prediction"  # what the UNet predicts: "epsilon" (eq. 2) or "v_prediction"

    @property
    def duration(self) -> float:
        """Seconds covered by one native window (10.24 s for VTA-LDM)."""
        return self.latent_time / self.latent_rate

    def unet_config(self) -> dict:
        """Keyword arguments for diffusers' ``UNet2DConditionModel`` (VTA-LDM's "large" config)."""
        return dict(
            sample_size=(self.latent_time, self.latent_freq),
            in_channels=self.latent_channels,
            out_channels=self.latent_channels,
            center_input_sample=False,
            flip_sin_to_cos=True,
            freq_shift=0,
            down_block_types=tuple(self.down_block_types),
            up_block_types=tuple(self.up_block_types),
            only_cross_attention=False,
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            downsample_padding=1,
            mid_block_scale_factor=1,
            act_fn="silu",
            norm_num_groups=self.norm_num_groups,
            norm_eps=1e-5,
            cross_attention_dim=self.cross_attention_dim,
            attention_head_dim=tuple(self.attention_head_dim),
            dual_cross_attention=False,
            use_linear_projection=self.use_linear_projection,
            num_class_embeds=None,
            upcast_attention=self.upcast_attention,
        )

    def scheduler_config(self) -> dict:
        """The training noise schedule, as diffusers scheduler keyword arguments."""
        return dict(
            num_train_timesteps=self.num_train_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            beta_schedule=self.beta_schedule,
            prediction_type=self.prediction_type,
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )


# VTA-LDM's released model: configs/diffusion_model_config_large.json + a ViT-L/14 CLIP (768).
VTA_LDM_LARGE = DenoiserConfig()


@dataclass
class Conditions:
    """Projected conditions for one batch: V tokens (B, Fv, D), mask (B, Fv) bool, O (B, Fo, D) or None."""

    video: torch.Tensor
    mask: Optional[torch.Tensor] = None
    objects: Optional[torch.Tensor] = None

    def zeros_like(self) -> "Conditions":
        """VTA-LDM's unconditional branch: the projected conditions set to zero, mask all True."""
        mask = None if self.mask is None else torch.ones_like(self.mask)
        obj = None if self.objects is None else torch.zeros_like(self.objects)
        return Conditions(torch.zeros_like(self.video), mask, obj)

    @staticmethod
    def cat(items: list["Conditions"]) -> "Conditions":
        video = torch.cat([c.video for c in items])
        masks = [c.mask if c.mask is not None else torch.ones(c.video.shape[:2], dtype=torch.bool, device=c.video.device) for c in items]
        mask = None if all(c.mask is None for c in items) else torch.cat(masks)
        if all(c.objects is None for c in items):
            obj = None
        elif any(c.objects is None for c in items):
            raise InputError("cannot batch conditions with and without objects: give objects for every item or none")
        else:
            obj = torch.cat([c.objects for c in items])
        return Conditions(video, mask, obj)

    def index(self, sl) -> "Conditions":
        return Conditions(self.video[sl], None if self.mask is None else self.mask[sl],
                          None if self.objects is None else self.objects[sl])


def time_align(x: torch.Tensor, rows: int) -> torch.Tensor:
    """Resample per-frame features (B, F, D) onto ``rows`` evenly spaced times -> (B, rows, D).

    Frames and rows both tile the same span; linear interpolation between frame centres.
    """
    if x.shape[1] == rows:
        return x
    return F.interpolate(x.transpose(1, 2), size=rows, mode="linear", align_corners=False).transpose(1, 2)


def _along_latent_time(x: torch.Tensor, n_tokens: int, latent_hw) -> torch.Tensor:
    """Per-frame features (B, F, D) placed on the ``n_tokens`` tokens of a UNet level: time-aligned to its
    rows, the same on every column (token = row * width + col) -> (B, n_tokens, D)."""
    if latent_hw is None:
        raise InputError("time-aligned conditions need latent_hw: call the UNet through VTALDM.denoise")
    h, w = _grid_at(n_tokens, latent_hw)
    return time_align(x, h).repeat_interleave(w, dim=1)


def _grid_at(n_tokens: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a UNet level with ``n_tokens`` tokens; diffusers halves with ceil."""
    h, w = int(latent_hw[0]), int(latent_hw[1])
    while h * w > n_tokens and (h > 1 or w > 1):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    if h * w != n_tokens:
        raise InputError(f"cannot place {n_tokens} attention tokens on a latent grid of {tuple(latent_hw)}")
    return h, w


class ObjectAttnProcessor:
    """diffusers attention processor: scaled-dot-product attention plus the object branch.

    Without objects (or on a self-attention layer) it computes exactly what diffusers'
    ``AttnProcessor2_0`` computes. ``to_o`` (cross_dim -> inner_dim, no bias) is held by
    reference and owned by :class:`VTALDM`.
    """

    def __init__(self, scheme: str = "ZV+O", to_o: Optional[nn.Linear] = None, to_v_aligned: Optional[nn.Linear] = None):
        if scheme not in SCHEMES:
            raise InputError(f"unknown conditioning scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
        self.scheme = scheme
        self.to_o = to_o
        self.to_v_aligned = to_v_aligned

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 objects=None, latent_hw=None):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        batch_size, sequence_length, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        n_query = hidden_states.shape[1]
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)  # (B, Fv, inner)
        aligned = None
        if is_cross and self.to_v_aligned is not None:
            aligned = _along_latent_time(self.to_v_aligned(encoder_hidden_states.to(value.dtype)), n_query, latent_hw)

        use_obj = is_cross and objects is not None and self.to_o is not None and self.scheme != "ZV"
        added = None
        if use_obj:
            obj = self.to_o(objects.to(value.dtype))  # (B, Fo, inner)
            if self.scheme == "ZV+O":
                added = obj
            elif self.scheme == "Z(V+O)":
                value = value + time_align(obj, value.shape[1])
            else:  # "ZO+V"
                added = value
                value = time_align(obj, value.shape[1])
            if added is not None:
                added = _along_latent_time(added, n_query, latent_hw)  # (B, h*w, inner)

        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        if added is not None:
            hidden_states = hidden_states + added.to(hidden_states.dtype)  # "Z @ V + O" (eq. 1)
        if aligned is not None:
            hidden_states = hidden_states + aligned.to(hidden_states.dtype)  # + P_l V, time-aligned
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class VTALDM(nn.Module):
    """CLIP-embed projection + diffusers UNet2DConditionModel + object branch.

    >>> # m = VTALDM(VTA_LDM_LARGE); cond = m.project(clip_embeds (B, 20, 768)); m.denoise(z, t, cond)
    """

    def __init__(self, config: DenoiserConfig = VTA_LDM_LARGE):
        super().__init__()
        from diffusers import UNet2DConditionModel

        if config.scheme not in SCHEMES:
            raise InputError(f"unknown conditioning scheme {config.scheme!r}: use one of {', '.join(SCHEMES)}")
        self.config = config
        self.video_proj = nn.Linear(config.clip_dim, config.cross_attention_dim)
        self.unet = UNet2DConditionModel(**config.unet_config())
        with_objects = config.use_objects and config.scheme != "ZV"
        self.object_proj = nn.Linear(config.clip_dim, config.cross_attention_dim) if with_objects else None
        self.object_layers = nn.ModuleDict()
        self.video_layers = nn.ModuleDict() if config.aligned_video else None
        processors = {}
        for name, module in self.unet.attn_processors.items():
            to_o = to_va = None
            if name.endswith("attn2.processor"):
                inner = self.unet.get_submodule(name[: -len(".processor")]).to_q.out_features
                if with_objects:
                    to_o = nn.Linear(config.cross_attention_dim, inner, bias=False)
                    nn.init.zeros_(to_o.weight)  # untrained branch adds exactly nothing
                    self.object_layers[self._layer_key(name)] = to_o
                if config.aligned_video:
                    to_va = nn.Linear(config.cross_attention_dim, inner, bias=False)
                    nn.init.zeros_(to_va.weight)
                    self.video_layers[self._layer_key(name)] = to_va
            processors[name] = ObjectAttnProcessor(config.scheme, to_o, to_va)
        self.unet.set_attn_processor(processors)

    @staticmethod
    def _layer_key(processor_name: str) -> str:
        return processor_name[: -len(".processor")].replace(".", "_")

    @property
    def has_objects(self) -> bool:
        return self.object_proj is not None

    def project(self, video_embeds: torch.Tensor, object_embeds: Optional[torch.Tensor] = None,
                video_mask: Optional[torch.Tensor] = None) -> Conditions:
        """CLIP embeds (B, Fv, clip_dim) [+ object embeds (B, Fo, clip_dim)] -> :class:`Conditions`."""
        if video_embeds.ndim != 3 or video_embeds.shape[-1] != self.config.clip_dim:
            raise InputError(f"video embeds must be (B, frames, {self.config.clip_dim}), got {tuple(video_embeds.shape)}")
        dtype = self.video_proj.weight.dtype
        v = self.video_proj(video_embeds.to(dtype))
        o = None
        if object_embeds is not None and self.has_objects:
            if object_embeds.ndim != 3 or object_embeds.shape[-1] != self.config.clip_dim:
                raise InputError(f"object embeds must be (B, frames, {self.config.clip_dim}), got {tuple(object_embeds.shape)}")
            o = self.object_proj(object_embeds.to(dtype))
        elif object_embeds is not None:
            log.warning("objects given but this denoiser has no object branch (scheme %s): ignoring them", self.config.scheme)
        return Conditions(v, video_mask, o)

    def denoise(self, latents: torch.Tensor, timestep, cond: Conditions) -> torch.Tensor:
        """UNet prediction for latents (B, C, T, F) at ``timestep`` under ``cond`` -> (B, C, T, F)."""
        if latents.ndim != 4 or latents.shape[1] != self.config.latent_channels:
            raise InputError(f"latents must be (B, {self.config.latent_channels}, T, F), got {tuple(latents.shape)}")
        kwargs = None
        if cond.objects is not None and self.has_objects:
            kwargs = {"objects": cond.objects, "latent_hw": tuple(latents.shape[-2:])}
        elif self.video_layers is not None:
            kwargs = {"latent_hw": tuple(latents.shape[-2:])}
        return self.unet(latents, timestep, encoder_hidden_states=cond.video.to(latents.dtype),
                         encoder_attention_mask=cond.mask, cross_attention_kwargs=kwargs).sample

    def forward(self, latents, timestep, video_embeds, object_embeds=None, video_mask=None,
                drop: Optional[torch.Tensor] = None, drop_objects: Optional[torch.Tensor] = None):
        """Training entry: project the CLIP embeds and denoise. ``drop`` (B,) bool zeroes V and O
        of those rows (the unconditional branch of eq. 3), ``drop_objects`` (B,) zeroes O only."""
        # a shared feature folder has O for every clip; a denoiser without the branch takes V alone
        cond = self.project(video_embeds, object_embeds if self.has_objects else None, video_mask)
        if drop is not None:
            keep = (~drop).to(cond.video.dtype)[:, None, None]
            cond.video = cond.video * keep
            if cond.mask is not None:
                cond.mask = cond.mask | drop[:, None]
        if cond.objects is not None:
            dropped = drop if drop_objects is None else (drop_objects if drop is None else drop | drop_objects)
            if dropped is not None:
                cond.objects = cond.objects * (~dropped).to(cond.objects.dtype)[:, None, None]
        return self.denoise(latents, timestep, cond)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups for training: ``objects`` (the new branch), ``video_proj`` (with the aligned-V
        layers when there are any) and ``unet``."""
        objects = [] if not self.has_objects else list(self.object_proj.parameters()) + list(self.object_layers.parameters())
        video = list(self.video_proj.parameters()) + ([] if self.video_layers is None else list(self.video_layers.parameters()))
        return {"objects": objects, "video_proj": video, "unet": list(self.unet.parameters())}
