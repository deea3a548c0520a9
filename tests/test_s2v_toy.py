"""train-s2v --preset toy (the embedded toy-s2v's recipe) on tiny models: the preset's terms are on,
including the motion term train.py adds (generated frame-step magnitudes vs the real clip's)."""

from __future__ import annotations

import json

from test_s2v_train import TINY, _log, assets  # noqa: F401  (assets is a module-scoped fixture)


def test_toy_preset_trains_with_the_motion_term(assets, tmp_path, capsys):  # noqa: F811
    from synesthesia.__main__ import main
    from synesthesia.core.s2v import train as tr
    from synesthesia.core.s2v.walker import load_walker

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "walker": {"hidden_size": 16}}))  # the preset's residual scale stays
    out = tmp_path / "run"
    code = main(["train-s2v", str(assets / "data"), "-o", str(out), "--generator", str(assets / "gen"), "--clip",
                 str(assets / "clip"), "--preset", "toy", "--config", str(cfg), "--steps", "2"])
    assert code == 0, capsys.readouterr().err
    rows = _log(out)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:  # the toy preset's image<->text and motion terms are in the loss
        assert r["motion"] > 0 and r["image_text"] > 0
    saved = json.loads((out / tr.CONFIG_NAME).read_text())
    assert saved["lambda_motion"] == tr.TOY.lambda_motion > 0 and saved["lambda_image_text"] == tr.TOY.lambda_image_text
    assert load_walker(out / "walker").config.residual_scale == tr.TOY.walker.residual_scale
