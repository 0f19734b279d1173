"""Dataset sources: CIFAR-10 pickles, IDX files, image folders, downloads. All data is generated
in tmp dirs; downloads go to a local http.server on 127.0.0.1 (any other connection fails)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ftprop.data import DatasetError, load_dataset
from ftprop.data import cifar10 as cifar_mod
from ftprop.data import idx as idx_mod
from ftprop.data import imagefolder as if_mod
from ftprop.data.base import ArrayDataset, crop_flip, cut_out, patch_whitening
from ftprop.data.download import fetch, safe_extract_tar

# -- no network: only loopback connections -----------------------------------------------------


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        if address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"test tried to reach {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over a folder; yields (folder, base url)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def dead_url(name="x"):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"  # nothing listens there any more


def md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


# -- CIFAR-10 ----------------------------------------------------------------------------------
PER_BATCH = 6
N_TRAIN, N_TEST = 5 * PER_BATCH, PER_BATCH


class Py2Pickler(pickle._Pickler):
    """Bytes as Python 2 strings (SHORT_BINSTRING/BINSTRING), as in the official files."""

    def save_bytes(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + n.to_bytes(4, "little"))
                   + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def _dump(obj, path, style):
    with open(path, "wb") as f:
        if style == "py2":
            Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=2 if style == "bytes" else 4)


def write_cifar(root, style="bytes"):
    """A tiny CIFAR-10 in the official layout; image i has data[i, 0] == i (a unique id)."""
    key = (lambda k: k) if style == "str" else (lambda k: k.encode())
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        data = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        data[:, 0] = np.arange(b * PER_BATCH, (b + 1) * PER_BATCH)
        labels = [(b * PER_BATCH + i) % 10 for i in range(PER_BATCH)]
        _dump({key("batch_label"): key(name), key("labels"): labels, key("data"): data,
               key("filenames"): [key(f"f{i}.png") for i in range(PER_BATCH)]}, folder / name, style)
    _dump({key("label_names"): [key(c) for c in cifar_mod.CLASSES], key("num_cases_per_batch"): PER_BATCH,
           key("num_vis"): 3072}, folder / "batches.meta", style)
    return folder


def raw_batch(folder, name):
    with open(Path(folder) / name, "rb") as f:
        return pickle.load(f, encoding="bytes")


def ids(images):
    return images[:, 0, 0, 0].tolist()


@pytest.fixture
def cifar_root(tmp_path):
    write_cifar(tmp_path)
    return tmp_path


@pytest.mark.parametrize("style", ["bytes", "str", "py2"])
def test_cifar_reads_official_layout(tmp_path, style):
    folder = write_cifar(tmp_path, style)
    train = load_dataset("cifar10", tmp_path, "train")
    test = load_dataset("cifar10", tmp_path, "test")
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert train.input_shape == (3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes == list(cifar_mod.CLASSES) and train.num_classes == 10
    assert train.labels.tolist() == [i % 10 for i in range(N_TRAIN)]
    assert ids(train.images) == list(range(N_TRAIN)) and ids(test.images) == list(range(N_TRAIN, N_TRAIN + N_TEST))
    # row layout: the R, G, B planes of a 32x32 image, row-major
    batch = raw_batch(folder, "data_batch_2")
    row = batch[b"data" if b"data" in batch else "data"][1]
    img = train.images[PER_BATCH + 1]
    for c, h, w in [(0, 0, 5), (1, 7, 3), (2, 31, 31)]:
        assert img[c, h, w] == row[c * 1024 + h * 32 + w]
    # normalisation: (x / 255 - mean) / std with PAPER.md's constants
    x, y = next(test.batches(4))
    mean, std = torch.tensor(cifar_mod.MEAN).view(1, 3, 1, 1), torch.tensor(cifar_mod.STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (test.images[:4].float() / 255 - mean) / std)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and y.tolist() == test.labels[:4].tolist()


def test_cifar_root_may_be_the_batches_folder(cifar_root):
    assert len(load_dataset("cifar10", cifar_root / "cifar-10-batches-py", "test")) == N_TEST


def test_cifar_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(DatasetError, match="--download") as e:
        load_dataset("cifar10", tmp_path / "nowhere", "train")
    assert "nowhere" in str(e.value)
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path, "train")
    assert len(load_dataset("cifar10", tmp_path, "test")) == N_TEST  # the test split does not need it


def test_cifar_truncated_pickle(cifar_root):
    path = cifar_root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="data_batch_2.*(truncated|corrupt)"):
        load_dataset("cifar10", cifar_root, "train")


class Boom:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("damage, message", [
    (lambda b: b.update({b"data": b[b"data"][:, :3000]}), "uint8 N x 3072"),
    (lambda b: b.update({b"data": b[b"data"].astype(np.float32)}), "uint8 N x 3072"),
    (lambda b: b.update({b"labels": [0, 1, 2, 3, 4, 10]}), "outside 0..9"),
    (lambda b: b.update({b"labels": [0.0, 1.5, 2.0, 3.0, 4.0, 5.0]}), "not integers .some are not whole"),
    (lambda b: b.update({b"labels": [0, 1, 2]}), "labels of shape"),
    (lambda b: b.update({b"data": b[b"data"][:4], b"labels": [0, 1, 2, 3]}), "batches.meta says 6"),
    (lambda b: b.pop(b"data"), "no 'data' entry"),
    (lambda b: b.update({b"evil": Boom()}), "corrupt"),
])
def test_cifar_wrong_layout(cifar_root, damage, message, capsys):
    folder = cifar_root / "cifar-10-batches-py"
    batch = raw_batch(folder, "data_batch_4")
    damage(batch)
    _dump(batch, folder / "data_batch_4", "bytes")
    with pytest.raises(DatasetError, match=message) as e:
        load_dataset("cifar10", cifar_root, "train")
    assert "data_batch_4" in str(e.value)
    assert "pwned" not in capsys.readouterr().out  # a hostile pickle runs nothing


@pytest.mark.parametrize("damage", [lambda m: m.update({b"label_names": 7}),
                                    lambda m: m.update({b"num_cases_per_batch": b"x"}),
                                    lambda m: m.update({b"num_vis": None})])
def test_cifar_meta_that_is_not_cifar10s_is_a_clear_error(cifar_root, damage):
    folder = cifar_root / "cifar-10-batches-py"
    meta = raw_batch(folder, "batches.meta")
    damage(meta)
    _dump(meta, folder / "batches.meta", "bytes")
    with pytest.raises(DatasetError, match="batches.meta is not CIFAR-10's batches.meta .*fetch it again"):
        load_dataset("cifar10", cifar_root, "test")


def test_cifar_not_a_dict(cifar_root):
    _dump([1, 2, 3], cifar_root / "cifar-10-batches-py" / "test_batch", "bytes")
    with pytest.raises(DatasetError, match="test_batch.*not the dict"):
        load_dataset("cifar10", cifar_root, "test")


def make_cifar_archive(tmp_path, dest):
    src = tmp_path / "archive-src"
    write_cifar(src)
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return md5(dest)


def test_cifar_download_and_checksum(tmp_path, server, monkeypatch):
    served, url = server
    good = make_cifar_archive(tmp_path, served / "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar_mod, "URL", url + "cifar-10-python.tar.gz")
    root = tmp_path / "data"
    # a wrong checksum: DatasetError naming the file, nothing kept, nothing extracted
    monkeypatch.setattr(cifar_mod, "MD5", "0" * 32)
    with pytest.raises(DatasetError, match="checksum mismatch for cifar-10-python.tar.gz"):
        load_dataset("cifar10", root, "train", download=True)
    assert not root.exists() or list(root.iterdir()) == []
    # the right one: fetched, extracted, loaded; the archive is kept
    monkeypatch.setattr(cifar_mod, "MD5", good)
    assert len(load_dataset("cifar10", root, "train", download=True)) == N_TRAIN
    assert md5(root / "cifar-10-python.tar.gz") == good
    assert len(load_dataset("cifar10", root, "test")) == N_TEST


def test_cifar_download_unreachable(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar_mod, "URL", dead_url("cifar-10-python.tar.gz"))
    with pytest.raises(DatasetError, match="could not download .*download it by hand to .*--data-root"):
        load_dataset("cifar10", tmp_path, "train", download=True)
    assert list(tmp_path.iterdir()) == []  # no partial file left


# -- download helpers --------------------------------------------------------------------------
def test_fetch_atomic_and_checked(tmp_path, server):
    served, url = server
    (served / "f.bin").write_bytes(b"hello" * 1000)
    good = md5(served / "f.bin")
    dest = tmp_path / "out" / "f.bin"
    assert fetch(url + "f.bin", dest, good) == dest and dest.read_bytes() == b"hello" * 1000
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]  # no temporary left
    assert fetch(dead_url(), dest, good) == dest  # already there with the right md5: no network
    with pytest.raises(DatasetError, match="checksum mismatch for g.bin"):
        fetch(url + "f.bin", tmp_path / "out" / "g.bin", "1" * 32)
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]
    with pytest.raises(DatasetError, match="could not download .*missing.bin"):
        fetch(url + "missing.bin", tmp_path / "out" / "m.bin", good)  # HTTP 404


def test_fetch_into_a_folder_it_cannot_write_says_so(tmp_path, server, monkeypatch):
    import tempfile

    served, url = server
    (served / "f.bin").write_bytes(b"hello")
    good = md5(served / "f.bin")
    (tmp_path / "out" / "taken.bin").mkdir(parents=True)  # a folder where the file should go
    with pytest.raises(DatasetError, match=r"cannot put the download in place at .*taken.bin: .*move what is there"):
        fetch(url + "f.bin", tmp_path / "out" / "taken.bin", good)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["taken.bin"]  # no temporary left

    def read_only(**kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # as a folder of someone else's gives (root writes anywhere)
    with pytest.raises(DatasetError, match=r"cannot write f.bin into .*: Permission denied; pass a writable"):
        fetch(url + "f.bin", tmp_path / "out" / "f.bin", good)


def test_fetch_removes_what_killed_downloads_left(tmp_path, server):
    served, url = server
    (served / "f.bin").write_bytes(b"data")
    stale, running, other = (tmp_path / ".f.bin.abc.part", tmp_path / ".f.bin.def.part", tmp_path / ".g.bin.x.part")
    for p in (stale, running, other):
        p.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    fetch(url + "f.bin", tmp_path / "f.bin", md5(served / "f.bin"))
    assert not stale.exists() and running.exists() and other.exists()  # another file's download is not ours


def _one_reply(reply: bytes) -> str:
    """A server on 127.0.0.1 that answers one request with ``reply`` and hangs up; its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def answer():
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)
        sock.close()

    threading.Thread(target=answer, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}/f"


def test_fetch_cut_off_mid_body_or_given_no_url_says_so_and_leaves_nothing(tmp_path):
    cut = _one_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % 1000 + b"A" * 1000
                     + b"\r\n1388\r\n" + b"A" * 100)  # the second chunk promises 5000 bytes, sends 100
    with pytest.raises(DatasetError, match="could not download .*IncompleteRead"):
        fetch(cut, tmp_path / "f.bin", "0" * 32, timeout=10)
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(20):
        with pytest.raises(DatasetError, match="could not download not a url: unknown url type"):
            fetch("not a url", tmp_path / "f.bin", "0" * 32)
    if fds is not None:  # each failed try closed its temporary file
        assert len(os.listdir("/proc/self/fd")) <= fds
    assert list(tmp_path.iterdir()) == []


def test_an_extraction_the_disk_refuses_does_not_blame_the_archive(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"data"))
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "cifar-10-batches-py").write_text("a file where the folder goes")
    with pytest.raises(DatasetError, match="could not extract .*File exists.*move away what is in the way") as e:
        safe_extract_tar(archive, tmp_path / "dest")
    assert "not a readable archive" not in str(e.value)
    (tmp_path / "dest" / "cifar-10-batches-py").unlink()
    assert safe_extract_tar(archive, tmp_path / "dest") == ["cifar-10-batches-py/data_batch_1"]
    archive.write_bytes(archive.read_bytes()[:700])  # cut inside the member: now it is the archive
    with pytest.raises(DatasetError, match="is not a readable archive"):
        safe_extract_tar(archive, tmp_path / "again")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_safe_extract_refuses_escapes(tmp_path, kind):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        ok = tarfile.TarInfo("cifar-10-batches-py/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        bad = tarfile.TarInfo({"dotdot": "cifar-10-batches-py/../../evil.txt", "absolute": "/tmp/ftprop-evil.txt",
                               "symlink": "cifar-10-batches-py/link"}[kind])
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
        else:
            bad.size = 4
        tar.addfile(bad, io.BytesIO(b"evil") if kind != "symlink" else None)
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError, match="refusing"):
        safe_extract_tar(archive, dest)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists()


def test_an_interrupted_extraction_leaves_whole_files_or_none(tmp_path, monkeypatch):
    import ftprop.data.download as dl

    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("d/one.bin", "d/two.bin"):
            info = tarfile.TarInfo(name)
            info.size = 3 * dl.CHUNK
            tar.addfile(info, io.BytesIO(b"x" * info.size))
    real, calls = dl.shutil.copyfileobj, []

    def interrupted(src, out, length):  # the second file is cut off after its first chunk
        calls.append(1)
        if len(calls) == 2:
            out.write(src.read(length))
            raise KeyboardInterrupt
        real(src, out, length)

    monkeypatch.setattr(dl.shutil, "copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        safe_extract_tar(archive, tmp_path / "dest")
    assert sorted(p.name for p in (tmp_path / "dest" / "d").iterdir()) == ["one.bin"]
    assert (tmp_path / "dest" / "d" / "one.bin").stat().st_size == 3 * dl.CHUNK
    monkeypatch.setattr(dl.shutil, "copyfileobj", real)
    assert safe_extract_tar(archive, tmp_path / "dest") == ["d/one.bin", "d/two.bin"]
    assert (tmp_path / "dest" / "d" / "two.bin").read_bytes() == b"x" * 3 * dl.CHUNK


# -- batches, augmentation and the validation split (ArrayDataset) -----------------------------
def test_shuffled_batches_cover_every_example_once(cifar_root):
    ds = load_dataset("cifar10", cifar_root, "train")
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        seen, labels = [], []
        for x, y in ds.batches(7, shuffle=True, generator=gen):
            raw = torch.round((x * ds.std.view(1, 3, 1, 1) + ds.mean.view(1, 3, 1, 1)) * 255)
            seen += ids(raw.to(torch.int64))
            labels += y.tolist()
        assert sorted(seen) == list(range(N_TRAIN)) and seen != list(range(N_TRAIN))
        assert labels == [ds.labels[i].item() for i in seen]
    sizes = [len(y) for _, y in ds.batches(7, shuffle=True, generator=gen, drop_last=True)]
    assert sizes == [7] * (N_TRAIN // 7)


def test_same_seed_same_batches_with_augmentation(cifar_root):
    ds = load_dataset("cifar10", cifar_root, "train")

    def run(seed):
        return list(ds.batches(8, shuffle=True, augment=True, generator=torch.Generator().manual_seed(seed)))

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    plain = next(ds.batches(N_TRAIN))[0]
    augmented = torch.cat([x for x, _ in ds.batches(N_TRAIN, augment=True, generator=torch.Generator())])
    assert not torch.equal(plain, augmented)  # augment=True does change the pixels


def test_crop_flip_only_shifts_and_flips():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (24, 3, 12, 10), generator=gen, dtype=torch.uint8)
    out = crop_flip(images, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for img, res in zip(padded, out):
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(res, (img.flip(-1) if f else img)[:, dy : dy + 12, dx : dx + 10])]
        assert matches, "output is not a shifted (and maybe flipped) window of the padded input"
        flips += matches[0][2]
    assert 0 < flips < len(images)


def test_cifar_crop_pad_option(cifar_root):
    """data.options.crop_pad = 0 flips only; 2 shifts by at most 2 pixels; a bad value is refused."""
    for pad in (0, 2):
        ds = load_dataset("cifar10", cifar_root, "train", crop_pad=pad)
        assert ds.crop_pad == pad and ds.to("cpu").crop_pad == pad
        x, _ = next(ds.batches(N_TRAIN, augment=True, generator=torch.Generator().manual_seed(5)))
        padded = torch.nn.functional.pad(ds.normalize(ds.images), (pad,) * 4, value=float("nan"))
        flips = 0
        for img, res in zip(padded, x):
            windows = [(img.flip(-1) if f else img)[:, dy : dy + 32, dx : dx + 32]
                       for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for f in (False, True)]
            hits = [i for i, w in enumerate(windows) if torch.equal(res[~w.isnan()], w[~w.isnan()])]
            assert hits, f"crop_pad={pad}: not a window of the padded image"
            flips += hits[0] % 2
        assert 0 < flips < N_TRAIN
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="crop_pad must be a whole number"):
            load_dataset("cifar10", cifar_root, "train", crop_pad=bad)
    with pytest.raises(ValueError, match="crop_pad = 32 lets a 32x32 crop miss the image entirely"):
        load_dataset("cifar10", cifar_root, "train", crop_pad=32)
    assert load_dataset("cifar10", cifar_root, "train", crop_pad=31).crop_pad == 31


def test_cut_out_blanks_one_clipped_square_per_image():
    """Each image loses exactly the pixels of one size x size square (clipped at the border), in
    every channel, and keeps all others; the squares' centres spread over the image."""
    x = torch.randn(400, 3, 9, 7).abs_().add_(1.0)  # no pixel is 0 before
    out = cut_out(x.clone(), torch.Generator().manual_seed(3), 4)
    areas = set()
    for img, res in zip(x, out):
        zero = res == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2]), "not the same square in each channel"
        rows, cols = zero[0].any(1).nonzero().view(-1), zero[0].any(0).nonzero().view(-1)
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        square = torch.zeros_like(zero[0])
        square[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        assert torch.equal(zero[0], square), "the blanked pixels are not one rectangle"
        assert len(rows) == 4 or rows.min() == 0 or rows.max() == 8, "clipped without touching the border"
        assert len(cols) == 4 or cols.min() == 0 or cols.max() == 6, "clipped without touching the border"
        assert torch.equal(res[~zero], img[~zero])
        areas.add((len(rows), len(cols)))
    assert (4, 4) in areas and len(areas) > 3  # whole squares and several clipped shapes


def test_cifar_cutout_option(cifar_root):
    """data.options.cutout blanks a square of each training image and nothing else: the same
    batches as without it (the same crops and flips) but for those pixels; off for evaluation;
    bad values are refused."""
    plain = load_dataset("cifar10", cifar_root, "train", crop_pad=2)
    cut = load_dataset("cifar10", cifar_root, "train", crop_pad=2, cutout=8)
    assert cut.cutout == 8 and cut.to("cpu").cutout == 8 and cut.subset(torch.arange(3), "val").cutout == 8
    x0, y0 = next(plain.batches(N_TRAIN, augment=True, generator=torch.Generator().manual_seed(5)))
    x1, y1 = next(cut.batches(N_TRAIN, augment=True, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(y0, y1)
    changed = x1 != x0
    assert torch.equal(x1[changed], torch.zeros_like(x1[changed]))
    per_image = changed.any(1).flatten(1).sum(1)
    assert (per_image > 0).all() and (per_image <= 64).all() and (per_image == 64).any()
    e0, _ = next(plain.batches(N_TRAIN))
    e1, _ = next(cut.batches(N_TRAIN))
    assert torch.equal(e0, e1), "cutout must not touch evaluation batches"
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="cutout must be a whole number"):
            load_dataset("cifar10", cifar_root, "train", cutout=bad)
    with pytest.raises(ValueError, match="cutout = 33 needs images of at least 33x33"):
        load_dataset("cifar10", cifar_root, "train", cutout=33)


def _smooth_images(n=200, seed=0):
    """uint8 images whose neighbouring pixels and channels are strongly correlated, as in photos."""
    g = torch.Generator().manual_seed(seed)
    grey = torch.nn.functional.avg_pool2d(torch.rand(n, 1, 36, 36, generator=g), 5, stride=1)  # 32x32
    colour = 0.15 * torch.rand(n, 3, 32, 32, generator=g)
    return ((0.8 * grey + colour) * 255).round().clamp(0, 255).to(torch.uint8)


def test_array_dataset_indexes_like_a_sequence():
    images = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)
    ds = ArrayDataset("toy", "train", images, torch.tensor([0, 1, 2]), ["a", "b", "c"], (0.5,) * 3, (0.25,) * 3)
    for i, j in [(-1, 2), (-3, 0), (1, 1)]:
        x, y = ds[i]
        assert y == j
        torch.testing.assert_close(x, (images[j] / 255 - 0.5) / 0.25)
    for i in (3, -4):
        with pytest.raises(IndexError):
            ds[i]


def test_patch_whitening_is_the_centre_row_of_zca():
    """The kernel is the centre pixel's rows of U diag(1/sqrt(lambda + eps)) U^T of the patch
    covariance, computed here independently (numpy, every patch at stride 2), scaled to unit output
    variance; with small eps it decorrelates the channels of a pixel and equalises their variance."""
    images = _smooth_images()
    ds = ArrayDataset("toy", "train", images, torch.zeros(len(images), dtype=torch.int64), ["a"],
                      (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    size, eps = 3, 1e-3
    kernel = patch_whitening(images, ds.normalize, size, eps)
    assert kernel.shape == (3, 3, size, size) and kernel.dtype == torch.float32
    x = ds.normalize(images).double().numpy()
    patches = np.stack([x[:, :, i : i + size, j : j + size].reshape(len(x), -1)
                        for i in range(0, 32 - size + 1, 2) for j in range(0, 32 - size + 1, 2)], 1).reshape(-1, 27)
    cov = patches.T @ patches / len(patches)
    lam, u = np.linalg.eigh(cov)
    zca = u @ np.diag(1 / np.sqrt(lam + eps)) @ u.T
    rows = zca[[c * size * size + size * size // 2 for c in range(3)]]
    rows /= np.sqrt(np.einsum("jd,de,je->j", rows, cov, rows))[:, None]
    np.testing.assert_allclose(kernel.reshape(3, -1).numpy(), rows, rtol=1e-3, atol=1e-4)
    # what it does to the data: channels at a pixel go from correlated to uncorrelated, unit variance
    ds.whitening = kernel
    inner = ds.normalize(images)[:, :, 2:-2, 2:-2].permute(1, 0, 2, 3).reshape(3, -1)
    raw = torch.from_numpy(x)[:, :, 2:-2, 2:-2].permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.corrcoef(raw)[0, 1] > 0.5  # the toy images' channels share their grey level
    torch.testing.assert_close(torch.cov(inner), torch.eye(3), atol=0.1, rtol=0)


def test_cifar_whiten_option(cifar_root):
    """data.options.whiten: off by default (the paper); on, one kernel from the training images
    serves every split and survives to() and subset(); batches are the normalised images convolved
    with it; bad values are refused."""
    assert load_dataset("cifar10", cifar_root, "train").whitening is None
    train = load_dataset("cifar10", cifar_root, "train", whiten=3)
    test = load_dataset("cifar10", cifar_root, "test", whiten=3, whiten_eps=0.1)
    val = load_dataset("cifar10", cifar_root, "val", whiten=3, val_fraction=0.2)
    assert train.whitening.shape == (3, 3, 3, 3)
    for other in (test, val, train.to("cpu"), train.subset(torch.arange(4), "train")):
        assert torch.equal(other.whitening, train.whitening)
    assert not torch.equal(load_dataset("cifar10", cifar_root, "test", whiten=3, whiten_eps=1.0).whitening,
                           train.whitening)
    x, _ = next(test.batches(N_TEST))
    plain = load_dataset("cifar10", cifar_root, "test").normalize(test.images)
    torch.testing.assert_close(x, torch.nn.functional.conv2d(plain, train.whitening, padding=1))
    for bad in (2, -3, 1.0, True):
        with pytest.raises(ValueError, match="whiten must be 0"):
            load_dataset("cifar10", cifar_root, "train", whiten=bad)
    with pytest.raises(ValueError, match="whiten_eps must be a positive finite number"):
        load_dataset("cifar10", cifar_root, "train", whiten=3, whiten_eps=0.0)
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").unlink()  # the test split's whitening needs them
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", cifar_root, "test", whiten=3)
    assert len(load_dataset("cifar10", cifar_root, "test")) == N_TEST
    with pytest.raises(ValueError, match="whitening must be a"):
        ArrayDataset("toy", "train", train.images, train.labels, train.classes, (0, 0, 0), (1, 1, 1),
                     whitening=torch.zeros(3, 3, 2, 2))


def test_val_split_is_seeded_disjoint_and_complete(cifar_root):
    def part(split, seed=1):
        return load_dataset("cifar10", cifar_root, split, val_fraction=0.2, val_seed=seed)

    train, val = part("train"), part("val")
    assert (len(train), len(val)) == (N_TRAIN - 6, 6) and val.split == "val"
    assert set(ids(train.images)).isdisjoint(ids(val.images))
    assert sorted(ids(train.images) + ids(val.images)) == list(range(N_TRAIN))
    assert ids(part("val").images) == ids(val.images) and ids(part("val", 2).images) != ids(val.images)
    assert len(load_dataset("cifar10", cifar_root, "test", val_fraction=0.2)) == N_TEST
    assert len(load_dataset("cifar10", cifar_root, "val", val_fraction=np.float32(0.2))) == 6
    for bad in ("0.2", True, 1.0, -0.1):
        with pytest.raises(ValueError, match=r"val_fraction must be a number in \[0, 1\), got"):
            load_dataset("cifar10", cifar_root, "train", val_fraction=bad)


# -- IDX (MNIST, Fashion-MNIST) ----------------------------------------------------------------
IDX_N = {"train": 12, "test": 5}


def write_idx(path, array, gz):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path = Path(str(path) + (".gz" if gz else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(folder, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, (img_name, lab_name) in idx_mod.FILES.items():
        n = IDX_N[split]
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        out[split] = (write_idx(Path(folder) / img_name, images, gz), write_idx(Path(folder) / lab_name, labels, gz),
                      images, labels)
    return out


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("where", ["", "{name}", "{name}/raw"])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_loads(tmp_path, name, where, gz):
    files = write_mnist(tmp_path / where.format(name=name), gz)
    for split in ("train", "test"):
        ds = load_dataset(name, tmp_path, split)
        images, labels = files[split][2], files[split][3]
        assert len(ds) == IDX_N[split] and ds.input_shape == (1, 28, 28) and ds.augment is None
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images)) and ds.labels.tolist() == labels.tolist()
        assert ds.num_classes == 10
    mean, std = idx_mod.SOURCES[name]["mean"][0], idx_mod.SOURCES[name]["std"][0]
    assert (mean, std) == ((0.1307, 0.3081) if name == "mnist" else (0.2860406, 0.3530242))
    x, _ = next(ds.batches(3, augment=True, generator=torch.Generator()))  # no augmentation for MNIST-style data
    torch.testing.assert_close(x, (ds.images[:3].float() / 255 - mean) / std)


def test_idx_own_folder_wins_over_root(tmp_path):
    write_mnist(tmp_path, seed=1)  # files straight in root ...
    fashion = write_mnist(tmp_path / "fashion-mnist", seed=2)  # ... and in the dataset's own folder
    ds = load_dataset("fashion-mnist", tmp_path, "test")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(fashion["test"][2]))


MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 1009, 974]  # MNIST's uneven test classes


def write_official_size_test_split(folder, counts):
    labels = np.repeat(np.arange(10, dtype=np.uint8), counts)
    write_idx(Path(folder) / "t10k-images-idx3-ubyte", np.zeros((len(labels), 28, 28), np.uint8), gz=True)
    write_idx(Path(folder) / "t10k-labels-idx1-ubyte", labels, gz=True)


def test_mnist_and_fashion_mnist_files_are_told_apart_outside_their_own_folders(tmp_path, server, monkeypatch):
    """Their files share names: official-size labels in a bare root are checked to be the asked dataset's."""
    write_official_size_test_split(tmp_path / "a", MNIST_TEST_COUNTS)
    assert len(load_dataset("mnist", tmp_path / "a", "test")) == 10000
    with pytest.raises(DatasetError, match=r"looks like mnist's test labels, not fashion-mnist's.*own folder"):
        load_dataset("fashion-mnist", tmp_path / "a", "test")
    write_official_size_test_split(tmp_path / "b", [1000] * 10)
    assert len(load_dataset("fashion-mnist", tmp_path / "b", "test")) == 10000
    with pytest.raises(DatasetError, match=r"looks like fashion-mnist's test labels, not mnist's"):
        load_dataset("mnist", tmp_path / "b", "test")
    # with --download, the right files are fetched into the dataset's own folder and used
    served, url = server
    write_official_size_test_split(served, [1000] * 10)
    sums = {p.name: md5(p) for p in served.iterdir()}
    monkeypatch.setitem(idx_mod.SOURCES["fashion-mnist"], "url", url)
    monkeypatch.setitem(idx_mod.SOURCES["fashion-mnist"], "md5", sums)
    ds = load_dataset("fashion-mnist", tmp_path / "a", "test", download=True)
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
    assert (tmp_path / "a" / "fashion-mnist" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()
    # MNIST's files in Fashion-MNIST's own folder, searched before its raw/: the download is what is read
    write_official_size_test_split(tmp_path / "c" / "fashion-mnist", MNIST_TEST_COUNTS)
    ds = load_dataset("fashion-mnist", tmp_path / "c", "test", download=True)
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
    ds = load_dataset("fashion-mnist", tmp_path / "c", "test")  # and later, without --download, too
    assert torch.bincount(ds.labels).tolist() == [1000] * 10


def test_fashion_mnist_system_fallback(tmp_path, monkeypatch):
    files = write_mnist(tmp_path / "usr-share")
    monkeypatch.setitem(idx_mod.SOURCES["fashion-mnist"], "fallbacks", (tmp_path / "usr-share",))
    ds = load_dataset("fashion-mnist", tmp_path / "empty-root", "train")
    assert ds.labels.tolist() == files["train"][3].tolist()
    with pytest.raises(DatasetError, match="mnist train files .*looked in: .*--download"):
        load_dataset("mnist", tmp_path / "empty-root", "train")  # MNIST has no such fallback


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated(tmp_path, gz):
    files = write_mnist(tmp_path, gz)
    path = files["train"][0]
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DatasetError, match=f"{path.name}.*truncated"):
        load_dataset("mnist", tmp_path, "train")


def test_idx_bad_header_and_mismatches(tmp_path):
    files = write_mnist(tmp_path, gz=False)
    img, lab = files["train"][0], files["train"][1]
    original = img.read_bytes()
    img.write_bytes(b"\x12\x34" + original[2:])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.*bad magic"):
        load_dataset("mnist", tmp_path, "train")
    img.write_bytes(original + b"\0")
    with pytest.raises(DatasetError, match="longer than its header"):
        load_dataset("mnist", tmp_path, "train")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 27, 28)), gz=False)
    with pytest.raises(DatasetError, match="N x 28 x 28"):
        load_dataset("mnist", tmp_path, "train")
    img.write_bytes(original)
    write_idx(lab, np.zeros(11), gz=False)
    with pytest.raises(DatasetError, match="12 images but .* 11 labels"):
        load_dataset("mnist", tmp_path, "train")
    write_idx(lab, np.full(12, 10), gz=False)
    with pytest.raises(DatasetError, match="label 10, outside"):
        load_dataset("mnist", tmp_path, "train")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x1f\x8b not gzip")
    (tmp_path / "t10k-images-idx3-ubyte").rename(tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", tmp_path, "test")


def test_idx_header_whose_size_overflows_64_bits_is_refused(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + struct.pack(">4I", *[65536] * 4))  # 2^64 values: int64 wraps to 0
    with pytest.raises(DatasetError, match="huge-idx3-ubyte is truncated"):
        idx_mod.read_idx(path)


@pytest.mark.parametrize("loader", ["cifar10", "digits", "mnist", "imagefolder"])
def test_a_registered_loader_called_directly_refuses_a_split_it_has_not(tmp_path, loader):
    from ftprop.data import DATASETS, check_dataset

    fn = DATASETS[check_dataset(loader)]
    for split in ("val", "Train"):  # not the test set under another name
        with pytest.raises(ValueError, match=f"split must be 'train' or 'test', got '{split}'"):
            fn(tmp_path, split)
    if loader == "cifar10":  # options still go by position too, as to the function before it was wrapped
        write_cifar(tmp_path)
        assert len(fn(tmp_path, "test", False, 2)) == len(fn(tmp_path, "test"))


def test_idx_download(tmp_path, server, monkeypatch):
    served, url = server
    write_mnist(served, gz=True)
    sums = {p.name: md5(p) for p in served.iterdir()}
    monkeypatch.setitem(idx_mod.SOURCES["mnist"], "url", url)
    monkeypatch.setitem(idx_mod.SOURCES["mnist"], "md5", sums)
    ds = load_dataset("mnist", tmp_path / "data", "test", download=True)
    assert len(ds) == IDX_N["test"]
    assert sorted(p.name for p in (tmp_path / "data" / "mnist" / "raw").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    monkeypatch.setitem(idx_mod.SOURCES["mnist"], "md5", dict(sums, **{"train-labels-idx1-ubyte.gz": "f" * 32}))
    with pytest.raises(DatasetError, match="checksum mismatch for train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", tmp_path / "data", "train", download=True)
    assert not (tmp_path / "data" / "mnist" / "raw" / "train-labels-idx1-ubyte.gz").exists()


def test_official_checksums_are_recorded():
    for name in ("mnist", "fashion-mnist"):
        assert sorted(idx_mod.SOURCES[name]["md5"]) == sorted(f + ".gz" for pair in idx_mod.FILES.values()
                                                              for f in pair)
    assert idx_mod.SOURCES["mnist"]["md5"]["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert cifar_mod.MD5 == "c58f30108f718f92721af3b95e74349a"


# -- image folders -----------------------------------------------------------------------------
RESIZE, CROP = 20, 16
CLASSES = ["cat", "dog", "emu"]
SIZES = [(30, 40), (40, 30), (20, 20), (25, 33)]  # (w, h)


def _picture(w, h, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (w + h)], -1)
    return Image.fromarray(np.clip(base + rng.integers(0, 40, (h, w, 3)), 0, 255).astype(np.uint8))


def make_folder(root, n_train=3, n_val=2, classes=CLASSES):
    k = 0
    for split, n in (("train", n_train), ("val", n_val)):
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = SIZES[k % len(SIZES)]
                ext = ("png", "JPEG", "jpg")[k % 3]
                _picture(w, h, k).save(root / split / cls / f"img{i}.{ext}")
                k += 1
    return root


@pytest.fixture
def folder_root(tmp_path):
    return make_folder(tmp_path / "imgs")


def load_folder(root, split="train", **kw):
    return load_dataset("imagefolder", root, split, resize=RESIZE, crop=CROP, **{"workers": 0, **kw})


def resized(path):
    with Image.open(path) as im:
        img = im.convert("RGB")
    w, h = img.size
    size = (RESIZE, RESIZE * h // w) if w <= h else (RESIZE * w // h, RESIZE)
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR))


def to_uint8(ds, x):
    mean, std = torch.tensor(if_mod.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(if_mod.IMAGENET_STD).view(1, 3, 1, 1)
    return torch.round((x * std + mean) * 255).to(torch.uint8)


def test_imagefolder_contract_and_centre_crop(folder_root):
    ds = load_folder(folder_root, "test")
    assert (len(ds), ds.classes, ds.num_classes, ds.input_shape) == (6, CLASSES, 3, (3, CROP, CROP))
    assert ds.split == "test" and ds.device == torch.device("cpu")
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    xs, ys = zip(*ds.batches(4))
    assert [len(y) for y in ys] == [4, 2] and xs[0].shape == (4, 3, CROP, CROP) and xs[0].dtype == torch.float32
    x = torch.cat(xs)
    for i, path in enumerate(ds.paths):
        arr = resized(path)
        h, w = arr.shape[:2]
        top, left = round((h - CROP) / 2), round((w - CROP) / 2)
        want = torch.from_numpy(arr[top : top + CROP, left : left + CROP].copy()).permute(2, 0, 1)
        mean = torch.tensor(if_mod.IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(if_mod.IMAGENET_STD).view(3, 1, 1)
        torch.testing.assert_close(x[i], (want.float() / 255 - mean) / std)
    torch.testing.assert_close(ds[1][0], x[1])
    assert ds[1][1] == 0


def test_imagefolder_starts_no_more_workers_than_usable_cpus(folder_root, monkeypatch):
    started = []

    class Recording(if_mod.DataLoader):
        def __init__(self, *args, num_workers=0, **kw):
            started.append(num_workers)
            super().__init__(*args, num_workers=num_workers, **kw)

    monkeypatch.setattr(if_mod, "DataLoader", Recording)
    monkeypatch.setattr(if_mod, "_usable_cpus", lambda: 1)
    for asked in (4, 0):
        list(load_folder(folder_root, workers=asked).batches(4))
    assert started == [1, 0]


def test_imagefolder_train_crops_are_windows_and_reproducible(folder_root):
    ds = load_folder(folder_root)
    assert len(ds) == 9

    def run(seed, workers=0):
        d = ds if workers == 0 else load_folder(folder_root, workers=workers)
        return list(d.batches(4, shuffle=True, augment=True, generator=torch.Generator().manual_seed(seed)))

    a = run(5)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, run(5, workers=2)))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, run(6)))
    # every output is a CROP x CROP window (maybe mirrored) of the resized image; each image once
    x, y = torch.cat([b[0] for b in a]), torch.cat([b[1] for b in a])
    found, flipped = [], 0
    for img, label in zip(to_uint8(ds, x), y):
        hits = []
        for i, path in enumerate(ds.paths):
            arr = torch.from_numpy(resized(path).copy()).permute(2, 0, 1)
            h, w = arr.shape[1:]
            for f in (False, True):
                src = arr.flip(-1) if f else arr
                hits += [(i, f) for t in range(h - CROP + 1) for s in range(w - CROP + 1)
                         if torch.equal(src[:, t : t + CROP, s : s + CROP], img)]
        assert hits, "an augmented image is not a window of its resized source"
        found.append(hits[0][0])
        flipped += hits[0][1]
        assert ds.labels[hits[0][0]] == label
    assert sorted(found) == list(range(len(ds))) and 0 < flipped < len(ds)


def test_imagefolder_shuffle_covers_each_once(folder_root):
    ds = load_folder(folder_root, "test")
    ordered = torch.cat([x for x, _ in ds.batches(4)])
    shuffled, labels = zip(*ds.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    shuffled, labels = torch.cat(shuffled), torch.cat(labels)
    where = [next(j for j in range(len(ds)) if torch.equal(s, ordered[j])) for s in shuffled]
    assert sorted(where) == list(range(len(ds))) and where != list(range(len(ds)))
    assert labels.tolist() == ds.labels[where].tolist()


@pytest.mark.parametrize("kind", ["cifar10", "imagefolder"])
def test_start_skips_batches_with_the_same_randomness(kind, request):
    """What a run resumed mid-epoch relies on: batches(start=k) == the full epoch's batches[k:]."""
    if kind == "cifar10":
        ds, size = load_dataset("cifar10", request.getfixturevalue("cifar_root"), "train"), 7
    else:
        ds, size = load_folder(request.getfixturevalue("folder_root"), "train"), 3

    def run(start):
        gen = torch.Generator().manual_seed(5)
        return list(ds.batches(size, shuffle=True, augment=True, generator=gen, start=start))

    full, rest = run(0), run(2)
    assert len(rest) == len(full) - 2
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(full[2:], rest))


@pytest.mark.parametrize("kind", ["cifar10", "imagefolder"])
def test_batches_leave_the_global_rng_alone(kind, request):
    """Dropout draws from the global RNG, which a mid-epoch resume restores: the batches must not
    draw from it (a DataLoader does, for its workers' seed, unless it has a generator of its own)."""
    if kind == "cifar10":
        ds = load_dataset("cifar10", request.getfixturevalue("cifar_root"), "train")
    else:
        ds = load_folder(request.getfixturevalue("folder_root"), "train")
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for _ in ds.batches(3, shuffle=True, augment=True, generator=torch.Generator().manual_seed(1), start=1):
        pass
    assert torch.equal(torch.get_rng_state(), before)


def test_imagefolder_val_split_and_to(folder_root):
    val = load_folder(folder_root, "val", val_fraction=0.34, val_seed=0)
    train = load_folder(folder_root, "train", val_fraction=0.34, val_seed=0)
    assert (len(train), len(val), val.split) == (6, 3, "val")
    assert set(train.paths).isdisjoint(val.paths) and len(set(train.paths) | set(val.paths)) == 9
    moved = val.to("cpu")
    assert moved is not val and moved.device == torch.device("cpu") and moved.paths == val.paths
    x, y = next(moved.batches(8))
    assert x.shape == (3, 3, CROP, CROP) and y.tolist() == val.labels.tolist()


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetError, match="train images folder .*cannot be downloaded"):
        load_folder(tmp_path / "missing")
    (tmp_path / "flat" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class folders"):
        load_folder(tmp_path / "flat")
    root = make_folder(tmp_path / "a", n_train=1, n_val=1)
    (root / "train" / "fox").mkdir()
    (root / "train" / "fox" / "notes.txt").write_text("no images here")
    (root / "val" / "fox").mkdir()
    with pytest.raises(DatasetError, match="class folder .*fox holds no images"):
        load_folder(root)
    root = make_folder(tmp_path / "b", n_train=1, n_val=1)
    (root / "train" / "yak").mkdir()
    _picture(20, 20, 0).save(root / "train" / "yak" / "y.png")
    for split in ("train", "test"):
        with pytest.raises(DatasetError, match="class folders .* differ .*only in train/: yak"):
            load_folder(root, split)
    with pytest.raises(ValueError, match="crop <= resize"):
        load_dataset("imagefolder", root, resize=100, crop=224)


def test_imagefolder_counts_a_linked_folder_once(tmp_path):
    root = make_folder(tmp_path / "a", n_train=2, n_val=1)
    counts = torch.bincount(load_folder(root).labels).tolist()
    first = root / "train" / sorted(p.name for p in (root / "train").iterdir())[0]
    os.symlink(".", first / "loop")  # a link back up: walked through, it repeats the folder's images ~40 times
    (first / "more").mkdir()
    _picture(20, 20, 1).save(first / "more" / "m.png")
    os.symlink(first / "more", first / "alias")  # one folder of the class reached twice
    assert torch.bincount(load_folder(root).labels).tolist() == [counts[0] + 1, *counts[1:]]


@pytest.mark.parametrize("workers", [0, 2])
def test_imagefolder_corrupt_image_names_the_file(tmp_path, workers):
    root = make_folder(tmp_path / "c", n_train=2, n_val=1)
    bad = root / "train" / "dog" / "img0.png"
    buf = io.BytesIO()
    _picture(30, 30, 1).save(buf, "JPEG")
    (root / "train" / "dog" / "img1.JPEG").write_bytes(buf.getvalue()[:200])  # truncated JPEG
    bad.write_bytes(b"this is not an image")
    ds = load_folder(root, workers=workers)
    with pytest.raises(DatasetError, match=r"cannot read image .*dog.img[01]\.(png|JPEG)") as e:
        for _ in ds.batches(2, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0)):
            pass
    assert "Traceback" not in str(e.value)


def test_imagefolder_reads_16_bit_grey_pngs_by_their_top_bits(tmp_path):
    root = make_folder(tmp_path / "d", n_train=1, n_val=1)
    for cls in CLASSES:  # 0x80ff: its top byte is 128; Pillow's convert("RGB") would clip it to 255
        for split in ("train", "val"):
            path = next((root / split / cls).iterdir())
            path.unlink()
            Image.fromarray(np.full((24, 22), 0x80FF, dtype=np.uint16)).save(path.with_suffix(".png"))
    with Image.open(next((root / "val" / "cat").iterdir())) as im:
        assert im.mode.startswith("I")  # the file really is 16-bit
    test = load_folder(root, "test")  # the val/ folder
    x, _ = next(test.batches(3, shuffle=False, augment=False))
    assert to_uint8(test, x).unique().tolist() == [128]


def test_to_rgb8_refuses_pixels_without_a_known_range():
    ramp = np.arange(12, dtype=np.int64).reshape(3, 4) * 6000  # up to 66,000: beyond 16 bits
    with pytest.raises(ValueError, match=r"I image with values outside 0\.\.65535 \(here 0\.\.66000\)"):
        if_mod.to_rgb8(Image.fromarray(ramp.astype(np.int32)))
    with pytest.raises(ValueError, match="floating-point image"):
        if_mod.to_rgb8(Image.fromarray(np.zeros((2, 2), np.float32)))
    grey = if_mod.to_rgb8(Image.fromarray((ramp // 2).astype(np.int32)))  # a 32-bit image in 16-bit range
    assert np.asarray(grey)[..., 0].tolist() == (ramp // 2 >> 8).tolist() and grey.mode == "RGB"


@pytest.mark.parametrize("option", [{"crop": 32.7}, {"workers": 1.5}, {"workers": True}])
def test_imagefolder_options_must_be_whole_numbers(tmp_path, option):
    with pytest.raises(ValueError, match=f"data.options.{next(iter(option))} must be a whole number"):
        load_dataset("imagefolder", tmp_path, "train", **{"resize": 40, "crop": 32, "workers": 0, **option})


@pytest.mark.parametrize("eps", [float("inf"), float("nan"), 0.0, "0.1", True])
def test_whitening_damping_must_be_a_positive_finite_number(tmp_path, eps):
    from ftprop.data import load_dataset

    with pytest.raises(ValueError, match="whiten_eps must be a positive finite number"):  # before any file is read
        load_dataset("cifar10", root=tmp_path, whiten=3, whiten_eps=eps)
