"""Ogg Vorbis: what is exact and what is not (docs/media.md, "Exact lengths").

Files are written by libvorbis (through libsndfile, which ``soundfile`` bundles; the av wheel has
only FFmpeg's experimental Vorbis encoder, which does not record the true length). The container
records the exact length (the last page's granule position) and ``probe`` reports it, and
decoding starts sample-aligned; but FFmpeg's decoder does not trim the last block to that length:
a full read ends up to half a short block early (128 samples at 32 kHz and above, 256 below) or up
to half a long block late (< 1024 samples). This test pins that tolerance; if it starts failing
because every case is exact, FFmpeg has fixed it and docs/media.md should say so.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

import media_fixtures as mf
from synesthesia.core import media

# (rate, samples, signal): chosen to show both directions with libsndfile 1.2's libvorbis.
CASES = [(44100, 32000, "tone"), (48000, 20000, "tone"), (16000, 20000, "tone"), (16000, 12345, "tone"),
         (22050, 32000, "noise"), (44100, 44100, "noise")]


def _signal(kind: str, sr: int, n: int) -> np.ndarray:
    if kind == "tone":
        return mf.sine(440, sr, n / sr + 0.01, channels=1)[:, :n]
    return (np.random.default_rng(n).standard_normal((1, n)) * 0.1).astype(np.float32)


def test_vorbis_length_is_exact_in_the_header_and_within_a_block_when_decoded(tmp_path):
    diffs = []
    for sr, n, kind in CASES:
        data = _signal(kind, sr, n)
        path = tmp_path / f"{kind}_{sr}_{n}.ogg"
        soundfile.write(path, data.T, sr, format="OGG", subtype="VORBIS")
        info = media.probe(path)
        assert info.sample_rate == sr and round(info.duration * sr) == n  # the container's length is exact
        x, got_sr = media.read_audio(path)
        assert got_sr == sr
        d = x.shape[1] - n
        half_short = 128 if sr >= 32000 else 256
        assert -half_short <= d < 1024, (sr, n, kind, d)
        # sample-aligned from the start: the same samples libvorbis itself decodes
        ref, _ = soundfile.read(path, dtype="float32", always_2d=True)
        m = min(x.shape[1], ref.shape[0])
        np.testing.assert_allclose(x[0, :m].numpy(), ref[:m, 0], atol=1e-5)
        diffs.append(d)
    assert min(diffs) < 0 < max(diffs), f"every Vorbis case decoded to {diffs} samples off: update docs/media.md"


def test_opus_in_ogg_is_exact(tmp_path):
    """Opus records its pre-skip and end trimming, and FFmpeg applies both: exact to the sample."""
    data = mf.sine(440, 48000, 0.7, channels=1)[:, :33333]
    path = mf.write_audio_file(tmp_path / "a.ogg", data, 48000, "libopus")
    x, sr = media.read_audio(path)
    assert sr == 48000 and x.shape[1] == 33333
