"""Loading builds the models on the meta device and takes the checkpoint's tensors (no random
initialisation first): the loaded models equal the ones built for real and then loaded."""

from __future__ import annotations

import itertools

import pytest
import torch

from synesthesia.core.v2a import denoiser as dn
from test_v2a_denoiser import _inputs, _write_vta_ldm
from tiny_vta import make_tiny_vta


def _no_meta(model):
    return not any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))


def _reference(config, state):
    """The path before meta construction: random init, then copy the checkpoint in."""
    ref = dn.VTALDM(config)
    dn.load_denoiser_state(ref, state)
    return ref.eval()


def test_vta_ldm_checkpoint_equals_built_then_loaded(tmp_path):
    _write_vta_ldm(tmp_path / "vta")
    model = dn.load_denoiser(tmp_path / "vta")
    assert _no_meta(model) and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    state, config = dn.read_vta_ldm(tmp_path / "vta")
    ref = _reference(config, state)
    got = model.state_dict()
    for k, v in state.items():  # every checkpoint tensor, bit for bit
        assert torch.equal(got[k], v), k
    for k, layer in model.object_layers.items():  # the branch VTA-LDM lacks adds nothing
        assert torch.count_nonzero(layer.weight) == 0, k
    assert model.object_proj.weight.abs().sum() > 0  # nn.Linear's default init, not left empty
    z, v, o = _inputs()
    with torch.no_grad():
        assert torch.equal(model(z, 5, v, o), ref(z, 5, v, o))
        assert torch.equal(model(z, 5, v), ref(z, 5, v))


def test_our_folder_with_trained_objects_and_dtype(tmp_path):
    trained = make_tiny_vta(seed=2, trained_objects=True)
    dn.save_denoiser(trained, tmp_path / "ours")
    model = dn.load_denoiser(tmp_path / "ours")
    assert _no_meta(model)
    for k, v in trained.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    z, v, o = _inputs()
    with torch.no_grad():
        assert torch.equal(model(z, 5, v, o), trained(z, 5, v, o))
    # straight to the target dtype; a processor still holds the same object layer as the model
    half = dn.load_denoiser(tmp_path / "ours", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    name = next(n for n in half.unet.attn_processors if n.endswith("attn2.processor"))
    assert half.unet.attn_processors[name].to_o is half.object_layers[half._layer_key(name)]
    for k, v in trained.state_dict().items():
        assert torch.equal(half.state_dict()[k], v.to(torch.bfloat16)), k


def test_incomplete_checkpoint_is_refused(tmp_path):
    trained = make_tiny_vta(seed=2)
    state = trained.state_dict()
    state.pop("unet.conv_in.bias")
    with pytest.raises(dn.CheckpointMismatchError):
        dn.load_denoiser_state(dn.VTALDM(trained.config), state)


def test_vae_and_vocoder_from_meta(tmp_path):
    from tiny_audioldm import make_tiny_audioldm_diffusers

    from synesthesia.core.v2a.vae import _load_uncached as load_vae
    from synesthesia.core.v2a.vocoder import _load_uncached as load_voc

    ref_vae, ref_voc = make_tiny_audioldm_diffusers(tmp_path / "audioldm")
    vae, voc = load_vae(tmp_path / "audioldm" / "vae"), load_voc(tmp_path / "audioldm" / "vocoder")
    assert _no_meta(vae) and _no_meta(voc)
    for k, v in ref_vae.state_dict().items():
        assert torch.equal(vae.vae.state_dict()[k], v), k
    for k, v in voc.hifigan.state_dict().items():
        assert torch.equal(v, ref_voc.state_dict()[k]), k
    z = torch.randn(1, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(vae.decode(z), ref_vae.decode(1.0 / vae.scaling_factor * z).sample)


@pytest.mark.parametrize("fmt", ["folder-sg2", "folder-sg3", "rosinality", "nvidia-sg3"])
def test_generators_load_without_random_init_or_drawing(tmp_path, fmt):
    """StyleGAN2/3 from each format: parameters built on the meta device and the checkpoint's tensors
    assigned, so the loaded generator renders exactly what the saved one does, nothing is left on meta
    (the constructor's computed buffers, e.g. StyleGAN3's filters, are real) and the global random stream
    is not moved (train-s2v seeds around loads; a draw here made its init depend on the model cache)."""
    from tiny_stylegan import make_nvidia_pkl, make_rosinality_pt, make_sg2, make_sg3

    from synesthesia.core.s2v.generator import read_generator, save_generator

    if fmt == "rosinality":
        path = tmp_path / "g.pt"
        ref = make_rosinality_pt(path, seed=3).eval()
    else:
        ref = (make_sg3 if fmt.endswith("sg3") else make_sg2)(seed=3).eval()
        path = make_nvidia_pkl(tmp_path / "g.pkl", ref) if fmt.startswith("nvidia") else save_generator(ref, tmp_path / "g")
    torch.manual_seed(11)
    before = torch.get_rng_state()
    g = read_generator(path)
    assert torch.equal(torch.get_rng_state(), before)
    assert _no_meta(g) and all(p.dtype == torch.float32 for p in g.parameters())
    assert not any(p.requires_grad for p in g.parameters())
    for k, v in ref.state_dict().items():
        assert torch.equal(g.state_dict()[k], v), k
    w = torch.randn(2, g.n_latent, g.w_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(g.synthesis(w), ref.synthesis(w))
