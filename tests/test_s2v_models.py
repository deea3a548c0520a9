"""Sound-to-video models: shapes through every module, the W+ group split, the mel front end
against librosa, checkpoint round trips of our folders and of the seed code's layouts.

All weights are random (these prove the plumbing and the key maps, not trained behaviour).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from synesthesia.core.errors import CheckpointMismatchError, InputError
from synesthesia.core.s2v import audio_encoder as ae
from synesthesia.core.s2v import discriminators as disc
from synesthesia.core.s2v import inversion_encoder as inv
from synesthesia.core.s2v import walker as wk

TINY_AE = ae.AudioEncoderConfig(arch="conv", embed_dim=16, channels=(4, 8), n_mels=16, n_fft=256, hop_length=64,
                                sample_rate=8000, segment_frames=16)
TINY_RESNET = dataclasses.replace(ae.SEED_RESNET18, resnet_width=4, embed_dim=16, n_mels=16, input_size=(32, 16))
TINY_PSP = inv.InversionEncoderConfig(arch="psp", n_latent=6, w_dim=16, input_size=(32, 32), ir_units=(1, 2, 1, 1),
                                      ir_widths=(4, 8, 16, 16), se_reduction=4, coarse_ind=2, middle_ind=4, n_mels=16)
TINY_WALK = wk.WalkerConfig(n_latent=6, w_dim=8, audio_dim=5, hidden_size=12)


def _randomise(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                r = torch.randn(t.shape, generator=g) * 0.2
                t.copy_(r.abs() + 0.5 if k.endswith("running_var") else r)
    return model.eval()


def test_mel_front_end_matches_librosa():
    librosa = pytest.importorskip("librosa")
    import numpy as np

    sr = 8000
    t = np.arange(sr) / sr
    y = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.random.default_rng(0).standard_normal(sr)).astype(np.float32)
    fb = ae._slaney_filterbank(sr, 512, 40, 0.0, sr / 2)
    ref_fb = librosa.filters.mel(sr=sr, n_fft=512, n_mels=40)
    assert torch.allclose(fb, torch.from_numpy(ref_fb.T).float(), atol=1e-6)
    fe = ae.MelFrontEnd(512, 128, 40, sr)
    ours = fe(torch.from_numpy(y))[0]
    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=128, n_mels=40)
    ref = librosa.power_to_db(S, ref=np.max) / 80.0 + 1
    assert ours.shape == ref.shape
    assert torch.allclose(ours, torch.from_numpy(ref).float(), atol=2e-3)
    assert 0.0 <= float(ours.min()) and float(ours.max()) == pytest.approx(1.0)


def test_segment_mel_centres_and_pads_with_silence():
    mel = torch.arange(2 * 10, dtype=torch.float32).view(2, 10) + 1
    seg = ae.segment_mel(mel, torch.tensor([0, 5, 9]), 4)
    assert seg.shape == (3, 2, 4)
    assert seg[0, 0].tolist() == [0, 0, 1, 2]  # frames -2, -1 are outside: silence
    assert seg[1, 0].tolist() == [4, 5, 6, 7]
    assert seg[2, 0].tolist() == [8, 9, 10, 0]


@pytest.mark.parametrize("cfg", [TINY_AE, TINY_RESNET], ids=["conv", "resnet18"])
def test_audio_encoder_shapes_and_roundtrip(cfg, tmp_path):
    m = _randomise(ae.AudioEncoder(cfg))
    mel = torch.rand(3, 16, 20)
    out = m(mel)
    assert out.shape == (3, 16)
    ae.save_audio_encoder(m, tmp_path / "enc")
    m2 = ae.load_audio_encoder(tmp_path / "enc")
    assert m2.config == cfg
    assert torch.equal(m2(mel), out)
    with pytest.raises(InputError, match=r"\(B, 16, T\)"):
        m(torch.rand(3, 15, 20))


def test_info_nce_prefers_matched_pairs():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 16, generator=g)
    b = a + 0.05 * torch.randn(8, 16, generator=g)
    matched = ae.info_nce(a, b, torch.tensor(2.0))
    shuffled = ae.info_nce(a, b.roll(1, 0), torch.tensor(2.0))
    assert matched < 0.1 < shuffled
    both = ae.contrastive_loss(a, b, b, 2.0)
    assert torch.allclose(both, matched, atol=1e-5)


def test_seed_audio_encoder_key_map(tmp_path):
    """A checkpoint in the official layout (DDP prefix, timm resnet18 names) loads exactly."""
    ref = _randomise(ae.AudioEncoder(TINY_RESNET))
    seed_state = {f"module.{k}": v.clone() for k, v in ref.state_dict().items() if k != "logit_scale"}
    assert "module.feature_extractor.layer2.0.downsample.0.weight" in seed_state
    assert "module.conv.weight" in seed_state and "module.feature_extractor.fc.weight" in seed_state
    torch.save(seed_state, tmp_path / "resnet18.pth")
    ae.convert_seed_audio_encoder(tmp_path / "resnet18.pth", tmp_path / "conv", config=TINY_RESNET)
    m = ae.load_audio_encoder(tmp_path / "conv")
    mel = torch.rand(2, 16, 24)
    assert torch.allclose(m(mel), ref(mel))
    # a wrong width is refused with the key and both shapes named
    bad = dict(seed_state)
    bad["module.feature_extractor.fc.weight"] = torch.zeros(16, 7)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError, match=r"fc.weight has shape \(16, 7\)"):
        ae.convert_seed_audio_encoder(tmp_path / "bad.pth", tmp_path / "x", config=TINY_RESNET)


def test_ir_se_50_taps_match_psp():
    assert inv.stage_ends((3, 4, 14, 3))[1:] == [6, 20, 23]


@pytest.mark.parametrize("head", ["gradual", "transformer"])
def test_psp_inversion_shapes_and_seed_key_map(head, tmp_path):
    cfg = dataclasses.replace(TINY_PSP, head=head, transformer_heads=2, transformer_ff=32, transformer_layers=1)
    ref = _randomise(inv.InversionEncoder(cfg))
    mel = torch.rand(2, 16, 40)
    off = ref(mel)
    assert off.shape == (2, 6, 16)
    w = torch.randn(2, 16)
    assert torch.allclose(ref.invert(mel, w), off + w[:, None])  # eq. 1
    seed_state = {f"module.{k}": v.clone() for k, v in ref.state_dict().items()}
    assert "module.encoder.body.0.res_layer.5.fc1.weight" in seed_state
    assert "module.encoder.latlayer1.weight" in seed_state and "module.encoder.styles.5.linear.weight" in seed_state \
        if head == "gradual" else "module.encoder.styles.0.transformer_encoder.norm.weight" in seed_state
    torch.save(seed_state, tmp_path / "audio_inversion_.pth")
    inv.convert_seed_inversion(tmp_path / "audio_inversion_.pth", tmp_path / "inv", config=cfg)
    m = inv.load_inversion_encoder(tmp_path / "inv")
    assert torch.allclose(m(mel), off, atol=1e-6)
    # the other head type does not load silently
    other = dataclasses.replace(cfg, head="transformer" if head == "gradual" else "gradual")
    with pytest.raises(CheckpointMismatchError):
        inv.convert_seed_inversion(tmp_path / "audio_inversion_.pth", tmp_path / "inv2", config=other)
    # without a config the head type and depth are read off the keys
    inv.convert_seed_inversion(tmp_path / "audio_inversion_.pth", tmp_path / "inv3", base=other)
    auto = inv.load_inversion_encoder(tmp_path / "inv3")
    assert auto.config.head == head and torch.allclose(auto(mel), off, atol=1e-6)


def test_conv_inversion_starts_at_zero_offset():
    m = inv.InversionEncoder(inv.InversionEncoderConfig(n_latent=4, w_dim=8, channels=(4, 8), n_mels=16,
                                                        input_size=(16, 16)))
    assert m(torch.rand(2, 16, 30)).abs().max() == 0


@pytest.mark.parametrize("n,split,expect", [
    (16, (3, 6), [(0, 3), (3, 6), (6, 16)]),  # paper: 0-2, 3-5, 6-15
    (16, (4, 8), [(0, 4), (4, 8), (8, 16)]),  # seed: 0-3, 4-7, 8-15
    (14, (3, 6), [(0, 3), (3, 5), (5, 14)]),  # 256 px StyleGAN2
    (18, (3, 6), [(0, 3), (3, 7), (7, 18)]),  # 1024 px StyleGAN2
    (4, (3, 6), [(0, 1), (1, 2), (2, 4)]),
])
def test_group_split(n, split, expect):
    assert wk.WalkerConfig(n_latent=n, split=split).group_ranges() == expect


def test_walker_blocks_get_their_groups_and_audio_moves_latents():
    m = _randomise(wk.LatentWalker(TINY_WALK))
    assert [b.latent_size for b in m.blocks] == [8, 8, 32]  # 1, 1, 4 vectors of 8 for n_latent 6
    w0 = torch.randn(2, 6, 8)
    audio = torch.randn(2, 5, 5)
    lat, st = m(audio, m.init_state(w0))
    assert lat.shape == (2, 5, 6, 8)
    assert torch.equal(lat[:, 0], w0)  # the first frame is the start latent
    assert not torch.allclose(lat[:, 1], lat[:, 2])
    lat2, _ = m(audio * 0 + 3.0, m.init_state(w0))
    assert not torch.allclose(lat[:, 2:], lat2[:, 2:])  # the audio drives the walk (eq. 4)
    with pytest.raises(InputError, match="audio"):
        m.step(w0, None, st.hidden)


@pytest.mark.parametrize("cell,bi,beta", [("gru", False, 1.0), ("lstm", True, 0.4)])
def test_walker_chunks_continue_exactly(cell, bi, beta):
    cfg = dataclasses.replace(TINY_WALK, cell=cell, bidirectional=bi, smoothing=beta, num_layers=2)
    m = _randomise(wk.LatentWalker(cfg))
    w0 = torch.randn(1, 6, 8)
    audio = torch.randn(1, 7, 5)
    full, _ = m(audio, m.init_state(w0))
    a, st = m(audio[:, :3], m.init_state(w0))
    b, _ = m(audio[:, 3:], st)
    assert torch.allclose(torch.cat([a, b], 1), full, atol=1e-6)


def test_walker_smoothing_blends_with_previous_latent():
    base = _randomise(wk.LatentWalker(TINY_WALK))
    sm = wk.LatentWalker(dataclasses.replace(TINY_WALK, smoothing=0.4))
    sm.load_state_dict(base.state_dict())
    w0, a = torch.randn(1, 6, 8), torch.randn(1, 5)
    h = base.init_state(w0).hidden
    w1, _ = base.step(w0, a, h)
    w1s, _ = sm.step(w0, a, h)
    assert torch.allclose(w1s, 0.4 * w1 + 0.6 * w0, atol=1e-6)


def test_onset_features_describe_the_pictured_span_and_its_neighbours():
    """Row t drives frame t + 1 (eq. 4), which pictures frame t's span: features of that span (the
    row's own, centre +- 0.5/fps) and of the spans before and after; a sound's edge is no onset."""
    hop = 0.01  # 10 ms mel frames; segments of 41 centred on index 20; at 10 fps spans of 10 frames
    seg = torch.full((5, 8, 41), 0.1)  # a quiet sound throughout
    seg[0, :, 22:] = 0.7  # a rise 20 ms after the centre: the own span (15..25)
    seg[1, :, 28:] = 0.7  # 80 ms after: the next span (25..35)
    seg[2, :, 12:] = 0.7  # 80 ms before: the previous span (5..15)
    seg[3, :, :22] = 0.0  # silence from the segment's start, then the sound: its edge, not an onset
    seg[3, :, 22:] = 0.7
    seg[4] = 0.1  # steady: nothing
    f = wk.onset_features(seg, fps=10.0, hop_seconds=hop).view(5, 3, 3)  # (row, span -1/0/+1, max/mean/level)
    assert wk.ONSET_DIM == 9 and f.shape == (5, 3, 3)
    assert torch.allclose(f[0, 1], torch.tensor([0.6, 0.06, (7 * 0.1 + 3 * 0.7) / 10]))
    assert f[0, 0, 0] == 0 and f[0, 2, 0] == 0  # the other spans saw no rise
    assert f[1, 2, 0] == pytest.approx(0.6) and f[1, 1, 0] == 0
    assert f[2, 0, 0] == pytest.approx(0.6) and f[2, 1, 0] == 0
    assert f[3, :, 0].abs().max() == 0 and f[3, 1, 2] > 0  # no onset at the edge; the level is seen
    assert f[4, :, :2].abs().max() == 0
    # a slow frame rate whose spans pass the segment's ends is cut there (at least one frame each)
    assert torch.isfinite(wk.onset_features(seg, fps=0.5, hop_seconds=hop)).all()
    with pytest.raises(InputError, match="fps"):
        wk.onset_features(seg, fps=0.0, hop_seconds=hop)


def test_walker_onset_input(tmp_path):
    """``onsets``: three more inputs per step; they move the walk; configs saved without the field load as off."""
    cfg = dataclasses.replace(TINY_WALK, onsets=True)
    assert cfg.input_dim == TINY_WALK.audio_dim + wk.ONSET_DIM and TINY_WALK.input_dim == TINY_WALK.audio_dim
    m = _randomise(wk.LatentWalker(cfg))
    w0 = torch.randn(1, 6, 8)
    x = torch.randn(1, 5, cfg.input_dim)
    lat, _ = m(x, m.init_state(w0))
    y = x.clone()
    y[..., TINY_WALK.audio_dim:] += 1.0  # the same codes, other onsets
    lat2, _ = m(y, m.init_state(w0))
    assert torch.equal(lat[:, 0], lat2[:, 0]) and not torch.allclose(lat[:, 1:], lat2[:, 1:])  # frame 0 = w0
    with pytest.raises(InputError, match=str(cfg.input_dim)):
        m(x[..., :TINY_WALK.audio_dim], m.init_state(w0))
    with pytest.raises(InputError, match="audio codes"):
        wk.LatentWalker(dataclasses.replace(cfg, audio_dim=0))
    # sound_input: codes only for a walker without onsets, codes + features for one with them
    codes, segs = torch.randn(2, 3, 5), torch.rand(2, 3, 8, 41)
    assert torch.equal(wk.sound_input(TINY_WALK, codes, segs, 10.0, 0.01), codes)
    both = wk.sound_input(cfg, codes, segs, 10.0, 0.01)
    assert torch.equal(both[..., :5], codes) and torch.equal(both[..., 5:], wk.onset_features(segs, 10.0, 0.01))
    # the onset gain: zero-initialised (gain 1); a bias of log 2 doubles every group's step
    fresh = wk.LatentWalker(cfg)
    assert fresh.onset_gate.weight.abs().max() == 0 and fresh.onset_gate.bias.abs().max() == 0
    h = m.init_state(w0).hidden
    with torch.no_grad():
        m.onset_gate.weight.zero_()
        m.onset_gate.bias.zero_()
    w1, _ = m.step(w0, x[:, 0], h)
    with torch.no_grad():
        m.onset_gate.bias.fill_(float(torch.tensor(2.0).log()))
    w2, _ = m.step(w0, x[:, 0], h)
    assert torch.allclose(w2 - w0, 2 * (w1 - w0), atol=1e-5)
    # a walker folder written before the field existed loads with onsets off
    import json

    old = wk.LatentWalker(TINY_WALK)
    folder = wk.save_walker(old, tmp_path / "walker")
    conf = json.loads((folder / "config.json").read_text())
    conf["config"].pop("onsets") if "config" in conf else conf.pop("onsets")
    (folder / "config.json").write_text(json.dumps(conf))
    assert wk.load_walker(folder).config.onsets is False


@pytest.mark.parametrize("hidden_fc", [False, True])
def test_seed_walker_key_map(hidden_fc, tmp_path):
    cfg = dataclasses.replace(wk.SEED, n_latent=16, w_dim=4, hidden_size=6, num_layers=2, hidden_fc=hidden_fc)
    ref = _randomise(wk.LatentWalker(cfg))
    for g, name in enumerate(("coarseformer_.pth", "midformer_.pth", "fineformer_.pth")):
        st = {f"module.{k}": v.clone() for k, v in ref.blocks[g].state_dict().items()}
        assert "module.rnn.weight_hh_l1_reverse" in st and "module.fc.weight" in st
        torch.save(st, tmp_path / name)
    wk.convert_seed_walker(tmp_path, tmp_path / "walker", config=dataclasses.replace(cfg, hidden_fc=False))
    m = wk.load_walker(tmp_path / "walker")
    assert m.config.hidden_fc == hidden_fc  # detected from the files
    assert [b.latent_size for b in m.blocks] == [16, 16, 32]  # seed split 0-3, 4-7, 8-15
    w0 = torch.randn(1, 16, 4)
    x, _ = m(None, m.init_state(w0), n_frames=4)
    y, _ = ref(None, ref.init_state(w0), n_frames=4)
    assert torch.allclose(x, y, atol=1e-6)
    # without a config, cell / depth / direction / width / split are read off the files
    wk.convert_seed_walker(tmp_path, tmp_path / "walker_auto", w_dim=4)
    auto = wk.load_walker(tmp_path / "walker_auto")
    assert (auto.config.cell, auto.config.num_layers, auto.config.hidden_size, auto.config.bidirectional,
            auto.config.hidden_fc) == ("gru", 2, 6, True, hidden_fc)
    assert auto.ranges == [(0, 4), (4, 8), (8, 16)]
    x2, _ = auto(None, auto.init_state(w0), n_frames=4)
    assert torch.allclose(x2, y, atol=1e-6)
    (tmp_path / "fineformer_.pth").unlink()
    with pytest.raises(InputError, match="fineformer_.pth"):
        wk.convert_seed_walker(tmp_path, tmp_path / "w2", config=cfg)


def test_discriminator_shapes_and_losses():
    d2 = disc.ImageDiscriminator(disc.ImageDiscriminatorConfig(ndf=4, n_layers=3))
    d3 = disc.VideoDiscriminator(disc.VideoDiscriminatorConfig(ndf=4, n_layers=2, kernel_t=3))
    assert d2(torch.randn(2, 3, 32, 32)).shape == (2, 1, 4, 4)
    assert d3(torch.randn(2, 3, 5, 32, 32)).shape == (2, 1, 5, 8, 8)
    # temporal receptive field: 2 layers of kt=3 see frames t-2..t+2 (3D patches); kt=1 (seed) sees one frame
    for kt, reach in ((3, 2), (1, 0)):
        d = disc.VideoDiscriminator(disc.VideoDiscriminatorConfig(ndf=4, n_layers=2, kernel_t=kt, norm="none")).eval()
        x = torch.randn(1, 3, 5, 16, 16)
        y = x.clone()
        y[:, :, 0] += 1
        diff = (d(x) - d(y)).abs().sum(dim=(0, 1, 3, 4))
        assert (diff > 0).tolist() == [t <= reach for t in range(5)]
    for kind in disc.GAN_LOSSES:
        good = disc.d_loss(torch.full((4,), 3.0), torch.full((4,), -3.0), kind)
        bad = disc.d_loss(torch.full((4,), -3.0), torch.full((4,), 3.0), kind)
        assert good < bad
        assert disc.g_loss(torch.full((4,), 3.0), kind) < disc.g_loss(torch.full((4,), -3.0), kind)
    with pytest.raises(InputError):
        disc.d_loss(torch.zeros(1), torch.zeros(1), "wgan")


def test_resnet18_matches_transformers_resnet():
    """Parity: our ResNet-18 backbone (timm names) equals transformers' ResNetModel on the same weights."""
    from transformers import ResNetConfig, ResNetModel

    hf = ResNetModel(ResNetConfig(num_channels=3, embedding_size=4, hidden_sizes=[4, 8, 16, 32], depths=[2, 2, 2, 2],
                                  layer_type="basic", downsample_in_first_stage=False))
    hf = _randomise(hf)
    ours = ae.ResNet18(width=4, blocks=(2, 2, 2, 2), num_classes=5).eval()

    def ours_key(k):
        k = k.replace("embedder.embedder.convolution", "conv1").replace("embedder.embedder.normalization", "bn1")
        if k.startswith("encoder.stages."):
            _, _, i, _, j, rest = k.split(".", 5)
            rest = (rest.replace("layer.0.convolution", "conv1").replace("layer.0.normalization", "bn1")
                    .replace("layer.1.convolution", "conv2").replace("layer.1.normalization", "bn2")
                    .replace("shortcut.convolution", "downsample.0").replace("shortcut.normalization", "downsample.1"))
            k = f"layer{int(i) + 1}.{j}.{rest}"
        return k

    mapped = {ours_key(k): v for k, v in hf.state_dict().items()}
    mapped["fc.weight"], mapped["fc.bias"] = ours.fc.weight.detach(), ours.fc.bias.detach()
    assert set(mapped) == set(ours.state_dict())
    ours.load_state_dict(mapped)
    x = torch.randn(2, 3, 40, 36)
    with torch.no_grad():
        ref = ours.fc(hf(pixel_values=x).pooler_output.flatten(1))
        assert torch.allclose(ours(x), ref, atol=1e-5)
