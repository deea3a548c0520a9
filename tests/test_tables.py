"""`synesthesia tables` pieces: the T condition's data, the shared feature folder's guard, the
table arithmetic and its Markdown. The full command trains and evaluates for hours on the CPU, so
it is a command, not a test; a run of it with tiny budgets is in the issue note."""

from __future__ import annotations

import json

import pytest
import torch

from synesthesia.core import tables
from synesthesia.core.errors import InputError
from synesthesia.core.v2a import train as tr


def test_text_condition_puts_the_caption_embedding_on_every_frame(tmp_path):
    from safetensors.torch import save_file

    feats = {"video": torch.randn(5, 4), "objects": torch.zeros(5, 4), "latent_mean": torch.zeros(2, 3, 3),
             "latent_std": torch.ones(2, 3, 3)}
    save_file(feats, str(tmp_path / "a.safetensors"))
    save_file(feats, str(tmp_path / "b.safetensors"))
    text = {"rain": torch.arange(4.0), "fire": -torch.arange(4.0)}
    ds = tr.FeatureDataset([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], ["rain", "fire"], text)
    assert torch.equal(ds[0]["video"], torch.arange(4.0).expand(5, 4)) and torch.equal(ds[1]["video"][3], -torch.arange(4.0))
    assert torch.equal(tr.FeatureDataset([tmp_path / "a.safetensors"])[0]["video"], feats["video"])  # video: as stored


def test_feature_folder_made_with_other_settings_is_refused(tmp_path):
    meta = {"frame_rate": 8.0, "clip": "/m/toy-clip", "grounding": "clip"}
    tr.check_features_folder(tmp_path / "f", meta)
    assert json.loads((tmp_path / "f" / tr.FEATURES_META).read_text()) == meta
    tr.check_features_folder(tmp_path / "f", dict(meta))  # the same settings: fine
    with pytest.raises(InputError, match=r"made with frame_rate=8\.0, this run needs 4\.0: give another --features"):
        tr.check_features_folder(tmp_path / "f", {**meta, "frame_rate": 4.0})
    with pytest.raises(InputError, match="made with grounding='clip', this run needs None"):
        tr.check_features_folder(tmp_path / "f", {**meta, "grounding": None})


def test_table_rows_summarise_over_seeds_and_print():
    per_seed = {0: {"av_align": 0.2, "class_accuracy": 0.5, "fd": 1.0, "kl": 2.0},
                1: {"av_align": 0.4, "class_accuracy": 0.7, "fd": 3.0, "kl": 2.0}}
    row = tables._summarise(per_seed)
    assert row["mean"]["av_align"] == pytest.approx(0.3) and row["std"]["av_align"] == pytest.approx(0.1414, abs=1e-4)
    assert row["std"]["kl"] == 0.0
    res = tables.TableResult("3", {"V": row, "true audio": tables._summarise({0: {"av_align": 0.29, "class_accuracy": 1.0,
                                                                                 "fd": 0.0, "kl": 0.0}})},
                             clips=27, seeds=(0, 1), seconds=120)
    md = res.markdown()
    assert "27 held-out clips, mean ± std over training seeds 0, 1; this call 2 min (cached runs not counted)" in md
    assert "| V (Z @ V (no O)) | 0.300 ± 0.141 | 0.600 ± 0.141 | 2.000 ± 1.414 | 2.000 |" in md
    assert "| true audio (the ceiling) | 0.290 | 1.000 | 0.000 | 0.000 |" in md


def test_table_rows_are_the_papers():
    assert tables.TABLES["3"] == ("T", "V", "V+O") and set(tables.TABLES["4"]) == {"V+O", "Z(V+O)", "ZO+V", "V"}
    assert {tables.V2A_ROWS[r]["scheme"] for r in tables.TABLES["4"]} == {"ZV+O", "Z(V+O)", "ZO+V", "ZV"}
    assert tables.V2A_ROWS["T"]["condition"] == "text" and tables.V2A_ROWS["T"]["scheme"] == "ZV"


def test_denoiser_init_is_the_toy_preset_without_the_aligned_path(tmp_path):
    from synesthesia.core.serialization import config_from_dict
    from synesthesia.core.v2a.vta_ldm import DenoiserConfig

    cfg = config_from_dict(DenoiserConfig, json.loads(tables.denoiser_init(tmp_path, "Z(V+O)").read_text())["config"])
    toy = tr.PRESETS["toy"]()
    assert cfg.scheme == "Z(V+O)" and not cfg.aligned_video and toy.aligned_video
    assert (cfg.latent_time, cfg.frame_rate, cfg.block_out_channels) == (toy.latent_time, toy.frame_rate, toy.block_out_channels)


def test_tables_command_refuses_bad_numbers(capsys):
    from synesthesia.__main__ import main

    assert main(["tables", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_pictures_draw_spectrograms_and_contact_sheets(tmp_path):
    """The pictures' drawing code on a toyscape clip (true audio in both columns: no model needed)."""
    from PIL import Image

    from synesthesia.core import pictures, toyscape

    c = toyscape.make_clip("splashing water", toyscape.HELD_OUT_SEED_BASE, duration=1.5)
    png = pictures.spectrogram_sheet([("splashing water", c.frames, c.fps, {"true": (c.audio, c.sample_rate),
                                                                          "quiet": (0.1 * c.audio, c.sample_rate)})],
                                     tmp_path / "s.png", "test")
    assert Image.open(png).size[0] > 300
    sheet = pictures.contact_sheet({"a": c.frames, "b": c.frames[:4]}, tmp_path / "c.png", per_row=4)
    assert Image.open(sheet).size == (4 * 64, 2 * 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "s.png"]  # nothing else left behind


def test_every_scheme_gets_its_own_config_and_a_wrong_cached_run_is_refused(tmp_path):
    """"ZV+O" and "Z(V+O)" once shared a config file name, so one row silently trained the other's model."""
    from synesthesia.core.serialization import config_from_dict
    from synesthesia.core.v2a.vta_ldm import SCHEMES, DenoiserConfig

    paths = {s: tables.denoiser_init(tmp_path, s) for s in SCHEMES}
    assert len(set(paths.values())) == len(SCHEMES)
    for s, p in paths.items():
        assert config_from_dict(DenoiserConfig, json.loads(p.read_text())["config"]).scheme == s
    run = tmp_path / "v2a" / "VpO-s0" / "denoiser"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"kind": "v2a-denoiser", "config": {"scheme": "Z(V+O)"}}))
    cfg = tables.TablesConfig(work=str(tmp_path), out=str(tmp_path / "o"), data=str(tmp_path), clip="c", vae="v",
                              vocoder="h", audio_encoder="a")
    with pytest.raises(InputError, match=r"holds a Z\(V\+O\) denoiser but row V\+O needs ZV\+O"):
        tables.train_v2a_run(cfg, "V+O", 0)
    # a longer run's denoiser is not handed back for a shorter --steps
    (run / "config.json").write_text(json.dumps({"kind": "v2a-denoiser", "config": {"scheme": "ZV+O"}}))
    (run.parent / "trainer_state.json").write_text(json.dumps({"step": cfg.steps + 100}))
    with pytest.raises(InputError, match=f"holds a run of {cfg.steps + 100} steps, more than --steps {cfg.steps}"):
        tables.train_v2a_run(cfg, "V+O", 0)


def test_score_caches_are_named_by_the_scoring_models(tmp_path):
    """A changed default audio encoder (or CLIP) must be scored afresh: the key of the score cache
    files hashes their weight files, and only those."""
    enc, clip = tmp_path / "enc", tmp_path / "clip"
    for d in (enc, clip):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"weights " + d.name.encode())
        (d / "config.json").write_text("{}")
    key = tables.scorer_key(enc, clip)
    assert len(key) == 10 and tables.scorer_key(enc, clip) == key
    (enc / "config.json").write_text('{"note": 1}')
    assert tables.scorer_key(enc, clip) == key  # not the config's formatting
    (enc / "model.safetensors").write_bytes(b"other weights")
    assert tables.scorer_key(enc, clip) != key
    # the cache file of a run carries the key of the scorer that scored it
    scorer = type("Scorer", (), {"key": key})()
    assert tables.score_cache(tmp_path, "s2v-s0-3", scorer) == tmp_path / "scores" / f"s2v-s0-3-{key}.json"
