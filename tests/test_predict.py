"""Inference on raw images: load_model(preprocess=True), read_inputs and ``ftprop predict``."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ftprop import load_model
from ftprop.cli import main
from ftprop.config import Config, apply_overrides
from ftprop.data import ArrayDataset, load_dataset
from ftprop.data.imagefolder import ImageFolderDataset, _Decode
from ftprop.engine import evaluate, train
from ftprop.predict import Classifier, Preprocess, predict, read_inputs
from ftprop.runs import RunDirError, load_checkpoint, save_checkpoint

SMALL = ["model.options.hidden=[32]", "train.batch_size=128", "train.tensorboard=false", "train.device=cpu",
         "train.epochs=1"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("predict") / "digits"
    result = train(apply_overrides(Config(name="t"), SMALL + ["train.ema_decay=0.9"]), run, log=None)
    return run, result


def as_png(digit: torch.Tensor, path) -> None:
    """A stored digit (1 x 8 x 8, 0..16) as an 8-bit grey PNG, 0..255."""
    Image.fromarray((digit[0].numpy() / 16 * 255).round().astype(np.uint8)).save(path)  # / first: uint8 * 255 wraps


def test_the_classifier_takes_stored_images_and_gives_the_networks_outputs(digits_run):
    run, result = digits_run
    test = load_dataset("digits", split="test")
    model = load_model(run, preprocess=True)
    assert isinstance(model, Classifier) and not model.training
    assert model.classes == test.classes and model.input_shape == test.input_shape
    with torch.no_grad():
        raw = model(test.images)  # uint8, as the dataset stores them
        assert torch.equal(raw, load_model(run)(test.normalize(test.images)))
        assert torch.equal(model(test.images.float()), raw)  # floats in the same 0..16 range
    assert (raw.argmax(1) == test.labels).float().mean().item() == pytest.approx(result.history[-1]["test_acc"])
    assert evaluate(model.network, test)["acc"] == result.history[-1]["test_acc"]
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\).*images\[None\]"):
        model(test.images[0])
    with pytest.raises(TypeError, match="uint8 or floating point"):
        model(test.images.long())


def test_whitening_is_part_of_the_recorded_preprocessing(tmp_path):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 4, (64,), generator=gen)
    kernel = torch.randn(3, 3, 3, 3, generator=gen)
    ds = ArrayDataset("tiny", "train", images, labels, list("abcd"), [0.5, 0.4, 0.3], [0.2, 0.25, 0.3],
                      whitening=kernel)
    cfg = apply_overrides(Config(name="t"), SMALL)
    train(cfg, tmp_path / "r", data={"train": ds, "test": ds}, log=None)
    model = load_model(tmp_path / "r", preprocess=True)
    assert torch.equal(model.preprocess.whitening, kernel)
    with torch.no_grad():
        assert torch.equal(model(images), model.network(ds.normalize(images)))
    # and without it the outputs differ: the kernel is applied, not just stored
    assert not torch.equal(Preprocess({**ds.inputs(), "whitening": None}, (3, 8, 8))(images), ds.normalize(images))


def test_an_image_file_is_read_as_the_dataset_stores_its_images(tmp_path, digits_run):
    model = load_model(digits_run[0], preprocess=True)  # 1 x 8 x 8 grey, pixels 0..16
    test = load_dataset("digits", split="test")
    for i in range(40):  # a stored digit saved as a PNG comes back as it was stored
        as_png(test.images[i], tmp_path / f"{i}.png")
        x, names = read_inputs(tmp_path / f"{i}.png", model)
        assert names == [str(tmp_path / f"{i}.png")] and x.dtype == torch.uint8 and torch.equal(x[0], test.images[i])
    Image.new("RGB", (30, 20), (100, 150, 200)).save(tmp_path / "big.png")
    big, _ = read_inputs(tmp_path / "big.png", model)  # colour, another size: grey, resized to 8 x 8
    grey = int(np.array(Image.new("RGB", (1, 1), (100, 150, 200)).convert("L"))[0, 0])
    assert torch.equal(big, torch.full((1, 1, 8, 8), round(grey * 16 / 255), dtype=torch.uint8))


def test_unreadable_images_are_refused_naming_the_file(tmp_path, digits_run, monkeypatch):
    import PIL.Image

    model = load_model(digits_run[0], preprocess=True)
    Image.new("F", (8, 8)).save(tmp_path / "floats.tiff")
    with pytest.raises(ValueError, match=r"floats\.tiff: a floating-point image"):
        read_inputs(tmp_path / "floats.tiff", model)
    Image.new("L", (64, 64)).save(tmp_path / "huge.png")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)  # 4096 pixels: a "decompression bomb" now
    with pytest.raises(ValueError, match=r"huge\.png: not an image Pillow can read"):
        read_inputs(tmp_path / "huge.png", model)


def test_a_colour_image_is_resized_to_the_networks_input(tmp_path):
    inputs = {"scale": 255.0, "mean": [0.5] * 3, "std": [0.25] * 3, "whitening": None, "resize": None, "crop": None}
    model = Classifier(Preprocess(inputs, (3, 32, 32)), torch.nn.Flatten(), list("ab"), inputs)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    img.save(tmp_path / "c.png")
    x, _ = read_inputs(tmp_path / "c.png", model)
    expected = np.array(img.resize((32, 32), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert x.dtype == torch.uint8 and torch.equal(x[0], torch.from_numpy(expected))  # channels first, 0..255 kept


def test_an_image_folder_run_reads_files_with_its_test_transform(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    ds = ImageFolderDataset("f", "test", [str(tmp_path / "x.png")], [0], ["a", "b"], resize=40, crop=32)
    assert ds.inputs()["resize"] == 40 and ds.inputs()["crop"] == 32
    model = Classifier(Preprocess(ds.inputs(), ds.input_shape), torch.nn.Flatten(), ds.classes, ds.inputs())
    x, _ = read_inputs(tmp_path / "x.png", model)
    assert torch.equal(x[0], _Decode(ds.paths, [0], 40, 32)[(0, None)][0])  # the centre crop the test split uses
    assert torch.equal(model.preprocess(x), ds.normalize(x))


def test_npy_inputs_and_what_is_refused(tmp_path, digits_run):
    model = load_model(digits_run[0], preprocess=True)
    test = load_dataset("digits", split="test")
    np.save(tmp_path / "one.npy", test.images[0].numpy())
    np.save(tmp_path / "three.npy", test.images[:3].numpy().astype(np.float64))
    x, names = read_inputs(tmp_path / "one.npy", model)
    assert torch.equal(x, test.images[:1]) and names == [str(tmp_path / "one.npy")]
    x, names = read_inputs(tmp_path / "three.npy", model)
    assert x.dtype == torch.float32 and torch.equal(x, test.images[:3].float()) and len(names) == 3
    np.save(tmp_path / "big_endian.npy", test.images[:2].numpy().astype(">u2"))
    assert torch.equal(read_inputs(tmp_path / "big_endian.npy", model)[0], test.images[:2].float())
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="a batch of no inputs"):
        read_inputs(tmp_path / "empty.npy", model)
    for bad in (test.images[:2].numpy().astype(np.int64) * 16, -test.images[:2].numpy().astype(np.int64)):
        np.save(tmp_path / "range.npy", bad)  # 0..255 given to a 0..16 dataset; negative values
        with pytest.raises(ValueError, match=r"outside the 0\.\.16 the dataset stores"):
            read_inputs(tmp_path / "range.npy", model)
    np.savez(tmp_path / "archive.npz", a=np.zeros((1, 8, 8)))
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    with pytest.raises(ValueError, match="an archive of arrays"):
        read_inputs(tmp_path / "archive.npy", model)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 64)))
    with pytest.raises(ValueError, match=r"shape \(2, 64\).*\(1, 8, 8\)"):
        read_inputs(tmp_path / "wrong.npy", model)
    np.save(tmp_path / "nan.npy", np.full((1, 8, 8), np.nan))
    with pytest.raises(ValueError, match="finite pixel values"):
        read_inputs(tmp_path / "nan.npy", model)
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image Pillow can read"):
        read_inputs(tmp_path / "junk.png", model)
    with pytest.raises(FileNotFoundError, match="no input file"):
        read_inputs(tmp_path / "none.png", model)
    flat = Classifier(Preprocess({"scale": 255.0, "mean": [0.5], "std": [0.5]}, (60,)), torch.nn.Identity(), ["a"],
                      {"scale": 255.0, "mean": [0.5], "std": [0.5]})
    with pytest.raises(ValueError, match=r"flat inputs of 60 values.*\.npy array of shape \(60,\)"):
        read_inputs(tmp_path / "junk.png", flat)


def test_predict_lists_the_most_likely_classes(digits_run):
    model = load_model(digits_run[0], preprocess=True)
    test = load_dataset("digits", split="test")
    rows = predict(model, test.images[:5], top=20, batch_size=2)  # more than the 10 classes: all of them
    assert len(rows) == 5 and all(len(r) == 10 for r in rows)
    assert all(sum(p for _, p in r) == pytest.approx(1.0, abs=1e-5) for r in rows)
    assert all([p for _, p in r] == sorted((p for _, p in r), reverse=True) for r in rows)
    with torch.no_grad():
        assert [r[0][0] for r in rows] == [model.classes[i] for i in model(test.images[:5]).argmax(1).tolist()]
    with pytest.raises(ValueError, match="top must be"):
        predict(model, test.images[:1], top=0)
    for bad in (0, -1):  # (0 failed inside range(); -1 returned no rows)
        with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
            predict(model, test.images[:1], batch_size=bad)
    model.train()  # (BN's batch statistics would make each answer depend on its batch)
    one, five = predict(model, test.images[:5], batch_size=1), predict(model, test.images[:5], batch_size=5)
    assert [[c for c, _ in r] for r in one] == [[c for c, _ in r] for r in five]
    assert [p for r in one for _, p in r] == pytest.approx([p for r in five for _, p in r], abs=1e-6)
    assert model.training  # its mode is put back


def test_a_run_trained_under_bf16_predicts_under_bf16(tmp_path):
    run = tmp_path / "bf16"
    train(apply_overrides(Config(name="t"), SMALL + ["train.bf16=true"]), run, log=None)
    model = load_model(run, preprocess=True)
    test = load_dataset("digits", split="test")
    assert model.bf16 and not model.training
    with torch.no_grad():
        got = model(test.images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            want = model.network(model.preprocess(test.images)).float()
    assert got.dtype == torch.float32 and torch.equal(got, want)
    report = evaluate(model.network, test, bf16=True)  # as the run evaluated itself
    assert (got.argmax(1) == test.labels).float().mean().item() == pytest.approx(report["acc"])


def test_the_predict_command(tmp_path, digits_run, capsys):
    run = digits_run[0]
    test = load_dataset("digits", split="test")
    np.save(tmp_path / "two.npy", test.images[:2].numpy())
    as_png(test.images[2], tmp_path / "d.png")
    assert main(["predict", str(run), str(tmp_path / "two.npy"), str(tmp_path / "d.png"), "--json", "--top", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["input"] for o in out] == [f"{tmp_path / 'two.npy'}[0]", f"{tmp_path / 'two.npy'}[1]",
                                         str(tmp_path / "d.png")]
    for live in (False, True):  # each input's own classes and probabilities, from the weights asked for
        if live:
            assert main(["predict", str(run), str(tmp_path / "two.npy"), str(tmp_path / "d.png"), "--json",
                         "--top", "2", "--live"]) == 0
            out_live = json.loads(capsys.readouterr().out)
            assert out_live != out
        expected = predict(load_model(run, preprocess=True, live=live), test.images[:3], top=2)
        got = out_live if live else out
        assert [[(c["class"], pytest.approx(c["p"])) for c in o["top"]] for o in got] == expected
    assert main(["predict", str(run), str(tmp_path / "two.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{tmp_path / 'two.npy'}[0]: ") and lines[0].endswith("%")
    assert main(["predict", str(run), str(tmp_path / "missing.png")]) == 1
    assert "no input file" in capsys.readouterr().err


def test_a_checkpoint_without_the_input_record_is_refused_with_advice(tmp_path):
    train(apply_overrides(Config(name="t"), SMALL), tmp_path / "r", log=None)
    state = load_checkpoint(tmp_path / "r")
    del state["data"]["inputs"]  # as an ftprop before this record wrote it
    save_checkpoint(tmp_path / "r", state)
    assert load_model(tmp_path / "r") is not None  # the network alone still loads
    with pytest.raises(RunDirError, match="does not record how its dataset's images become inputs"):
        load_model(tmp_path / "r", preprocess=True)
