"""Issue 10.6: numbers from a model's configuration are checked before anything is allocated.

Each family's folder is written in its real format by the tiny-model helpers, then its
``config.json`` is edited the way the issue's attacks did. Every refusal is one InputError line
naming the file and the field, and comes back at once (nothing is built for real first).
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from synesthesia.core import cache
from synesthesia.core.errors import InputError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny denoiser, CLIP, VAE, vocoder (our / HF formats) and a StyleGAN2 generator folder."""
    from tiny_stylegan import TINY_SG2, make_sg2
    from tiny_vta import write_tiny_models

    from synesthesia.core.s2v.generator import save_generator

    root = tmp_path_factory.mktemp("models")
    paths = write_tiny_models(root)
    save_generator(make_sg2(TINY_SG2, seed=1), root / "generator")
    paths["generator"] = root / "generator"
    return paths


@pytest.fixture()
def deadline():
    """Fail, instead of hanging, when a check lets a huge model be built."""
    def handler(signum, frame):
        raise TimeoutError("the configuration was not refused before building")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 60)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def _loader(family):
    from synesthesia.core.clip import load_clip
    from synesthesia.core.s2v.generator import read_generator
    from synesthesia.core.v2a.denoiser import load_denoiser
    from synesthesia.core.v2a.vae import load_mel_vae
    from synesthesia.core.v2a.vocoder import load_vocoder

    return {"generator": read_generator, "denoiser": load_denoiser, "vae": load_mel_vae, "vocoder": load_vocoder,
            "clip": load_clip}[family]


def _edited(models, tmp_path, family, edit) -> Path:
    folder = tmp_path / family
    shutil.copytree(models[family], folder)
    cfg = folder / "config.json"
    if callable(edit):
        data = json.loads(cfg.read_text())
        edit(data)
        cfg.write_text(json.dumps(data))
    else:
        cfg.write_text(edit)
    return folder


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(data):
        d = data
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


CASES = [
    # family, edit, text the message must hold
    ("generator", _set("config", "z_dim", "eight"), "z_dim is 'eight', expected an integer"),
    ("generator", _set("config", "z_dim", -8), "z_dim is -8"),
    ("generator", _set("config", "w_dim", 40000), "w_dim is 40000"),
    ("generator", _set("config", "mapping_layers", 10 ** 6), "mapping_layers is 1000000"),
    ("generator", _set("config", "channels", [10 ** 9] * 4), "channels[0] is 1000000000"),
    ("generator", _set("config", "channels", [1e9] * 4), "channels[0] is 1000000000.0, expected an integer"),
    ("generator", _set("config", "channels", [65536] * 4), "B parameters, above the 1 B limit"),
    ("generator", _set("config", "channels", [32, 32]), "channels has 2 entries"),
    ("generator", lambda d: d.__setitem__("config", [1, 2]), 'no "config" object'),
    ("generator", lambda d: d.pop("config"), 'no "config" object'),
    ("generator", "[1, 2, 3]", "is a JSON list, not an object"),
    ("generator", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("generator", '{"kind": "stylegan2", "config": {"mapping_lr": NaN}}', "NaN is not a number JSON allows"),
    ("generator", _set("config", "mapping_lr", 0), "mapping_lr is 0"),
    ("denoiser", _set("config", "down_block_types", ["os.system", "DownBlock2D"]), "down_block_types[0] is 'os.system'"),
    ("denoiser", _set("config", "norm_num_groups", 0), "norm_num_groups is 0"),
    ("denoiser", _set("config", "norm_num_groups", 3), "norm_num_groups 3 does not divide"),
    ("denoiser", _set("config", "block_out_channels", [10 ** 9, 32]), "block_out_channels[0] is 1000000000"),
    ("denoiser", _set("config", "scheme", {"a": 1}), "scheme is {'a': 1}"),
    ("vae", _set("config", "norm_num_groups", 0), "norm_num_groups is 0"),
    ("vae", _set("config", "block_out_channels", [65536, 65536, 65536]), "B parameters"),
    ("vae", _set("config", "layers_per_block", True), "layers_per_block is True, expected an integer"),
    ("vocoder", _set("config", "hifigan", "upsample_rates", []), "upsample_rates is [], expected a list of 1..8"),
    ("vocoder", _set("config", "hifigan", "upsample_initial_channel", 10 ** 9), "upsample_initial_channel is 1000000000"),
    ("vocoder", _set("config", "hifigan", "resblock_dilation_sizes", [["x"]]), "resblock_dilation_sizes[0][0] is 'x'"),
    ("vocoder", _set("config", "mel", "sample_rate", "fast"), "sample_rate is 'fast'"),
    ("clip", _set("vision_config", "num_hidden_layers", 10 ** 6), "num_hidden_layers is 1000000"),
    ("clip", _set("vision_config", "hidden_size", "eight"), "hidden_size is 'eight'"),
    ("clip", _set("vision_config", "num_attention_heads", 3), "does not split into num_attention_heads 3"),
    ("clip", _set("text_config", [1]), "is a JSON list, not an object"),
]


@pytest.mark.parametrize("family,edit,expect", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_configuration_is_one_line_naming_file_and_field(models, tmp_path, deadline, family, edit, expect):
    folder = _edited(models, tmp_path, family, edit)
    cache.clear()
    with pytest.raises(InputError) as e:
        _loader(family)(folder)
    msg = str(e.value)
    assert expect in msg, msg
    assert "config.json" in msg and str(tmp_path) in msg and "\n" not in msg


def test_the_unedited_tiny_models_load(models):
    """Control: the same loaders accept every tiny configuration the tests use."""
    cache.clear()
    for family in ("generator", "denoiser", "vae", "vocoder", "clip"):
        assert _loader(family)(models[family]) is not None


def test_cli_exits_2_with_one_line(models, tmp_path, capsys):
    from synesthesia.__main__ import main

    folder = _edited(models, tmp_path, "vocoder", _set("config", "hifigan", "upsample_rates", []))
    cache.clear()
    assert main(["convert", "hifigan", str(folder), "-o", str(tmp_path / "out")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("synesthesia ")]
    assert len(err) == 1 and "upsample_rates" in err[0] and "config.json" in err[0]
    assert not (tmp_path / "out").exists()


def test_foreign_configs_are_checked_too(tmp_path, deadline):
    """diffusers VAE, jik876 HiFi-GAN and VTA-LDM UNet JSON: the fields our converters read."""
    from tiny_audioldm import TINY_JIK876, make_jik876_generator, make_tiny_audioldm_diffusers, write_jik876_checkpoint

    from synesthesia.core.v2a.vae import load_mel_vae
    from synesthesia.core.v2a.vocoder import load_vocoder

    make_tiny_audioldm_diffusers(tmp_path / "ldm")
    cfg = tmp_path / "ldm" / "vae" / "config.json"
    data = json.loads(cfg.read_text())
    for key, value, expect in (("norm_num_groups", "thirty-two", "norm_num_groups is 'thirty-two'"),
                               ("block_out_channels", [-32, 64, 64], "block_out_channels[0] is -32"),
                               ("down_block_types", ["os.system"] * 3, "down_block_types[0] is 'os.system'")):
        cfg.write_text(json.dumps({**data, key: value}))
        cache.clear()
        with pytest.raises(InputError, match=expect.replace("[", r"\[").replace("]", r"\]")):
            load_mel_vae(tmp_path / "ldm" / "vae")

    gen = make_jik876_generator(TINY_JIK876)
    write_jik876_checkpoint(tmp_path / "jik", gen, {**TINY_JIK876, "upsample_initial_channel": "many"})
    cache.clear()
    with pytest.raises(InputError, match="upsample_initial_channel is 'many'"):
        load_vocoder(tmp_path / "jik")


def test_nvidia_pickle_hyper_parameters_are_checked(tmp_path, monkeypatch, deadline):
    """w_dim 40000 (6.4 GB per mapping layer), 10**6 mapping layers, negative and non-numeric sizes."""
    import tiny_stylegan

    from synesthesia.core.errors import CheckpointMismatchError
    from synesthesia.core.s2v.generator import read_generator

    src = tiny_stylegan.make_sg2(tiny_stylegan.TINY_SG2, seed=2)
    orig = tiny_stylegan._nvidia_state
    for where, key, value, error, expect in (
            ("Generator", "w_dim", 40000, InputError, "w_dim is 40000"),
            ("MappingNetwork", "num_layers", 10 ** 6, InputError, "mapping_layers is 1000000"),
            ("Generator", "z_dim", -16, InputError, "z_dim is -16"),
            ("Generator", "z_dim", "eight", CheckpointMismatchError, "not the numbers"),
            ("Generator", "img_resolution", -32, CheckpointMismatchError, "not the numbers")):

        def patched(module, module_src, extra=None, where=where, key=key, value=value):
            state = orig(module, module_src, extra)
            if type(module).__name__ in (where, "StyleGAN2Generator" if where == "Generator" else where):
                state[key] = value
            return state

        monkeypatch.setattr(tiny_stylegan, "_nvidia_state", patched)
        path = tiny_stylegan.make_nvidia_pkl(tmp_path / f"{key}.pkl", src)
        with pytest.raises(error, match=expect) as e:
            read_generator(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_grounding_model_folders_are_checked_before_building(tmp_path, deadline):
    """Grounding DINO / SAM transformers folders: counts and sizes by key name, then the size."""
    from tiny_grounding import make_tiny_grounding_dino, make_tiny_sam

    from synesthesia.core.v2a.grounding import load_grounding_dino, load_sam

    make_tiny_grounding_dino(tmp_path / "dino")
    make_tiny_sam(tmp_path / "sam")
    dino_cfg, sam_cfg = tmp_path / "dino" / "config.json", tmp_path / "sam" / "config.json"
    dino, sam = json.loads(dino_cfg.read_text()), json.loads(sam_cfg.read_text())
    assert load_sam(tmp_path / "sam") is not None  # control: the tiny folders load
    for data, file, load, expect in (
            ({**dino, "encoder_layers": 10 ** 6}, dino_cfg, load_grounding_dino, "encoder_layers is 1000000"),
            ({**dino, "d_model": 65536}, dino_cfg, load_grounding_dino, "B parameters"),
            ({**sam, "vision_config": {**sam["vision_config"], "num_hidden_layers": -3}}, sam_cfg, load_sam,
             "vision_config.num_hidden_layers is -3"),
            ({**sam, "vision_config": [1]}, sam_cfg, load_sam, "not a SamModel configuration")):
        original = file.read_text()
        file.write_text(json.dumps(data))
        with pytest.raises(InputError, match=expect) as e:
            load(file.parent)
        assert str(file) in str(e.value) and "\n" not in str(e.value)
        file.write_text(original)
