"""Benchmark the CIFAR-10 training input pipeline and check the real data sets.

Two pipelines produce the same thing, normalised float32 batches of 128 with the paper's
augmentation (pad-4 random crop + random horizontal flip), over full epochs of the 50,000
training images:

* ``array``: ftprop's :class:`~ftprop.data.base.ArrayDataset` (the whole split as one uint8
  tensor on the device; crop, flip and normalisation are batched tensor ops; no workers);
* ``loader``: the usual per-sample ``torch.utils.data.DataLoader``, whose Dataset pads,
  crops, flips and normalises one image per ``__getitem__`` (tensor ops, no PIL), with
  ``--workers`` worker processes (2 by default: this machine has 2 cores).

It also checks the real data: CIFAR-10 prepared from the offline JPEG copy (50,000 / 10,000
images, 5,000 / 1,000 per class, train channel means within 0.005 of PAPER.md section 8)
and Fashion-MNIST (60,000 / 10,000). Results go to benchmarks/results/data_pipeline.{json,md}.

usage: python benchmarks/data_pipeline.py [--data-root ~/.cache/ftprop-data] [--fashion-root DIR] [--prepare]
           [--epochs 3] [--batch-size 128] [--workers 2] [--device cpu|cuda] [--out DIR] [--force]
(--prepare: write CIFAR-10 into --data-root from ../shared/data first, if it is not there; --out:
the results folder, by default $FTPROP_RESULTS or benchmarks/results)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results_file import check_device, claim, write_result
from torch.utils.data import DataLoader, Dataset

from ftprop.data import DatasetError, load_dataset
from ftprop.data.cifar10 import MEAN, STD
from ftprop.runs import cpu_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


class PerSampleCIFAR(Dataset):
    """The per-image baseline: pad 4, random 32x32 crop, random flip, normalise; one image a call."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = torch.nn.functional.pad(self.images[i], (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        img = img[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return (img.float() / 255 - self.mean) / self.std, int(self.labels[i])


def _rates(run_epoch, epochs: int) -> dict:
    """Time ``epochs`` full epochs; total images/s and the per-epoch rates (the machine is shared)."""
    n, per_epoch, t0 = 0, [], time.perf_counter()
    for _ in range(epochs):
        t = time.perf_counter()
        k, last = run_epoch()
        per_epoch.append(round(k / (time.perf_counter() - t), 1))
        n += k
    seconds = time.perf_counter() - t0
    assert last.dtype == torch.float32 and last.shape[1:] == (3, 32, 32)
    return {"images": n, "epochs": epochs, "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 1),
            "per_epoch_images_per_s": per_epoch}


def time_array(ds, batch: int, epochs: int, device: torch.device) -> dict:
    ds = ds.to(device)
    gen = torch.Generator().manual_seed(0)
    for i, _ in enumerate(ds.batches(batch, shuffle=True, augment=True, generator=gen)):  # warm-up
        if i == 5:
            break
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def epoch():
        n = 0
        for x, y in ds.batches(batch, shuffle=True, augment=True, generator=gen):
            n, last = n + len(y), x
        sync()
        return n, last

    return _rates(epoch, epochs)


def time_loader(ds, batch: int, epochs: int, workers: int) -> dict:
    data = PerSampleCIFAR(ds.images, ds.labels)
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))

    def epoch():  # includes starting the workers, as a default (non-persistent) DataLoader does each epoch
        n = 0
        for x, y in loader:
            n, last = n + len(y), x
        return n, last

    return {**_rates(epoch, epochs), "num_workers": workers}


def check_cifar(root: Path, prepare: bool) -> tuple[dict, object]:
    if not (root / "cifar-10-batches-py" / "test_batch").is_file():
        script = SHARED_DATA / "prepare_cifar10.py"
        if not prepare:
            raise SystemExit(f"error: no CIFAR-10 in {root} (cifar-10-batches-py/); pass --prepare to write it there "
                             f"from {script.parent}, or give the --data-root that holds it")
        print(f"preparing CIFAR-10 in {root} with {script} ...", flush=True)
        if subprocess.run([sys.executable, str(script), str(root)]).returncode != 0:
            raise SystemExit(f"error: {script} could not prepare CIFAR-10 in {root} (its message is above)")
    train, test = load_dataset("cifar10", root, "train"), load_dataset("cifar10", root, "test")
    total, squares = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for chunk in train.images.split(5000):  # chunked: no 1.2 GB float64 copy of the whole set
        x = chunk.to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    count = train.images.numel() / 3
    means = (total / count).tolist()
    stds = (squares / count - (total / count) ** 2).sqrt().tolist()
    out = {"train": len(train), "test": len(test),
           "train_per_class": sorted(set(train.labels.bincount().tolist())),
           "test_per_class": sorted(set(test.labels.bincount().tolist())),
           "train_channel_mean": [round(m, 5) for m in means], "train_channel_std": [round(s, 5) for s in stds],
           "paper_mean": list(MEAN), "paper_std": list(STD),
           "max_mean_diff": round(max(abs(a - b) for a, b in zip(means, MEAN)), 5)}
    out["ok"] = (out["train"] == 50000 and out["test"] == 10000 and out["train_per_class"] == [5000]
                 and out["test_per_class"] == [1000] and out["max_mean_diff"] < 0.005)
    return out, train


def check_fashion(root: Path) -> dict:
    train, test = load_dataset("fashion-mnist", root, "train"), load_dataset("fashion-mnist", root, "test")
    pixels = train.images.to(torch.float32) / 255
    out = {"root": str(root), "train": len(train), "test": len(test),
           "train_per_class": sorted(set(train.labels.bincount().tolist())),
           "mean": round(pixels.mean(dtype=torch.float64).item(), 5),
           "std": round(pixels.to(torch.float64).std().item(), 5),
           "constants": [train.mean.item(), train.std.item()]}
    out["ok"] = out["train"] == 60000 and out["test"] == 10000
    return out


def machine() -> dict:
    return {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__}


def _workers(n: int) -> str:
    return "in the main process (num_workers=0)" if n == 0 else f"on {n} worker process{'es' * (n != 1)}"


def _fmt(r: dict) -> str:
    return ", ".join(f"{v:,.0f}" for v in r["per_epoch_images_per_s"])


def markdown(r: dict) -> str:
    a, a2, b, c, f = r["array"], r["array_all_threads"], r["loader"], r["cifar10"], r["fashion_mnist"]
    m = r["machine"]
    lines = [
        "# CIFAR-10 input pipeline and real-data checks", "",
        f"- command: `{r['command']}`",
        f"- date: {r['date']}",
        f"- machine: {m['cpu']}, {m['cpu_cores']} CPU cores (shared with other jobs), device `{r['device']}`, "
        f"torch {m['torch']} ({m['torch_threads']} threads), numpy {m['numpy']}, Python {m['python']}",
        f"- batch {r['batch_size']}, pad-4 random crop + random horizontal flip + normalisation, shuffled, "
        f"full epochs of {c['train']:,} images", "",
        "| pipeline | epochs | images | seconds | images/s | images/s per epoch |", "|---|---:|---:|---:|---:|---|",
        f"| ArrayDataset (uint8 tensor on `{r['device']}`, batched crop/flip/normalise), 1 torch thread | "
        f"{a['epochs']} | {a['images']:,} | {a['seconds']} | {a['images_per_s']:,.0f} | {_fmt(a)} |",
        f"| same, {a2['torch_threads']} torch threads | {a2['epochs']} | {a2['images']:,} | {a2['seconds']} | "
        f"{a2['images_per_s']:,.0f} | {_fmt(a2)} |",
        f"| per-sample DataLoader, num_workers={b['num_workers']} | {b['epochs']} | {b['images']:,} | "
        f"{b['seconds']} | {b['images_per_s']:,.0f} | {_fmt(b)} |", "",
        f"**Speed-up of the ArrayDataset path on one core over the DataLoader {_workers(b['num_workers'])}: "
        f"{r['speedup']:.1f}x** (target: at least 5x); with all {a2['torch_threads']} torch threads: "
        f"{r['speedup_all_threads']:.1f}x.", "",
        "The DataLoader's Dataset pads, crops, flips and normalises one image per `__getitem__` with tensor ops "
        "(no PIL, so it is faster than the usual torchvision-style pipeline)"
        + ("; its time includes starting its workers each epoch (the default, non-persistent behaviour)"
           if b["num_workers"] else "")
        + f". The machine's {m['cpu_cores']} cores are shared with other "
        "jobs, so rates vary from epoch to epoch (see the per-epoch column); torch's multi-threaded kernels suffer "
        "most from that, which is why the one-thread run is the headline.", "",
        "## Real data", "",
        "| check | result | expected | ok |", "|---|---|---|---|",
        f"| CIFAR-10 train / test images | {c['train']:,} / {c['test']:,} | 50,000 / 10,000 | "
        f"{c['train'] == 50000 and c['test'] == 10000} |",
        f"| CIFAR-10 images per class (train / test) | {c['train_per_class']} / {c['test_per_class']} | "
        f"[5000] / [1000] | {c['train_per_class'] == [5000] and c['test_per_class'] == [1000]} |",
        f"| CIFAR-10 train channel means | {c['train_channel_mean']} | {c['paper_mean']} (PAPER.md 8), within 0.005 "
        f"| {c['max_mean_diff'] < 0.005} (max diff {c['max_mean_diff']}) |",
        f"| CIFAR-10 train channel stds (info) | {c['train_channel_std']} | {c['paper_std']} | - |",
        f"| Fashion-MNIST train / test images | {f['train']:,} / {f['test']:,} | 60,000 / 10,000 | {f['ok']} |",
        f"| Fashion-MNIST train pixel mean / std | {f['mean']} / {f['std']} | constants {f['constants'][0]:.7f} / "
        f"{f['constants'][1]:.7f} | - |", "",
        "CIFAR-10 here is the offline JPEG copy (quality 75) converted by `prepare_cifar10.py`, so its pixel "
        "statistics differ slightly from the official release's.", "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=Path("~/.cache/ftprop-data").expanduser())
    p.add_argument("--fashion-root", type=Path, default=SHARED_DATA / "fashion-mnist")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3, help="full epochs timed for each pipeline")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("FTPROP_RESULTS", REPO / "benchmarks" / "results")))
    p.add_argument("--force", action="store_true", help="replace data_pipeline.{json,md} in --out if they exist")
    p.add_argument("--prepare", action="store_true", help="prepare CIFAR-10 in --data-root if it is missing")
    args = p.parse_args(argv)
    for opt in ("batch_size", "epochs"):
        if getattr(args, opt) < 1:
            p.error(f"--{opt.replace('_', '-')} must be >= 1")
    if args.workers < 0:
        p.error("--workers must be >= 0")
    check_device(p, args.device)
    claim(args.out / "data_pipeline", args.force)

    # both data sets are read before anything is timed: a wrong folder is found at once
    try:
        cifar, train = check_cifar(args.data_root.expanduser(), args.prepare)
    except DatasetError as err:
        raise SystemExit(f"error: --data-root {args.data_root}: {err}") from None
    print("cifar10:", cifar, flush=True)
    try:
        fashion = check_fashion(args.fashion_root.expanduser())
    except DatasetError as err:
        raise SystemExit(f"error: --fashion-root {args.fashion_root}: {err} (give --fashion-root the folder that "
                         f"holds Fashion-MNIST's four idx files)") from None
    print("fashion-mnist:", fashion, flush=True)
    device = torch.device(args.device)
    default_threads = torch.get_num_threads()
    array_runs = {}
    for threads in sorted({1, default_threads}):  # one core, and torch's default (all cores)
        torch.set_num_threads(threads)
        array_runs[threads] = {**time_array(train, args.batch_size, args.epochs, device), "torch_threads": threads}
        print(f"array ({threads} thread(s)):", array_runs[threads], flush=True)
    torch.set_num_threads(default_threads)
    array = array_runs[1]
    loader = time_loader(train, args.batch_size, args.epochs, args.workers)
    print("loader:", loader, flush=True)
    result = {
        "command": shlex.join(["python", "benchmarks/data_pipeline.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "device": str(device), "batch_size": args.batch_size,
        "array": array, "array_all_threads": array_runs[default_threads], "loader": loader,
        "speedup": round(array["images_per_s"] / loader["images_per_s"], 2),
        "speedup_all_threads": round(array_runs[default_threads]["images_per_s"] / loader["images_per_s"], 2),
        "cifar10": cifar, "fashion_mnist": fashion,
    }
    write_result(args.out / "data_pipeline", result, markdown(result))
    print(f"speed-up {result['speedup']}x; wrote {args.out / 'data_pipeline.json'} and data_pipeline.md")
    return 0 if cifar["ok"] and fashion["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
