"""ftprop.allocator: glibc keeps freed memory, so a step's large tensors are not page-faulted in again."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ftprop import allocator

SRC = str(Path(__file__).resolve().parents[1] / "src")

# The minor page faults of each of 12 iterations of a loop that, like a training step, makes
# 64 MiB tensors (the size class of a step's activations: a 128x64x32x32 float32 tensor is
# 33.5 MB) and frees them at its end.
FAULTS_PER_ITERATION = """
import resource, sys, torch
from ftprop import allocator
if sys.argv[1] == "kept":
    assert allocator.keep_freed_memory() and allocator.kept()
else:
    assert not allocator.kept()
x = torch.randn(16 << 20)
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = (x * 2).relu_()
    z = torch.sigmoid(y) + y
    del y, z
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(not allocator.can_keep_freed_memory(), reason="the setting is glibc's malloc's")


def _faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_ITERATION, mode], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    assert out.returncode == 0, out.stderr
    return [int(v) for v in out.stdout.split()]


@glibc_only
def test_kept_memory_is_reused_without_page_faults():
    default, kept = _faults("default"), _faults("kept")
    # glibc maps blocks this large afresh each time and returns them when they are freed: every
    # iteration faults its 3 x 64 MiB in again (49152 pages). Kept, the heap settles after a few
    # iterations (it grew while it did) and the freed blocks are reused, their pages in memory.
    assert min(default[-4:]) > 0
    assert max(kept[-4:]) * 4 < min(default[-4:])


def _python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=SRC, **env))
    assert out.returncode == 0, out.stderr
    return out


@glibc_only
def test_keeping_freed_memory_is_idempotent():  # in a fresh process: the setting cannot be undone
    _python("from ftprop import allocator\nassert not allocator.kept()\n"
            "assert allocator.keep_freed_memory() and allocator.keep_freed_memory() and allocator.kept()")


@glibc_only
def test_an_allocator_in_front_of_glibc_is_left_alone(tmp_path):
    """With another malloc preloaded (as jemalloc or tcmalloc would be), glibc's mallopt would
    change nothing, so keep_freed_memory() says it is not in effect rather than claim it."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler on this machine")
    (tmp_path / "shim.c").write_text("#include <stddef.h>\nextern void *__libc_malloc(size_t);\n"
                                     "void *malloc(size_t n) { return __libc_malloc(n); }\n")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp_path / "shim.so"), str(tmp_path / "shim.c")], check=True)
    code = ("from ftprop import allocator\n"
            "print(allocator.can_keep_freed_memory(), allocator.keep_freed_memory(), allocator.kept())")
    assert _python(code, LD_PRELOAD=str(tmp_path / "shim.so")).stdout.split() == ["False"] * 3
    assert _python(code).stdout.split() == ["True"] * 3


def test_training_on_cpu_keeps_freed_memory_unless_told_not_to(tmp_path):
    """train() leaves malloc alone with train.keep_freed_memory = false, applies it on CPU by default
    and says so in environment.json; once applied, a later run in the process that asks for false
    still has it, which environment.json records and a note says (a fresh process: the setting is
    process-wide)."""
    code = ("import sys; from ftprop.config import Config, apply_overrides; from ftprop.engine import train\n"
            "for i, keep in enumerate(['false', 'true', 'false']):\n"
            "    cfg = apply_overrides(Config(name='t'), ['model.options.hidden=[8]', 'train.epochs=1', "
            "'train.batch_size=256', 'train.tensorboard=false', 'train.device=cpu', "
            "'train.keep_freed_memory=' + keep])\n"
            "    train(cfg, sys.argv[1] + f'/{i}', log=print)")
    out = _python(code, str(tmp_path))
    kept = [json.loads((tmp_path / str(i) / "environment.json").read_text())["keeps_freed_memory"] for i in range(3)]
    glibc = allocator.can_keep_freed_memory()
    assert kept == [False, glibc, glibc]
    assert ("already made glibc keep freed memory" in out.stdout) is glibc
