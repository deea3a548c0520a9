"""``synesthesia info``, ``synesthesia models`` and ``synesthesia download``.

``info`` reports versions, the device ``auto`` picks, the model folders searched and which known
models are present; ``models`` prints the manifest with present/missing; ``download NAME`` fetches
a model (progress bar, resume, sha256 check) into the store. Each takes ``--json`` where a
machine reads the answer (the Blender worker, scripts).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

PACKAGES = ("torch", "transformers", "diffusers", "av", "numpy", "safetensors", "accelerate", "nltk")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, device, model folders and which models are present")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list known models, present or missing, and where they are")
    p.add_argument("--kind", help="only models of this kind (see `synesthesia info`)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "download", help="download models by name (resumes, verifies sha256)",
        description="Download models listed by `synesthesia models` into the model store. "
                    "An interrupted download resumes when run again.",
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="model name(s) from `synesthesia models`")
    p.add_argument("--dest", type=Path, default=None,
                   help="models root to download into (files go to DEST/<kind>/...); "
                        "default: $SYNESTHESIA_MODELS or the user cache folder")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)


def _version(pkg: str) -> Optional[str]:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _device_info() -> Dict[str, Any]:
    from ..device import select_device, select_dtype

    import torch

    dev = select_device("auto")
    info: Dict[str, Any] = {"device": str(dev), "dtype": str(select_dtype("auto", dev)).replace("torch.", "")}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    info["threads"] = torch.get_num_threads()
    return info


def _model_rows(kind: Optional[str] = None) -> List[Dict[str, Any]]:
    from .. import store

    rows = []
    for e in store.manifest().values():
        if kind and e.kind != kind:
            continue
        where = store.find(e.name)
        rows.append({
            "name": e.name, "kind": e.kind, "present": where is not None,
            "path": str(where) if where else None, "size": e.size,
            "download": "manual" if e.manual else "auto", "license": e.license,
            "description": e.description,
        })
    return rows


def cmd_info(args: argparse.Namespace) -> int:
    from .. import store
    from ... import __version__

    report: Dict[str, Any] = {
        "synesthesia": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        **_device_info(),
        "model_folders": {k: [str(d) for d in dirs] for k, dirs in store.describe_dirs()},
        "models_env": store.ENV_MODELS,
        "user_cache": str(store.user_cache_dir()),
        "models_present": {r["name"]: r["path"] for r in _model_rows() if r["present"]},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    out = sys.stdout
    out.write(f"synesthesia {report['synesthesia']}  python {report['python']}  ({report['platform']})\n")
    for p, v in report["packages"].items():
        out.write(f"  {p:<13} {v or 'not installed'}\n")
    gpu = f"  {report['gpu']} ({report['gpu_memory_gib']} GiB)" if "gpu" in report else ""
    out.write(f"device (auto): {report['device']}  dtype {report['dtype']}  threads {report['threads']}{gpu}\n")
    out.write(f"model folders, searched in this order (${store.ENV_MODELS}, then {report['user_cache']}):\n")
    for kind, dirs in report["model_folders"].items():
        out.write(f"  {kind}:\n")
        for d in dirs:
            out.write(f"    {d}{'' if Path(d).is_dir() else '  (absent)'}\n")
    present = report["models_present"]
    total = len(_model_rows())
    out.write(f"models present: {len(present)} of {total}\n")
    for name, path in present.items():
        out.write(f"  {name}: {path}\n")
    if not present:
        out.write("  none: `synesthesia models` lists them, `synesthesia download NAME` fetches one\n")
    return 0


def _fmt_size(n: Optional[int]) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def cmd_models(args: argparse.Namespace) -> int:
    from .. import store
    from ..errors import InputError

    if args.kind and args.kind not in {e.kind for e in store.manifest().values()}:
        kinds = sorted({e.kind for e in store.manifest().values()})
        raise InputError(f"unknown kind {args.kind!r}: use one of {', '.join(kinds)}")
    rows = _model_rows(args.kind)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    wn = max(len(r["name"]) for r in rows)
    wk = max(len(r["kind"]) for r in rows)
    print(f"{'NAME':<{wn}}  {'KIND':<{wk}}  {'STATUS':<8}  {'SIZE':>8}  WHERE / HOW")
    for r in rows:
        status = "present" if r["present"] else "missing"
        where = r["path"] if r["present"] else (
            "manual download (see `synesthesia download " + r["name"] + "`)" if r["download"] == "manual"
            else f"synesthesia download {r['name']}")
        print(f"{r['name']:<{wn}}  {r['kind']:<{wk}}  {status:<8}  {_fmt_size(r['size']):>8}  {where}")
    n = sum(r["present"] for r in rows)
    print(f"{n} of {len(rows)} present")
    return 0


def _byte_bar(desc: str):
    """A tqdm progress callback counting bytes."""
    from tqdm.auto import tqdm

    state: Dict[str, Any] = {"bar": None, "file": None}

    def cb(done: int, total: int, info) -> None:
        f = info.get("file")
        if state["bar"] is None or state["file"] != f:
            if state["bar"] is not None:
                state["bar"].close()
            state["bar"] = tqdm(total=total or None, desc=str(info.get("stage", desc)), unit="B",
                                unit_scale=True, unit_divisor=1024, leave=False, file=sys.stderr)
            state["file"] = f
        bar = state["bar"]
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()
            state["bar"] = None

    cb.close = close  # type: ignore[attr-defined]
    return cb


def cmd_download(args: argparse.Namespace) -> int:
    """Download every name given; a failure is reported and the next name is still tried."""
    from .. import store
    from ..errors import SynesthesiaError

    entries = [store.get_entry(n) for n in args.names]  # unknown names fail before any transfer
    failed: List[str] = []
    for e in entries:
        cb = None if args.no_progress else _byte_bar(e.name)
        try:
            path = store.download(e.name, dest=args.dest, callback=cb, force=args.force)
        except (SynesthesiaError, OSError) as err:
            if len(entries) == 1:
                raise
            if getattr(args, "debug", False):
                import traceback

                traceback.print_exc()
            failed.append(e.name)
            msg = " ".join(str(err).split()) or type(err).__name__
            print(f"synesthesia download: error: {e.name}: {msg}", file=sys.stderr)
            continue
        finally:
            if cb is not None:
                cb.close()  # type: ignore[attr-defined]
        if all(f.sha256 for f in e.files):
            checked = "sha256 verified"
        elif all(f.sha256 or f.sha256_prefix for f in e.files):
            checked = "sha256 prefix from the file name verified; no full sha256 published"
        else:
            checked = "no published sha256 for some files: their size/completeness was checked only"
        print(f"{e.name}: {path} ({checked})", flush=True)
    if failed:
        print(f"synesthesia download: error: {len(failed)} of {len(entries)} downloads failed "
              f"({', '.join(failed)}); run `synesthesia download` again for them", file=sys.stderr)
        return 2
    return 0
