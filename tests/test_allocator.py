"""ftprop.allocator: glibc keeps freed memory, so a step's large tensors are not page-faulted in again."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftprop import allocator

SRC = str(Path(__file__).resolve().parents[1] / "src")

# The minor page faults of the third of three allocate-fill-free cycles of a 64 MiB tensor, the
# size class of a training step's activations (a 128x64x32x32 float32 tensor is 33.5 MB).
FAULTS_OF_A_REALLOCATION = """
import resource, sys, torch
from ftprop import allocator
if sys.argv[1] == "kept":
    assert allocator.keep_freed_memory() and allocator.kept()
else:
    assert not allocator.kept()
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20)
    del x
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults)
"""

glibc_only = pytest.mark.skipif(allocator._glibc() is None, reason="the setting is glibc's malloc's")


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS_OF_A_REALLOCATION, mode], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@glibc_only
def test_kept_memory_is_reused_without_page_faults():
    default, kept = _faults("default"), _faults("kept")
    assert default > 0  # glibc maps a block this large afresh each time and returns it when it is freed
    assert kept * 4 < default  # kept: the freed block is reused, its pages already in memory


@glibc_only
def test_keeping_freed_memory_is_idempotent():
    assert allocator.keep_freed_memory()
    assert allocator.keep_freed_memory() and allocator.kept()


def test_training_on_cpu_keeps_freed_memory_unless_told_not_to(tmp_path):
    """train() applies it on CPU by default and says so in environment.json; with
    train.keep_freed_memory = false it leaves malloc alone (a fresh process: the setting is process-wide)."""
    code = ("import sys; from ftprop.config import Config, apply_overrides; from ftprop.engine import train; "
            "cfg = apply_overrides(Config(name='t'), ['model.options.hidden=[8]', 'train.epochs=1', "
            "'train.batch_size=256', 'train.tensorboard=false', 'train.device=cpu', "
            "'train.keep_freed_memory=' + sys.argv[2]]); train(cfg, sys.argv[1], log=None)")
    for keep in ("true", "false"):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / keep), keep], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=SRC), timeout=300)
        assert out.returncode == 0, out.stderr
        env = json.loads((tmp_path / keep / "environment.json").read_text())
        assert env["keeps_freed_memory"] is (keep == "true" and allocator._glibc() is not None)
