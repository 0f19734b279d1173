#!/usr/bin/env bash
# Fashion-MNIST, mlp with sign units (2 hidden layers of 1024, BN): FTP-SH vs SSTE vs ReLU, 3 seeds
# each, configs/recipes/fashion_mnist_mlp.toml. Writes the `ftprop report` table and plot.
# Usage: [FORCE=1] [FTPROP_OUT=DIR] bash benchmarks/fashion_mnist_mlp.sh [EPOCHS]   (from the repository root)
set -euo pipefail
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # threads sleep, not spin, when the 2 cores are shared
EPOCHS=${1:-15}
DATA=${FTPROP_FASHION:-../shared/data}
RUNS=${FTPROP_RUNS:-runs/bench-fashion-mnist-mlp}
OUT=${FTPROP_OUT:-benchmarks/results/fashion_mnist_mlp}
FTPROP=${FTPROP:-.venv/bin/ftprop}
if [ -e "$OUT" ] && [ "${FORCE:-0}" != 1 ]; then  # before any training: a committed table is not replaced by accident
    echo "error: $OUT already exists (a committed result?); FORCE=1 bash $0 ... replaces it, FTPROP_OUT=DIR writes elsewhere" >&2
    exit 2
fi
dirs=()
for method in ftpsh sste relu; do
    case $method in
        ftpsh) args=(--loss soft_hinge) ;;
        sste)  args=(--loss saturated_hinge) ;;
        relu)  args=(--activation relu) ;;
    esac
    for seed in 0 1 2; do
        dir="$RUNS/$method/seed$seed"
        dirs+=("$dir")
        if [ -f "$dir/summary.json" ] && grep -q '"status": "completed"' "$dir/summary.json" \
            && grep -q "\"epochs\": $EPOCHS," "$dir/summary.json"; then continue; fi
        if [ -f "$dir/config.toml" ]; then  # an interrupted or shorter run: continue it to EPOCHS
            $FTPROP train --resume "$dir" --epochs "$EPOCHS"   # (refused if it already trained more)
        else
            $FTPROP train --config configs/recipes/fashion_mnist_mlp.toml "${args[@]}" --data-root "$DATA" \
                --epochs "$EPOCHS" --seed "$seed" --device cpu --out "$dir"
        fi
    done
done
$FTPROP report "${dirs[@]}" --out "$OUT" \
    --title "Fashion-MNIST, MLP 1024-1024 BN, $EPOCHS epochs, seeds 0-2"
