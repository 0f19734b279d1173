"""Built-in problems for the exact solvers: XOR, n-bit parity, planted sign networks, binarised digits.

Every generator returns ``(X, T)``: X (m, n) float64, T (m, k) in {-1, +1}.
:func:`make_problem` turns a short spec string (as used by ``ftprop solve --data``) into one.
"""

from __future__ import annotations

import itertools
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .network import forward

MAX_PARITY_BITS = 20  # 2^20 examples; the search is exponential long before that
MAX_PLANTED_ENTRIES = 50_000_000  # examples x widest layer: 400 MB of float64 per layer

__all__ = ["xor", "parity", "planted", "digits", "make_problem", "load_problem_file"]


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The 4 points of {-1,+1}^2; target +1 iff the two inputs differ."""
    return parity(2)


def parity(n: int) -> tuple[np.ndarray, np.ndarray]:
    """All 2^n points of {-1,+1}^n; target +1 iff an odd number of inputs are +1."""
    if int(n) != n or n < 1:
        raise ValueError(f"parity needs a number of bits >= 1, got {n!r}")
    if n > MAX_PARITY_BITS:
        raise ValueError(f"parity:{n} has 2^{n} examples, more than the exact search can take; "
                         f"use at most {MAX_PARITY_BITS} bits")
    x = np.array(list(itertools.product((-1.0, 1.0), repeat=int(n))))
    t = np.where((x > 0).sum(1) % 2 == 1, 1.0, -1.0)[:, None]
    return x, t


def planted(n_inputs: int, n_examples: int, hidden, n_outputs: int = 1, seed: int = 0, binary: bool = False,
            return_weights: bool = False):
    """Label random inputs with a random sign network: feasible for ``hidden`` by construction.

    Inputs are standard normal (or random distinct ±1 vectors with ``binary=True``); weights
    are standard normal; each unit's bias puts its threshold between two of its pre-activations
    on the data, at a random quantile in [0.25, 0.75], so that no unit is constant.
    """
    hidden = [int(h) for h in ([hidden] if np.isscalar(hidden) else hidden)]
    if n_inputs < 1 or n_examples < 1 or n_outputs < 1 or any(h < 1 for h in hidden):
        raise ValueError("planted needs n_inputs, n_examples, n_outputs and every hidden width >= 1")
    sizes = [n_inputs, *hidden, n_outputs]
    if n_examples * max(sizes) > MAX_PLANTED_ENTRIES:
        raise ValueError(f"planted:{n_inputs},{n_examples},... would hold {n_examples * max(sizes):,} numbers in "
                         f"one layer; at most {MAX_PLANTED_ENTRIES:,} (examples x widest layer)")
    rng = np.random.default_rng(seed)
    if binary:
        if n_examples > 2**n_inputs:
            raise ValueError(f"only {2**n_inputs} distinct ±1 inputs of length {n_inputs}")
        codes = rng.choice(2**n_inputs, size=n_examples, replace=False) if n_inputs < 62 else None
        if codes is not None:
            x = (((codes[:, None] >> np.arange(n_inputs)) & 1) * 2 - 1).astype(np.float64)
        else:
            x = rng.choice((-1.0, 1.0), size=(n_examples, n_inputs))
    else:
        x = rng.standard_normal((n_examples, n_inputs))
    weights = []
    h = x
    for width in [*hidden, n_outputs]:
        w = rng.standard_normal((width, h.shape[1]))
        z = h @ w.T
        b = np.empty(width)
        for u in range(width):
            s = np.unique(z[:, u])
            if len(s) == 1:
                b[u] = -s[0] + 1.0
                continue
            j = int(np.clip(round(rng.uniform(0.25, 0.75) * (len(s) - 1)), 0, len(s) - 2))
            b[u] = -(s[j] + s[j + 1]) / 2
        weights.append((w, b))
        h = np.where(h @ w.T + b > 0, 1.0, -1.0)
    t = forward(weights, x)
    return (x, t, weights) if return_weights else (x, t)


def digits(n_examples: int = 40, classes=(0, 1), pool: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small binarised subset of sklearn's 8x8 digits.

    Pixels are averaged over ``pool`` x ``pool`` blocks (pool=2: 16 inputs) and thresholded at
    half intensity to ±1. Two classes give one output (+1 = first class); more give one ±1
    output per class (one-vs-rest). Examples are drawn at random, balanced over the classes.
    Binarising can map different digits to the same input: then no network fits (infeasible).
    """
    from sklearn.datasets import load_digits

    if 8 % pool:
        raise ValueError(f"pool must divide 8 (1, 2, 4 or 8), got {pool}")
    if n_examples < 1:
        raise ValueError(f"digits needs at least one example, got {n_examples}")
    classes = [int(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(0 <= c <= 9 for c in classes):
        raise ValueError(f"classes must be at least two distinct digits 0-9, got {classes}")
    bunch = load_digits()
    rng = np.random.default_rng(seed)
    per = [np.flatnonzero(bunch.target == c) for c in classes]
    counts = [n_examples // len(classes) + (1 if i < n_examples % len(classes) else 0) for i in range(len(classes))]
    if any(c > len(p) for c, p in zip(counts, per)):
        raise ValueError(f"not enough digits of classes {classes} for {n_examples} examples")
    idx = np.concatenate([rng.choice(p, size=c, replace=False) for p, c in zip(per, counts)])
    idx = rng.permutation(idx)
    img = bunch.images[idx] / 16.0
    s = 8 // pool
    img = img.reshape(len(idx), s, pool, s, pool).mean(axis=(2, 4))
    x = np.where(img.reshape(len(idx), -1) > 0.5, 1.0, -1.0)
    y = bunch.target[idx]
    if len(classes) == 2:
        t = np.where(y == classes[0], 1.0, -1.0)[:, None]
    else:
        t = np.where(y[:, None] == np.array(classes)[None, :], 1.0, -1.0)
    return x, t


def load_problem_file(path, n_targets: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """X and T from a .npz (arrays ``X`` and ``T``) or a .csv (last ``n_targets`` columns are T)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"data file {str(p)!r} does not exist")
    if not p.is_file():
        raise ValueError(f"data file {str(p)!r} is a folder, not a .csv or .npz file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            archive = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{p} is not a NumPy .npz archive (write one with numpy.savez(path, X=..., T=...)): "
                             f"{exc}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a single .npy array saved under a .npz name
            raise ValueError(f"{p} holds one array, not an .npz archive of 'X' and 'T' "
                             f"(numpy.savez(path, X=..., T=...))")
        with archive as f:
            keys = {k.lower(): k for k in f.files}
            if "x" not in keys or not ({"t", "y"} & set(keys)):
                raise ValueError(f"{p} must hold arrays 'X' and 'T' (found {f.files})")
            try:
                arrays = [f[keys["x"]], f[keys.get("t", keys.get("y"))]]
                if any(np.iscomplexobj(a) for a in arrays):
                    raise ValueError("complex numbers are not inputs or ±1 targets")
                return np.asarray(arrays[0], dtype=np.float64), np.asarray(arrays[1], dtype=float)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{p}: 'X' and 'T' must be arrays of numbers: {exc}") from None
            except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a member cut short or corrupted
                raise ValueError(f"{p} is damaged ({exc}): write it again with "
                                 f"numpy.savez(path, X=..., T=...)") from None
    if suffix == ".csv":
        try:  # utf-8-sig: a spreadsheet's byte-order mark is not part of the first number
            lines = p.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise ValueError(f"{p} is not UTF-8 text ({exc}); save it as UTF-8 CSV") from None
        first = lines[0] if lines else ""
        header = bool(first.strip()) and not any(_is_number(v) for v in first.split(","))  # column names
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy warns, not fails, on an empty file
                data = np.loadtxt(lines[int(header):], delimiter=",", ndmin=2)
        except (ValueError, UserWarning) as exc:
            semicolons = ";" in first and "," not in first  # a spreadsheet's other CSV dialect
            raise ValueError(f"{p} is not a CSV file of numbers separated by commas (one optional header "
                             f"line of column names): {exc}"
                             + ("; its columns are separated by semicolons: save it with commas" if semicolons
                                else "")) from None
        if data.shape[1] <= n_targets:
            raise ValueError(f"{p} has {data.shape[1]} columns; need inputs plus {n_targets} target column(s)")
        return data[:, :-n_targets], data[:, -n_targets:]
    raise ValueError(f"unsupported data file {str(p)!r}: use .csv or .npz")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def make_problem(spec: str, seed: int = 0, n_targets: int = 1) -> tuple[np.ndarray, np.ndarray, list[int] | None]:
    """(X, T, suggested hidden widths or None) from a spec string.

    ``xor`` | ``parity:N`` | ``planted:INPUTS,EXAMPLES,H1[-H2...][,OUTPUTS]`` |
    ``digits:EXAMPLES[,CLASS,CLASS...]`` | a path to a .csv or .npz file.
    """
    name, _, arg = str(spec).partition(":")
    name = name.strip().lower()
    try:
        if name == "xor" and not arg:
            x, t = xor()
            return x, t, [2]
        if name == "parity":
            n = int(arg)
            x, t = parity(n)
            return x, t, [n]
        if name == "planted":
            parts = arg.split(",")
            if len(parts) not in (3, 4):
                raise ValueError
            hidden = [int(h) for h in parts[2].split("-")]
            outputs = int(parts[3]) if len(parts) == 4 else 1
            x, t = planted(int(parts[0]), int(parts[1]), hidden, outputs, seed=seed)
            return x, t, hidden
        if name == "digits":
            parts = [p for p in arg.split(",") if p]
            n = int(parts[0]) if parts else 40
            classes = [int(c) for c in parts[1:]] or [0, 1]
            x, t = digits(n, classes, seed=seed)
            return x, t, None
    except ValueError as exc:
        why = f" ({exc})" if str(exc) else ""
        raise ValueError(f"bad problem spec {spec!r}{why}: expected xor, parity:N, planted:INPUTS,EXAMPLES,"
                         f"H1[-H2..][,OUTPUTS], digits:EXAMPLES[,CLASS,CLASS..] or a .csv/.npz path") from None
    if Path(spec).suffix.lower() in (".csv", ".npz"):
        x, t = load_problem_file(spec, n_targets)
        return x, t, None
    raise ValueError(f"unknown problem {spec!r}: expected xor, parity:N, planted:INPUTS,EXAMPLES,H1[-H2..][,OUTPUTS], "
                     f"digits:EXAMPLES[,CLASS,CLASS..] or a .csv/.npz path")
