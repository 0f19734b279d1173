#!/usr/bin/env bash
# CIFAR-10, convnet4 with sign units: FTP-SH vs SSTE vs ReLU, with the paper's optimiser settings
# (configs/table1/convnet4-*.toml: Adam 2.5e-4, coupled L2 5e-4, batch 64, lr x0.1 at epochs 200/250)
# for EPOCHS epochs each instead of the paper's 300, 1 seed. Needs the CIFAR-10 copy of ../shared/data.
# Usage: [FORCE=1] [FTPROP_OUT=DIR] bash benchmarks/cifar10_convnet4.sh [EPOCHS]   (from the repository root)
set -euo pipefail
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # threads sleep, not spin, when the 2 cores are shared
EPOCHS=${1:-30}
DATA=${FTPROP_DATA:-$HOME/.cache/ftprop-data}
RUNS=${FTPROP_RUNS:-runs/bench-cifar10-convnet4}
OUT=${FTPROP_OUT:-benchmarks/results/cifar10_convnet4}
FTPROP=${FTPROP:-.venv/bin/ftprop}
if [ -e "$OUT" ] && [ "${FORCE:-0}" != 1 ]; then  # before any training: a committed table is not replaced by accident
    echo "error: $OUT already exists (a committed result?); FORCE=1 bash $0 ... replaces it, FTPROP_OUT=DIR writes elsewhere" >&2
    exit 2
fi
put() { cp "$1" "$2.tmp.$$" && mv "$2.tmp.$$" "$2"; }  # a copy cut short never stands in for the file
[ -d "$DATA/cifar-10-batches-py" ] || python3 ../shared/data/prepare_cifar10.py "$DATA"
$FTPROP reproduce table1 --rows convnet4 --cols sign_ftpsh,sign_sste,relu --epochs "$EPOCHS" \
    --data-root "$DATA" --device cpu --out "$RUNS"
mkdir -p "$OUT"
put "$RUNS/table1.md" "$OUT/table1.md"
put "$RUNS/table1.json" "$OUT/table1.json"
$FTPROP report "$RUNS"/convnet4-sign_ftpsh/seed0 "$RUNS"/convnet4-sign_sste/seed0 "$RUNS"/convnet4-relu/seed0 \
    --out "$OUT" --title "CIFAR-10 convnet4, paper's optimiser settings, $EPOCHS of 300 epochs, seed 468412397"
for m in sign_ftpsh sign_sste relu; do
    put "$RUNS/convnet4-$m/seed0/environment.json" "$OUT/environment-$m.json"
    put "$RUNS/convnet4-$m/seed0/metrics.jsonl" "$OUT/metrics-$m.jsonl"
done
