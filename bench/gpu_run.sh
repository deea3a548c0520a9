#!/usr/bin/env bash
# Every GPU measurement of issue #13 in one run (about 6-8 minutes on one H200). See bench/README.md.
#
#   here, once per session:  bash bench/gpu_run.sh --fetch-wheels   # PyAV + diffusers for the device's
#                                                                    # Python 3.12 -> .whl/site.tar.xz (ignored)
#   on the device (tool):    run(command="bash bench/gpu_run.sh", carry=[".whl"], timeout_s=580)
#   CPU check of the script: SMALL=1 bash bench/gpu_run.sh   (or --dry): tiny sizes on the CPU, same steps
#   NVIDIA's own StyleGAN3 beside ours (step 7): NVLABS_SG3=/path/to/NVlabs/stylegan3 with --fetch-wheels
#   (packed into the archive) or with SMALL=1 (used in place)
#
# Output: $OUT/gpu_run.log (everything), $OUT/summary.txt (the result lines), $OUT/env.txt, the
# torch.profiler tables and gzipped chrome traces of one Foley clip and one StyleGAN3 batch
# (at most 8 files, as the device tool returns). Each step has its own time limit and a failed
# step does not stop the others; steps are skipped once BUDGET seconds (default 450) have passed,
# most important first.
set -u -o pipefail
export PYTHONUNBUFFERED=1

cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "${1:-}" = "--fetch-wheels" ]; then
    # Packages the device image lacks (PyAV; diffusers + importlib_metadata), for its Python 3.12, packed
    # as one stripped tar.xz: the wheels (54 MB) plus the working tree would pass the device tool's
    # 64 MiB. PyAV's own Cython modules carry debug info (31 MB -> 5 MB stripped).
    set -e
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$tmp/w" av==18.1.0 diffusers==0.42.1 importlib_metadata==10.2.0 lazy-importer==0.1.0
    mkdir -p "$tmp/site" .whl
    for w in "$tmp"/w/*.whl; do python3 -m zipfile -e "$w" "$tmp/site"; done
    find "$tmp/site" \( -name "*.pyi" -o -name "*.pxd" -o -name "*.pyx" -o -name "*.c" -o -name "*.h" \) -delete
    find "$tmp/site/av" -name "*.so" -exec strip --strip-unneeded {} +
    rm -f .whl/*.whl
    if [ -n "${NVLABS_SG3:-}" ]; then  # NVIDIA's StyleGAN3 code for step 7 (a checkout; only what it imports)
        mkdir -p "$tmp/site/nvlabs-stylegan3"
        cp -r "$NVLABS_SG3"/{dnnlib,torch_utils,training,legacy.py} "$tmp/site/nvlabs-stylegan3/"
    fi
    tar -cf - -C "$tmp/site" . | xz -6 -T2 >.whl/site.tar.xz
    rm -rf "$tmp"
    ls -la .whl
    exit 0
fi

SMALL=${SMALL:-0}
[ "${1:-}" = "--dry" ] && SMALL=1
OUT=${OUT:-/tmp/gpu_run_out}
BUDGET=${BUDGET:-450}
mkdir -p "$OUT"
LOG=$OUT/gpu_run.log
: >"$LOG"
START=$(date +%s)
WORK=${WORK:-/tmp/gpu_run_work}
mkdir -p "$WORK"

say() { echo "$@" | tee -a "$LOG"; }

if [ "$SMALL" = 1 ]; then
    DEV=cpu; HALF=fp32
    SCALE=${SCALE:-6}  # time limits x6: a small CPU is slower than an H200 even on tiny sizes
    FOLEY=(--small --steps 2 --clips 1 --seconds 2 --threads 1)
    FOLEY_DDPM=(--small --steps 3 --clips 1 --seconds 2 --threads 1)
    CFG=(--size small --steps 1 --no-end-to-end --threads 1)
    R256=(--resolution 64 --frames 4); R1024=(--resolution 64 --frames 2)
    MEL=(--seconds 10 --repeat 3 --threads 1)
    NV=(--resolution 64 --frames 2 --batch 2 --repeat 1 --threads 1); NVREPO=${NVLABS_SG3:-}
else
    DEV=cuda; HALF=fp16
    SCALE=${SCALE:-1}
    FOLEY=(--clips 2)
    FOLEY_DDPM=(--clips 1)
    CFG=(--size large --steps 10)
    R256=(--resolution 256 --frames 64); R1024=(--resolution 1024 --frames 32)
    MEL=(--seconds 60 --repeat 20)
    NV=(--resolution 256 --frames 32 --batch 16 --repeat 2); NVREPO=/tmp/site/nvlabs-stylegan3
    if [ -f .whl/site.tar.xz ]; then  # from --fetch-wheels (Python's tarfile: no xz binary needed there)
        python3 -c "import tarfile; tarfile.open('.whl/site.tar.xz').extractall('/tmp/site')" 2>&1 | tee -a "$LOG"
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
fi
# the repository root is the package `synesthesia` (pyproject: package-dir synesthesia = ".")
mkdir -p /tmp/gpu_run_pkg && ln -sfn "$ROOT" /tmp/gpu_run_pkg/synesthesia
export PYTHONPATH=/tmp/gpu_run_pkg${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}

{
    date -u; uname -a; nproc; free -g | head -2
    command -v nvidia-smi >/dev/null && nvidia-smi
    $PY -c "import torch, transformers, diffusers, av, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name()); print('transformers', transformers.__version__, 'diffusers', diffusers.__version__, 'av', av.__version__)"
    $PY -c "import synesthesia; print('synesthesia from', synesthesia.__file__)"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tee -a "$LOG"

FAILED=()
step() {  # step NAME LIMIT_S COMMAND... (the limit is multiplied by SCALE)
    local name=$1 limit=$2; shift 2
    local now=$(( $(date +%s) - START ))
    if [ "$now" -ge "$BUDGET" ]; then
        say "=== SKIP $name: ${now} s spent, budget ${BUDGET} s"
        FAILED+=("$name(skipped)")
        return
    fi
    say "=== $name (at ${now} s, limit $(( limit * SCALE )) s): $*"
    local t0=$(date +%s)
    timeout -k 5 "$(( limit * SCALE ))" "$@" 2>&1 | grep --line-buffered -v "^Writing model shards" | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}  # 124: over its time limit
    say "=== $name: rc $rc in $(( $(date +%s) - t0 )) s"
    [ "$rc" = 0 ] || FAILED+=("$name(rc $rc)")
}

# results back through $OUT (the device tool returns at most 8 files of 16 MiB); also when stopped early
finish() {
    cp "$TR"/foley_clip_top20.txt "$OUT"/ 2>/dev/null
    cp "$TR"/stylegan3_*_top20.txt "$OUT"/ 2>/dev/null
    for t in "$TR"/foley_clip_trace.json "$TR"/stylegan3_*_trace.json; do
        [ -f "$t" ] || continue
        gzip -c "$t" >"$WORK/$(basename "$t").gz"
        if [ "$(stat -c %s "$WORK/$(basename "$t").gz")" -lt 15000000 ]; then
            cp "$WORK/$(basename "$t").gz" "$OUT"/
        else
            say "trace $(basename "$t") is over 15 MB gzipped: not returned"
        fi
    done
    grep -E "^(=== |bench_foley|GPU|device|model|max \||batch +[0-9]+:|load in|warm-up|steady|fresh|sum of|per step|batched|CLIP|end to end|frame-by-frame|ratio|torch on|numpy|speed-up)|denoising step|scheduler \+|VAE decode|vocoder|CLIP image|read_conditioning|crossfade|write mp4|conditions \(" \
        "$LOG" >"$OUT/summary.txt"
    say "=== done in $(( $(date +%s) - START )) s; failed or skipped: ${FAILED[*]:-none}"
}
trap finish EXIT

M=$WORK/foley-models
TR=$WORK/traces
mkdir -p "$TR"
# 1. Foley, DPM-Solver++ 25, fp16: stage table, steady state, torch.profiler of one clip (fresh process: step 6)
step foley-dpm25 200 $PY bench/bench_foley.py "${FOLEY[@]}" --device $DEV --dtype $HALF --scheduler dpm++ \
    --models "$M" --trace-dir "$TR" --no-fresh
# 2. batched CFG vs two passes, per step (large UNet)
step cfg 90 $PY bench/bench_cfg.py "${CFG[@]}" --device $DEV --dtype $HALF
# 3. StyleGAN2 256 fp32 vs fp16 at batch 16; StyleGAN2 1024 batch 8; StyleGAN3-T 256 batch 16 vs frame by frame
step sg2-256-fp32 45 $PY bench/bench_render.py --family stylegan2 "${R256[@]}" --batch 16 --device $DEV --dtype fp32
step sg2-256-fp16 45 $PY bench/bench_render.py --family stylegan2 "${R256[@]}" --batch 16 --device $DEV --dtype $HALF
step sg2-1024-b8 60 $PY bench/bench_render.py --family stylegan2 "${R1024[@]}" --batch 8 --device $DEV --dtype fp32
step sg3-256-b16 75 $PY bench/bench_render.py --family stylegan3 "${R256[@]}" --batch 16 --device $DEV --dtype fp32 \
    --trace-dir "$TR"
# 4. log-mel on the device vs the numpy reference
step mel 45 $PY bench/bench_mel.py "${MEL[@]}" --device $DEV
# 5. Foley, DDPM 300 (VTA-LDM's default), same models
step foley-ddpm300 110 $PY bench/bench_foley.py "${FOLEY_DDPM[@]}" --device $DEV --dtype $HALF --scheduler ddpm \
    --models "$M" --no-fresh
# 6. a fresh `synesthesia foley` (wall; import / load / run), then -X importtime and cProfile of it
step foley-fresh-cold 180 $PY bench/bench_foley.py "${FOLEY[@]}" --device $DEV --dtype $HALF --scheduler dpm++ \
    --models "$M" --fresh-only --cold-profile
# 7. NVIDIA's own StyleGAN3-T and StyleGAN2 code at the same weights (their CUDA plugins if they build here)
if [ -n "$NVREPO" ] && [ -d "$NVREPO" ]; then
    step nvidia-sg3-256 90 $PY bench/bench_nvidia.py --repo "$NVREPO" --family stylegan3 "${NV[@]}" --device $DEV
    step nvidia-sg2-256 60 $PY bench/bench_nvidia.py --repo "$NVREPO" --family stylegan2 "${NV[@]}" --device $DEV
else
    say "=== SKIP nvidia: no NVIDIA stylegan3 checkout (NVLABS_SG3 when packing / running SMALL=1)"
fi

[ ${#FAILED[@]} = 0 ]

