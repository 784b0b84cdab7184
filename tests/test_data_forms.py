"""The field's data sets as ``--data``: image folders, CIFAR python batches and dataset objects.

Image folders are checked against PIL called directly in this file (RGB
conversion, torchvision's Resize and CenterCrop rules written out here),
CIFAR batches against the arrays pickled into them, and every form end to
end: one ``smoothcert sample`` command into a store that ``certify`` reads.
"""
from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from smoothcert import cli
from smoothcert.sampler import testing as T
from smoothcert.sampler.data import fingerprint, load_data
from smoothcert.sampler.run import sample
from smoothcert.store import open_store

RUN = dict(sigma=0.25, n0=5, n=40, batch_size=16, device="cpu", progress=False, log=lambda s: None)


def rgb_of(path) -> np.ndarray:
    """The image as torchvision's ImageFolder loader gives it, then ToTensor: float32 (3, H, W) in [0, 1]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / np.float32(255)


def resize_crop_of(path, resize, crop) -> np.ndarray:
    """Resize(resize), CenterCrop(crop), ToTensor on the RGB image, written out from torchvision's rules."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    w, h = im.size
    if w <= h:
        size = (resize, int(resize * h / w))
    else:
        size = (int(resize * w / h), resize)
    if size != (w, h):
        im = im.resize(size, Image.BILINEAR)
    w, h = im.size
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    a = np.asarray(im, dtype=np.float32)[top:top + crop, left:left + crop]
    return a.transpose(2, 0, 1) / np.float32(255)


def image(path: Path, mode: str, size=(6, 6), seed=0, fmt=None):
    """Write a random image of ``mode`` and ``size`` (width, height) to ``path``."""
    rng = np.random.default_rng(seed)
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 1024, (h, w), dtype=np.uint16))
    elif mode in ("P", "1"):
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    else:
        bands = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
        im = Image.frombytes(mode, (w, h), rng.integers(0, 256, (h, w, bands), dtype=np.uint8).tobytes())
    im.save(path, fmt)
    with Image.open(path) as back:
        assert back.mode == mode, (path, back.mode)
    return path


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def one_line_error(res, needle):
    assert res.exit_code != 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert any(ln.startswith("smoothcert: error:") and needle in ln for ln in lines), res.output
    assert "Traceback" not in res.output


# ------------------------------------------------------------------ image folders: pixels
def test_a_greyscale_first_image_does_not_make_the_folder_one_channel(tmp_path):
    """ImageNet val holds greyscale JPEGs; the first one must not turn every input into 1 x H x W."""
    first = image(tmp_path / "a" / "0.png", "L", seed=1)
    rest = [image(tmp_path / "a" / "1.png", "RGB", seed=2), image(tmp_path / "b" / "2.png", "RGB", seed=3)]
    ds = load_data(str(tmp_path))
    for i, f in enumerate([first, *rest]):
        x, _ = ds.get(i)
        assert x.shape == (3, 6, 6)
        np.testing.assert_array_equal(x, rgb_of(f))
    x0, _ = ds.get(0)
    assert (x0[0] == x0[1]).all() and (x0[1] == x0[2]).all()      # grey as three equal planes


def test_every_image_mode_is_converted_to_rgb_as_imagefolder_does(tmp_path):
    files = [image(tmp_path / "c" / f"{i}_{m.replace(';', '')}.{ext}", m, seed=i)
             for i, (m, ext) in enumerate([("P", "png"), ("L", "png"), ("LA", "png"), ("RGBA", "png"), ("CMYK", "jpg"),
                                           ("I;16", "png"), ("1", "png"), ("RGB", "bmp"), ("L", "jpg")])]
    ds = load_data(str(tmp_path))
    for i, f in enumerate(sorted(files)):                # images in sorted order of their names
        x, y = ds.get(i)
        assert y == 0 and x.shape == (3, 6, 6)
        np.testing.assert_array_equal(x, rgb_of(f))
    sixteen = next(i for i, f in enumerate(sorted(files)) if "I16" in f.name)
    assert ds.get(sixteen)[0].max() == 1.0               # 16-bit values above 255 saturate, as in PIL's conversion


def test_resize_and_centre_crop_follow_torchvision(tmp_path):
    sizes = [(500, 375), (375, 500), (301, 257), (257, 301), (256, 256), (640, 427), (99, 400)]
    files = [image(tmp_path / "k" / f"{i}.png", "RGB", size=s, seed=i) for i, s in enumerate(sizes)]
    ds = load_data(str(tmp_path), resize=256, crop=224)
    for i, f in enumerate(files):
        x, _ = ds.get(i)
        assert x.shape == (3, 224, 224)
        np.testing.assert_array_equal(x, resize_crop_of(f, 256, 224))
    # the rules themselves, pinned: Resize(256) of 500 x 375 is 341 x 256 (int, not round: 341.33), and the
    # crop's left offset round(117 / 2) = 58 (Python rounds half to even), not 59
    im = Image.open(files[0]).convert("RGB").resize((341, 256), Image.BILINEAR)
    want = np.asarray(im, dtype=np.float32)[16:240, 58:282].transpose(2, 0, 1) / np.float32(255)
    np.testing.assert_array_equal(ds.get(0)[0], want)
    # crop alone (no resize) on images that are large enough; a crop that does not fit is refused
    only = load_data(str(tmp_path), crop=200)
    w, h = sizes[0]
    top, left = int(round((h - 200) / 2.0)), int(round((w - 200) / 2.0))
    np.testing.assert_array_equal(only.get(0)[0], rgb_of(files[0])[:, top:top + 200, left:left + 200])
    with pytest.raises(ValueError, match=r"6\.png is 99x400, smaller than --crop 200; add --resize 200"):
        only.get(6)


# ------------------------------------------------------------------ image folders: labels
def test_labels_come_from_sorted_sub_folders_or_from_a_class_list(tmp_path):
    for i, c in enumerate(["n03", "n01", "n02"]):
        image(tmp_path / "val" / c / f"img{i}.png", "RGB", seed=i)
        image(tmp_path / "val" / c / f"img{i + 10}.png", "RGB", seed=i + 10)
    (tmp_path / "val" / ".ipynb_checkpoints").mkdir()        # hidden: not a class
    ds = load_data(str(tmp_path / "val"))
    assert [ds.get(i)[1] for i in range(6)] == [0, 0, 1, 1, 2, 2]           # n01, n02, n03
    np.testing.assert_array_equal(ds.get(0)[0], rgb_of(tmp_path / "val" / "n01" / "img1.png"))
    np.testing.assert_array_equal(ds.get(1)[0], rgb_of(tmp_path / "val" / "n01" / "img11.png"))
    # a class list (as LOC_synset_mapping.txt: the first word of each line) numbers a subset of the classes
    listing = tmp_path / "synsets.txt"
    listing.write_text("n00 zero, nil\nn01 tench, Tinca tinca\n\nn02 goldfish\nn09 last\nn03 third one\n")
    ds = load_data(str(tmp_path / "val"), classes=str(listing))
    assert [ds.get(i)[1] for i in range(6)] == [1, 1, 2, 2, 4, 4]
    assert ds.preprocessing["num_class_names"] == 5 and ds.preprocessing["classes"] == str(listing)
    listing.write_text("n01\nn02\n")
    with pytest.raises(ValueError, match="sub-folder 'n03' is not in the class list"):
        load_data(str(tmp_path / "val"), classes=str(listing))
    listing.write_text("n01\nn02\nn01\nn03\n")
    with pytest.raises(ValueError, match="names 'n01' twice"):
        load_data(str(tmp_path / "val"), classes=str(listing))


def test_folder_problems_are_one_line_errors_naming_the_folder_or_file(tmp_path):
    for i in range(3):
        image(tmp_path / "flat" / f"{i}.png", "RGB", seed=i)
    with pytest.raises(ValueError, match=r"holds 3 images but no class sub-folders; an image folder is DIR/<class>/<image>"):
        load_data(str(tmp_path / "flat"))
    image(tmp_path / "sizes" / "a" / "0.png", "RGB", size=(8, 6))
    image(tmp_path / "sizes" / "a" / "1.png", "RGB", size=(6, 8))
    with pytest.raises(ValueError, match=r"input 1 \(.*1\.png\) is 6x8, the first image read was 8x6; give --resize 256 --crop 224"):
        load_data(str(tmp_path / "sizes")).check(range(2))          # from the headers, before any model runs
    ds = load_data(str(tmp_path / "sizes"))
    ds.get(0)
    with pytest.raises(ValueError, match=r"input 1 \(.*1\.png\) is 6x8, the first image read was 8x6; give --resize 256 --crop 224"):
        ds.get(1)
    load_data(str(tmp_path / "sizes"), resize=6, crop=6).check(range(2))
    ds = load_data(str(tmp_path / "sizes"), resize=6)
    ds.get(0)
    with pytest.raises(ValueError, match=r"add --crop 6 \(or less\)"):
        ds.get(1)
    bad = tmp_path / "broken" / "a" / "0.png"
    image(bad, "RGB", size=(16, 16))
    bad.write_bytes(bad.read_bytes()[:60])
    (tmp_path / "broken" / "a" / "1.jpg").write_bytes(b"not an image at all")
    ds = load_data(str(tmp_path / "broken"))
    with pytest.raises(ValueError, match=r"cannot read .*0\.png as an RGB image \(OSError"):
        ds.get(0)
    with pytest.raises(ValueError, match=r"cannot read .*1\.jpg as an RGB image \(UnidentifiedImageError"):
        ds.get(1)
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3, 4, 4), np.uint8), y=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="--resize 256 --crop 224 applies to image folders only"):
        load_data(str(tmp_path / "d.npz"), resize=256, crop=224)
    from smoothcert.sampler.config import SampleConfig

    with pytest.raises(ValueError, match="--crop 300 is larger than --resize 256"):
        SampleConfig(models=["m"], data="d", sigma=0.5, resize=256, crop=300)
    with pytest.raises(ValueError, match="--resize must be a positive integer"):
        SampleConfig(models=["m"], data="d", sigma=0.5, resize=0)


# ------------------------------------------------------------------ CIFAR python batches
class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the CIFAR batches: protocol 2, str and bytes as BINSTRING."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _binstring(self, b: bytes):
        head = pickle.SHORT_BINSTRING + bytes([len(b)]) if len(b) < 256 else pickle.BINSTRING + struct.pack("<i", len(b))
        self.write(head + b)

    def save_bytes_py2(self, obj):
        self._binstring(obj)
        self.memoize(obj)

    def save_str_py2(self, obj):
        self._binstring(obj.encode("latin1"))
        self.memoize(obj)

    dispatch[bytes] = save_bytes_py2
    dispatch[str] = save_str_py2


def cifar_batch(n=6, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, classes, n)]
    return data, labels


def write_cifar10(folder: Path, data, labels, py2=False) -> Path:
    """``folder/test_batch`` as the CIFAR-10 python version holds it (plus a training batch and the meta file)."""
    folder.mkdir(parents=True, exist_ok=True)
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    if py2:
        f = io.BytesIO()
        Py2Pickler(f, protocol=2).dump(batch)
        raw = f.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert raw.startswith(b"\x80\x02}q\x00(U\x0bbatch_label")
        (folder / "test_batch").write_bytes(raw)
    else:
        with open(folder / "test_batch", "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({**batch, b"data": data[::-1].copy()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_vis": 3072}, f)
    return folder / "test_batch"


@pytest.mark.parametrize("py2", [False, True], ids=["pickle.dump", "python2-protocol2"])
def test_cifar10_batches_are_read_channel_major_from_the_file_or_its_folder(tmp_path, py2):
    data, labels = cifar_batch()
    path = write_cifar10(tmp_path / "cifar-10-batches-py", data, labels, py2=py2)
    want = data.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)
    for spec in (tmp_path / "cifar-10-batches-py", path):
        ds = load_data(str(spec))
        assert len(ds) == 6 and ds.preprocessing is None
        for i in range(6):
            x, y = ds.get(i)
            np.testing.assert_array_equal(x, want[i])
            assert y == labels[i]
        # red plane first: pixel (row 0, column 1) of the red, green and blue planes
        assert ds.get(0)[0][:, 0, 1].tolist() == (data[0, [1, 1025, 2049]].astype(np.float32) / 255).tolist()
    train = load_data(str(tmp_path / "cifar-10-batches-py" / "data_batch_1"))
    np.testing.assert_array_equal(train.get(0)[0], want[5])


def test_cifar100_reads_the_fine_labels(tmp_path):
    data, fine = cifar_batch(n=5, classes=100, seed=1)
    coarse = [v // 5 for v in fine]
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for name in ("test", "train"):
        with open(d / name, "wb") as f:
            pickle.dump({b"filenames": [b"x"] * 5, b"batch_label": b"testing batch 1 of 1", b"fine_labels": fine,
                         b"coarse_labels": coarse, b"data": data}, f)
    with open(d / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"apple"] * 100, b"coarse_label_names": [b"fish"] * 20}, f)
    ds = load_data(str(d))
    assert [ds.get(i)[1] for i in range(5)] == fine
    np.testing.assert_array_equal(ds.get(4)[0], data[4].reshape(3, 32, 32) / np.float32(255))


def test_a_damaged_pickle_is_one_line(tmp_path):
    data, labels = cifar_batch()
    path = write_cifar10(tmp_path / "c10", data, labels)
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    cuts = [2, 40, len(good) // 2, len(good) - 1]
    flips = sorted(rng.choice(np.arange(2, 200), 6, replace=False))
    for k, damage in enumerate([("cut", c) for c in cuts] + [("flip", f) for f in flips]):
        raw = bytearray(good[:damage[1]] if damage[0] == "cut" else good)
        if damage[0] == "flip":
            raw[damage[1]] ^= 0xFF
        bad = tmp_path / f"bad{k}"
        bad.write_bytes(bytes(raw))
        try:
            ds = load_data(str(bad))
        except ValueError as e:
            msg = str(e)
            assert "\n" not in msg and str(bad) in msg, msg
            assert ("CIFAR" in msg or "unknown form" in msg), msg
            continue
        # a flip inside a value (a label, a file name) leaves a well-formed batch: it reads
        assert len(ds) == 6 and damage[0] == "flip"
    (tmp_path / "notcifar").write_bytes(pickle.dumps({b"images": data}))
    with pytest.raises(ValueError, match=r"needs b'data' and b'labels' \(CIFAR-10\) or b'fine_labels'"):
        load_data(str(tmp_path / "notcifar"))
    (tmp_path / "wrongshape").write_bytes(pickle.dumps({b"data": data[:, :100], b"labels": labels}))
    with pytest.raises(ValueError, match=r"b'data' must be uint8 of shape \(N, 3072\), got uint8 \(6, 100\)"):
        load_data(str(tmp_path / "wrongshape"))
    (tmp_path / "badlabels").write_bytes(pickle.dumps({b"data": data, b"labels": labels[:-1]}))
    with pytest.raises(ValueError, match=r"'labels' must be 6 non-negative integer labels"):
        load_data(str(tmp_path / "badlabels"))


# ------------------------------------------------------------------ dataset objects
def test_dataset_objects_from_python_and_by_name(tmp_path):
    ds = T.tiny_rgb_dataset()
    d = load_data(ds)
    x, y = T.tiny_data(channels=3)
    for i in range(len(y)):
        xi, yi = d.get(i)
        np.testing.assert_array_equal(xi, x[i].astype(np.float32) / np.float32(255))
        assert yi == y[i] and isinstance(yi, int)                       # a 0-d tensor label becomes an int
    assert d.spec.startswith("<smoothcert.sampler.testing.") and d.spec.endswith(" object>")
    with pytest.raises(ValueError, match=r"returned a PIL image \(RGB 6x6\), not a tensor; add transforms.ToTensor\(\)"):
        load_data(T.tiny_pil_dataset()).get(0)
    with pytest.raises(ValueError, match=r"looks like \(H, W, C\)"):
        load_data([(np.zeros((6, 6, 3), np.float32), 0)]).get(0)
    with pytest.raises(ValueError, match="label 0.5 is not a non-negative integer"):
        load_data([(np.zeros((3, 6, 6), np.float32), 0.5)]).get(0)
    with pytest.raises(ValueError, match="int is not a dataset"):
        load_data(3)
    # from Python, into a store, equal to the same dataset named on the command line
    a = sample(str(tmp_path / "obj"), models=["smoothcert.sampler.testing:tiny_rgb"], data=ds, **RUN)
    b = sample(str(tmp_path / "named"), models=["smoothcert.sampler.testing:tiny_rgb"],
               data="smoothcert.sampler.testing:tiny_rgb_dataset", **RUN)
    assert a.complete == b.complete == 12
    sa, sb = open_store(str(tmp_path / "obj")), open_store(str(tmp_path / "named"))
    assert sa.attrs["data_fingerprint"] == sb.attrs["data_fingerprint"]
    assert sa.attrs["data"] == d.spec and sb.attrs["data"] == "smoothcert.sampler.testing:tiny_rgb_dataset"
    assert np.asarray(sa.root["rows"][:]).tobytes() == np.asarray(sb.root["rows"][:]).tobytes()


# ------------------------------------------------------------------ the store: metadata, fingerprint, resume
def rgb_folder(root: Path, n=6):
    """An RGB image folder of n 6 x 6 images (labels 0..2) and the same pixels as (x uint8, y)."""
    x, y = T.tiny_data(n=n, channels=3, m=3)
    for i in range(n):
        p = root / f"class{y[i]}" / f"{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i].transpose(1, 2, 0)).save(p)
    return x, y


def test_a_folder_without_preprocessing_is_sampled_as_its_pixels_and_says_so(tmp_path):
    x, y = rgb_folder(tmp_path / "imgs")
    np.savez(tmp_path / "same.npz", x=x, y=y)
    notes = []
    kw = dict(RUN, models=["smoothcert.sampler.testing:tiny_rgb"])
    sample(str(tmp_path / "folder"), data=str(tmp_path / "imgs"), **{**kw, "log": notes.append})
    sample(str(tmp_path / "npz"), data=str(tmp_path / "same.npz"), **kw)
    assert any("sampled at their native resolution" in s and "--resize 256 --crop 224" in s for s in notes), notes
    a, b = open_store(str(tmp_path / "folder")), open_store(str(tmp_path / "npz"))
    assert a.attrs["data_fingerprint"] == b.attrs["data_fingerprint"]
    assert np.asarray(a.root["rows"][:]).tobytes() == np.asarray(b.root["rows"][:]).tobytes()
    assert a.attrs["data_preprocessing"]["mode"] == "RGB" and b.attrs["data_preprocessing"] is None


def test_preprocessing_is_recorded_changes_the_fingerprint_and_resume_checks_it(tmp_path):
    for i, s in enumerate([(9, 7), (7, 9), (8, 8), (11, 7)]):
        image(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png", "RGB", size=s, seed=i)
    kw = dict(RUN, models=["smoothcert.sampler.testing:tiny_rgb"], data=str(tmp_path / "imgs"))
    sample(str(tmp_path / "s7c6"), resize=7, crop=6, **kw)
    sample(str(tmp_path / "s8c6"), resize=8, crop=6, **kw)
    st = open_store(str(tmp_path / "s7c6"))
    pre = st.attrs["data_preprocessing"]
    assert (pre["resize"], pre["crop"], pre["resample"], pre["mode"]) == (7, 6, "bilinear", "RGB")
    assert st.attrs["data_fingerprint"] != open_store(str(tmp_path / "s8c6")).attrs["data_fingerprint"]
    # the fingerprint covers the settings even where the pixels would not tell them apart
    d1, d2 = load_data(str(tmp_path / "imgs"), crop=6), load_data(str(tmp_path / "imgs"), resize=100, crop=6)
    assert fingerprint(d1, range(4)) != fingerprint(d2, range(4))
    from smoothcert.store import StoreError

    with pytest.raises(StoreError, match="data fingerprint .*data preprocessing"):
        sample(str(tmp_path / "s7c6"), resize=9, crop=6, **kw)


# ------------------------------------------------------------------ end to end, one command each
def test_each_form_is_one_sample_command_into_a_store_that_certify_reads(tmp_path):
    for i, s in enumerate([(6, 6), (30, 41), (64, 64), (33, 35)]):     # the first, a grey JPEG, fits the model as it is
        image(tmp_path / "val" / f"n0{i % 3}" / f"{i}.JPEG", "RGB" if i else "L", size=s, seed=i, fmt="JPEG")
    data, labels = cifar_batch(n=4)
    write_cifar10(tmp_path / "cifar-10-batches-py", data, labels)
    forms = {
        "folder": ["--model", "smoothcert.sampler.testing:tiny_rgb", "--data", tmp_path / "val", "--resize", 8, "--crop", 6],
        "cifar": ["--model", "smoothcert.sampler.testing:tiny_cifar10", "--data", tmp_path / "cifar-10-batches-py"],
        "dataset": ["--model", "smoothcert.sampler.testing:tiny_rgb", "--data", "smoothcert.sampler.testing:tiny_rgb_dataset",
                    "--indices", "0:12:3"],
    }
    for name, args in forms.items():
        store = tmp_path / name
        res = invoke("sample", *args, "--sigma", 0.25, "--n0", 10, "--n", 100, "--device", "cpu", "--no-progress", store)
        assert res.exit_code == 0, res.output
        before = sorted(p.name for p in tmp_path.iterdir())
        res = invoke("certify", store, "--method", "cohen")
        assert res.exit_code == 0, res.output
        assert "4 certificates not written (no --out)" in res.output and "acc@0.25" in res.output, res.output
        assert sorted(p.name for p in tmp_path.iterdir()) == before                   # nothing written
        st = open_store(str(store))
        assert st.n_inputs == 4 and st.verify() == []
    assert open_store(str(tmp_path / "folder")).attrs["input_shape"] == [3, 6, 6]
    assert open_store(str(tmp_path / "cifar")).attrs["input_shape"] == [3, 32, 32]
    # the ImageNet preset on the command line, and an error that names the option
    res = invoke("sample", "--model", "smoothcert.sampler.testing:tiny_rgb", "--data", tmp_path / "val", "--preprocess",
                 "imagenet", "--crop", 200, "--sigma", 0.25, tmp_path / "never")
    one_line_error(res, "--preprocess imagenet means --resize 256 --crop 224; --crop 200 contradicts it")
    res = invoke("sample", "--model", "smoothcert.sampler.testing:tiny_rgb", "--data", tmp_path / "val",
                 "--sigma", 0.25, "--device", "cpu", "--no-progress", tmp_path / "never")
    one_line_error(res, "give --resize 256 --crop 224")
    assert not (tmp_path / "never").exists()


def test_a_replay_and_a_merge_read_the_folder_as_the_base_did(tmp_path):
    for i, s in enumerate([(9, 7), (7, 9), (8, 8), (11, 7)]):
        image(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png", "RGB", size=s, seed=i)
    kw = dict(RUN, models=["smoothcert.sampler.testing:tiny_rgb"])
    sample(str(tmp_path / "base"), data=str(tmp_path / "imgs"), resize=7, crop=6, **kw)
    r = sample(str(tmp_path / "replay"), replay_of=str(tmp_path / "base"), models=["smoothcert.sampler.testing:tiny_rgb"],
               n=20, device="cpu", progress=False, log=lambda s: None, batch_size=16)
    assert r.complete == 4
    assert open_store(str(tmp_path / "replay")).attrs["data_preprocessing"]["resize"] == 7
    sample(str(tmp_path / "p0"), data=str(tmp_path / "imgs"), resize=7, crop=6, indices="0:2", **kw)
    sample(str(tmp_path / "p1"), data=str(tmp_path / "imgs"), resize=7, crop=6, indices="2:4", **kw)
    res = invoke("store", "merge", tmp_path / "p0", tmp_path / "p1", tmp_path / "merged", "--data", tmp_path / "imgs")
    assert res.exit_code == 0, res.output
    assert open_store(str(tmp_path / "merged")).n_inputs == 4
