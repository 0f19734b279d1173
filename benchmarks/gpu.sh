#!/usr/bin/env bash
# The GPU measurements, in one script for a CUDA machine with PyTorch installed and no internet:
#   bash benchmarks/gpu.sh [CIFAR]     (from the repository root; about 6 minutes on one H100)
# CIFAR: a folder holding cifar-10-batches-py/, or the cifar10-jpeg.tar.gz of ../shared/data (it
# is converted with prepare_cifar10.py, next to it or in the same folder); without it the
# time-to-accuracy run is skipped. Results go to $FTPROP_RESULTS (default: $OUT if set, else
# benchmarks/results): JSON + markdown per measurement, and a short table at the end.
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
export FTPROP_RESULTS=${FTPROP_RESULTS:-${OUT:-benchmarks/results}}
mkdir -p "$FTPROP_RESULTS"
PY=${PYTHON:-python3}
CIFAR=${1:-}
nvidia-smi -L || { echo "no NVIDIA GPU here"; exit 1; }
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

# 1. step time of hard-threshold training / ReLU training (target <= 1.05), fp32 then bf16 + channels-last
timeout 200 $PY benchmarks/perf.py step-time --device cuda --models convnet8,resnet18 --batch 256 \
    --variants quick --rounds 5 --steps 5 --target 1.05 --name step_time_cuda
timeout 150 $PY benchmarks/perf.py step-time --device cuda --models convnet8,resnet18 --batch 256 \
    --variants quick --rounds 5 --steps 5 --target 1.05 --bf16 --channels-last --name step_time_cuda_bf16_cl

# 2. time to accuracy of the fast CIFAR-10 recipe (30 epochs)
if [ -n "$CIFAR" ]; then
    if [ -f "$CIFAR" ]; then  # the JPEG tarball: convert it once
        dir=$(mktemp -d)
        prep=$(dirname "$CIFAR")/prepare_cifar10.py
        [ -f "$prep" ] || prep=../shared/data/prepare_cifar10.py
        (cd "$(dirname "$CIFAR")" && $PY "$(realpath "$prep")" "$dir") || exit 1
        CIFAR=$dir
    fi
    timeout 240 $PY benchmarks/time_to_accuracy.py --device cuda --data-root "$CIFAR" \
        --name time_to_accuracy_cuda --set train.tensorboard=false
fi

# 3. the short table
$PY - <<'PYEOF'
import json, os, pathlib
res = pathlib.Path(os.environ["FTPROP_RESULTS"])
for name in ("step_time_cuda", "step_time_cuda_bf16_cl"):
    f = res / f"{name}.json"
    if f.is_file():
        print(f"\n{name}: step time / ReLU step time (target <= 1.05)")
        for r in json.loads(f.read_text())["rows"]:
            print(f"  {r['model']:10s} {r['variant']:28s} {r['median_ms']:8.2f} ms  x{r['ratio_to_relu']:.3f}")
f = res / "time_to_accuracy_cuda.json"
if f.is_file():
    d = json.loads(f.read_text())
    print(f"\ntime to {d['target_pct']:.1f}%: epoch {d['reached_epoch']} after {d['reached_after_s']} s; "
          f"best {100 * d['best_test_acc']:.2f}% in {d['epochs']} epochs")
PYEOF
