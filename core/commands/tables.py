"""``synesthesia tables``: the papers' tables in miniature (VTA-SAM Tables III and IV, Lee et al.
Table 2 / 3a) on toyscape with the embedded defaults; see :mod:`..tables`.

Trains what is missing (cached under ``--work``, resumable), scores it on held-out clips and
writes ``table_<name>.md``, ``table_<name>.json`` and the pictures into ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("tables", help="the papers' tables in miniature: train (cached), evaluate, write Markdown + pictures")
    p.add_argument("--table", nargs="+", default=["3", "4", "s2v"], choices=("3", "4", "s2v"),
                   help="which tables: 3 (conditioning T/V/V+O), 4 (where O enters), s2v (sound vs no sound)")
    p.add_argument("--work", type=Path, default=None, help="cache of features, runs and scores (default: <user cache>/tables)")
    p.add_argument("-o", "--out", type=Path, default=Path("tables"), help="folder for the tables and pictures")
    p.add_argument("--data", type=Path, default=None,
                   help="toyscape training folder (default: <work>/toyscape-train-64, made if missing)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds per row")
    p.add_argument("--steps", type=int, default=1000, help="Foley denoiser training steps per run")
    p.add_argument("--s2v-steps", type=int, default=150, help="sound -> video training steps per run")
    p.add_argument("--clips-per-class", type=int, default=3, help="held-out clips per class")
    p.add_argument("--sample-steps", type=int, default=25, help="denoising steps (DPM-Solver++)")
    p.add_argument("--models", type=Path, default=None, help="weights folder with the defaults (default: the shipped ones)")
    p.set_defaults(func=cmd_tables)


def cmd_tables(args) -> int:
    from .. import defaults, store, tables, toyscape
    from ..errors import InputError

    if any(s < 0 for s in args.seeds) or args.steps < 1 or args.s2v_steps < 1 or args.clips_per_class < 1:
        raise InputError("--seeds must be >= 0 and --steps, --s2v-steps, --clips-per-class at least 1")
    work = args.work or (store.user_cache_dir() / "tables")
    work.mkdir(parents=True, exist_ok=True)

    def model(name):
        path = (args.models / name) if args.models else defaults.default_path(name)
        if not path.exists():
            raise InputError(f"{path} does not exist: the tables need the embedded default {name} "
                             "(`synesthesia train-defaults`)")
        return str(path)

    data = args.data or work / "toyscape-train-64"
    if not (data / "clips.csv").is_file():
        print(f"making the training clips in {data} (576 clips, seeds 0..63 of each class)", flush=True)
        toyscape.write_dataset(data, clips_per_class=64, duration=4.0, seed=0)
    cfg = tables.TablesConfig(
        work=str(work), out=str(args.out), data=str(data), clip=model("toy-clip"), vae=model("toy-mel-vae"),
        vocoder=model("hifigan-universal"), audio_encoder=str(Path(model("toy-s2v")) / "audio_encoder"),
        generator=model("toy-stylegan2"), seeds=tuple(args.seeds), steps=args.steps, s2v_steps=args.s2v_steps,
        clips_per_class=args.clips_per_class, sample_steps=args.sample_steps)
    t0 = time.perf_counter()

    def progress(step, total, info):
        if info.get("stage") in ("train", "features") and step % 100 and step != total:
            return
        print(f"tables {info.get('stage', '')} {step}/{total} " + " ".join(f"{k}={v}" for k, v in info.items()
                                                                        if k != "stage"), flush=True)

    written = tables.run_tables(cfg, args.table, progress)
    for name, files in written.items():
        print((Path(files[0])).read_text())
        print("wrote " + ", ".join(str(f) for f in files))
    print(f"tables: {time.perf_counter() - t0:.0f} s")
    return 0
