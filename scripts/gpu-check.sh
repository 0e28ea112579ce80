#!/usr/bin/env bash
# GPU checks: the test suite (minus the feedback app's database and browser tests) and the benchmarks that have a
# --device cuda mode, run on a machine with one CUDA GPU. docs/gpu.md says what was measured and found.
#
#   bash scripts/gpu-check.sh            # writes logs to $OUT, or to runs/gpu-check
#
# The machine needs python3 with torch (CUDA), transformers, accelerate, peft, typer, rich, pytest, pytest-xdist and
# pytest-timeout. Packages it lacks can be put as wheels in .whl/ (plain package folders are copied as they are).
set -u
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    for d in .whl/*/; do [ -d "$d" ] && cp -r "$d" /tmp/site/; done
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
export HF_HUB_OFFLINE=1 ALINEA_PROGRESS=0 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
workers=${GPU_CHECK_WORKERS:-12}
{
    nvidia-smi -L
    python3 -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0), 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
} 2>&1 | tee "$OUT/env.txt"

# 1. Tests with CUDA visible: every trainer picks the GPU (and bf16) by itself. Two-process DDP needs two GPUs (deselected).
start=$(date +%s)
timeout "${GPU_CHECK_TEST_S:-200}" python3 -m pytest -q -p no:cacheprovider -n "$workers" --timeout 200 \
    --durations 10 tests --ignore tests/feedback -k "not two_process" 2>&1 | tee "$OUT/pytest.log" | tail -60
echo "tests: $(( $(date +%s) - start )) s" | tee -a "$OUT/pytest.log"

# 2. Sampling (ours vs transformers' generate) and the pretraining step on the GPU.
for dtype in float32 bfloat16; do
    timeout 100 python3 -m alinea.cli bench generate --device cuda --json --rounds 2 --dtype "$dtype" \
        2>&1 | tee "$OUT/bench-generate-$dtype.json"
done
timeout 60 python3 -m alinea.cli bench pretrain --json 2>&1 | tee "$OUT/bench-pretrain.json"
