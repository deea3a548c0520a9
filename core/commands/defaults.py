"""``synesthesia train-defaults``: remake the embedded default models from nothing.

Runs :data:`core.defaults.RECIPES` in order (toyscape data, then the models), each stage with
the project's own commands and fixed seeds. Resumable: a stage whose output exists and matches
(the shipped files, or a finished run of the same recipe) is skipped; ``--force`` redoes it.
"""

from __future__ import annotations

import time
from pathlib import Path


def register(sub) -> None:
    from .. import store

    p = sub.add_parser("train-defaults", help="remake the embedded default models (toyscape data, then each model)")
    p.add_argument("--out", type=Path, default=store.BUNDLED_DIR, help=f"weights folder to write (default: {store.BUNDLED_DIR})")
    p.add_argument("--work", type=Path, default=None,
                   help="scratch folder for data sets and training runs (default: <user cache>/train-defaults)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="run these stages (and any missing stage they need)")
    p.add_argument("--force", action="store_true", help="rerun stages even when their output matches")
    p.add_argument("--list", action="store_true", help="print the stages, their commands and recorded wall times")
    p.set_defaults(func=cmd_train_defaults)


def cmd_train_defaults(args) -> int:
    from .. import defaults, store

    if args.list:
        print(defaults.recipes_table())
        return 0
    work = args.work or (store.user_cache_dir() / "train-defaults")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def report(i, n, stage, message):
        print(f"[{i}/{n}] {stage.name}: {message}", flush=True)

    results = defaults.run_recipes(args.out, work, only=args.only, force=args.force, report=report)
    ran = [r for r in results if r.status == "ran"]
    print(f"train-defaults: {len(ran)} stage(s) ran, {len(results) - len(ran)} skipped, "
          f"{time.perf_counter() - t0:.1f} s; weights in {args.out}")
    return 0
