#!/usr/bin/env bash
# OCR benchmark on a GPU machine: prints the same table as perf/ocr_bench.py.
#
# Builds a fresh venv holding onnxruntime-gpu (with NVIDIA's CUDA and cuDNN
# wheels) and never the CPU onnxruntime beside it, then runs the benchmark on
# CUDAExecutionProvider and fails if the session fell back to the CPU. Run from
# the repository root:
#
#   bash perf/gpu_ocr.sh                 # 1,000 cards, batches 1,8,32,64
#   CARDS=300 bash perf/gpu_ocr.sh       # quicker
#
# Environment: PYTHON (default python3.11), OCR_GPU_VENV (default
# var/ocr-gpu-venv), OCR_WHEELHOUSE (a folder of wheels, for machines without
# PyPI: fill it elsewhere with `pip download` of the same pins), CARDS.
# Aims at under 5 minutes: install ~1-2 min, generating 1,000 cards ~1-2 min
# on one core, reading them on the GPU well under a minute.
set -euo pipefail

PYTHON=${PYTHON:-python3.11}
VENV=${OCR_GPU_VENV:-var/ocr-gpu-venv}
CARDS=${CARDS:-1000}
PIP_FROM=()
if [[ -n "${OCR_WHEELHOUSE:-}" ]]; then
    PIP_FROM=(--no-index --find-links "$OCR_WHEELHOUSE")
fi

# The card generator draws with Debian's CJK and OCR-B fonts.
if [[ ! -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ||
      ! -f /usr/share/fonts/opentype/ocr-b/OCRB.otf ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            fonts-noto-cjk fonts-ocr-b >/dev/null
    else
        echo "gpu_ocr: install fonts-noto-cjk and fonts-ocr-b first" >&2
        exit 1
    fi
fi

started=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q "${PIP_FROM[@]}" \
    "onnxruntime-gpu[cuda,cudnn]==1.31.1" numpy==2.4.6 \
    opencv-python-headless==5.1.0.95 pillow==13.0.0 click==8.5.1 \
    structlog==26.1.0 cryptography==50.0.2
# Only the model files are used from rapidocr; --no-deps keeps its own
# requirements (and any chance of the CPU onnxruntime) out.
"$VENV/bin/pip" install -q --no-deps "${PIP_FROM[@]}" rapidocr==3.10.0
if "$VENV/bin/pip" show onnxruntime >/dev/null 2>&1; then
    echo "gpu_ocr: the CPU onnxruntime got into $VENV; remove it" >&2
    exit 1
fi
echo "gpu_ocr: venv ready in $(( $(date +%s) - started )) s"

mkdir -p var
out=var/ocr_bench_gpu.json
PYTHONPATH=. "$VENV/bin/python" -m perf.ocr_bench --provider cuda \
    --cards "$CARDS" --batch-sizes 1,8,32,64 --speed-images 256 \
    --json "$out" | tee var/ocr_bench_gpu.txt
if ! grep -q '^provider=CUDAExecutionProvider' var/ocr_bench_gpu.txt; then
    echo "gpu_ocr: the session did not run on CUDA (see above)" >&2
    exit 1
fi
echo "gpu_ocr: done in $(( $(date +%s) - started )) s; results in $out"
