"""Checkpoints of the field (locuslab/smoothing format) and torch modules, from file or object to a store.

Every check is against something written apart from the code under test:
parameter names against key lists taken from torchvision's and Cohen et al.'s
own networks (tests/fixtures/*_keys.txt), stored rows against a functional
forward pass (``reference_logits``: F.conv2d, F.batch_norm, ... over the
checkpoint's tensors read by name) after Cohen et al.'s normalisation on
the noise of the sampler's definition, metadata against the file's sha256.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import smoothcert
from smoothcert.sampler import noise
from smoothcert.sampler.architectures import build
from smoothcert.sampler.models import load_model, state_dict_fingerprint
from smoothcert.sampler.testing_checkpoints import NormalizeLayer, locuslab_model, save_checkpoint
from smoothcert.store import open_store

from faultkit import assert_one_line_error, invoke

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CKPT = FIXTURES / "cifar_resnet20_locuslab.pth.tar"
# the normalisation constants of locuslab/smoothing's code/datasets.py, typed in here
CIFAR = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
SIGMA, SEED = 0.25, 0


# ------------------------------------------------------------------ the independent computation
def reference_logits(sd: dict, x: torch.Tensor, mean, std) -> torch.Tensor:
    """Logits of the checkpoint's network on pixels ``x`` (B, 3, H, W), normalised first, computed from ``sd`` by name.

    ``sd`` is the checkpoint's ``state_dict`` as saved (``1.`` and
    ``1.module.`` prefixes are read here). The network is He et al.'s
    (arXiv:1512.03385): a bottleneck ResNet with a 7 x 7 stem and max pool
    when ``conv1`` is 7 x 7, else the CIFAR ResNet (3 x 3 stem, basic
    blocks, 8 x 8 average pool); every stage but the first starts with
    stride 2, on the 3 x 3 convolution.
    """
    pre = "1.module." if any(k.startswith("1.module.") for k in sd) else "1."
    p = {k[len(pre):]: v.double() for k, v in sd.items() if k.startswith(pre)}
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    h = (x.double() - m) / s

    def conv(t, name, stride=1):
        w = p[name + ".weight"]
        return F.conv2d(t, w, stride=stride, padding=w.shape[-1] // 2)

    def bn(t, name):
        return F.batch_norm(t, p[name + ".running_mean"], p[name + ".running_var"], p[name + ".weight"],
                            p[name + ".bias"], training=False, eps=1e-5)

    bottleneck = p["conv1.weight"].shape[-1] == 7
    h = F.relu(bn(conv(h, "conv1", 2 if bottleneck else 1), "bn1"))
    if bottleneck:
        h = F.max_pool2d(h, 3, 2, 1)
    stage = 1
    while f"layer{stage}.0.conv1.weight" in p:
        b = 0
        while f"layer{stage}.{b}.conv1.weight" in p:
            q, stride = f"layer{stage}.{b}", 2 if (stage > 1 and b == 0) else 1
            if bottleneck:
                o = F.relu(bn(conv(h, q + ".conv1"), q + ".bn1"))
                o = F.relu(bn(conv(o, q + ".conv2", stride), q + ".bn2"))
                o = bn(conv(o, q + ".conv3"), q + ".bn3")
            else:
                o = F.relu(bn(conv(h, q + ".conv1", stride), q + ".bn1"))
                o = bn(conv(o, q + ".conv2"), q + ".bn2")
            short = bn(conv(h, q + ".downsample.0", stride), q + ".downsample.1") if q + ".downsample.0.weight" in p else h
            h = F.relu(o + short)
            b += 1
        stage += 1
    h = h.mean((2, 3)) if bottleneck else F.avg_pool2d(h, 8).flatten(1)
    return F.linear(h, p["fc.weight"], p["fc.bias"])


def noisy(x: np.ndarray, idx: int, rows: int) -> torch.Tensor:
    """The sampler's noisy copies of input ``idx`` by their definition: x + sigma * eps(seed, idx, row)."""
    eps = noise.noise_rows(SEED, idx, 0, rows, x.shape, impl="torch")
    return torch.from_numpy(x)[None] + SIGMA * eps


def check_rows(store, sd, xs, mean, std, rows):
    """Every stored row equals the softmax of ``reference_logits`` within float16 rounding; hard labels match."""
    st = open_store(store)
    got = np.asarray(st.root["rows"][:], dtype=np.float64)
    arg = np.asarray(st.root["argmax"][:])
    for slot, x in enumerate(xs):
        ref = torch.softmax(reference_logits(sd, noisy(x, slot, rows), mean, std), 1).numpy()
        np.testing.assert_allclose(got[slot], ref, atol=5e-4, rtol=0)
        top2 = np.sort(ref, 1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-4
        assert (arg[slot][clear] == ref.argmax(1)[clear]).all()
    assert got.max(-1).min() > 1.5 / got.shape[-1]    # no row is flat: a wrong network would differ from the reference
    return st


def cifar_inputs(n, side=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.fixture
def cifar_npz(tmp_path):
    x, y = cifar_inputs(2)
    path = tmp_path / "cifar.npz"
    np.savez(path, x=x, y=y)
    return path, [xi.astype(np.float32) / np.float32(255) for xi in x]


def sample_cli(*args):
    return invoke(["sample", *args, "--sigma", SIGMA, "--seed", SEED, "--device", "cpu", "--no-progress"])


# ------------------------------------------------------------------ parameter names
def read_keys(name):
    lines = (FIXTURES / name).read_text().splitlines()
    return [line for line in lines if not line.startswith("#")]


@pytest.mark.parametrize("arch,fixture", [("resnet50", "torchvision_resnet50_keys.txt"),
                                          ("cifar_resnet20", "locuslab_cifar_resnet20_keys.txt"),
                                          ("cifar_resnet110", "locuslab_cifar_resnet110_keys.txt")])
def test_networks_have_the_original_codes_parameter_names_and_shapes(arch, fixture):
    with torch.device("meta"):
        net = build(arch, 1000 if arch == "resnet50" else 10)
    assert [f"{k} {tuple(v.shape)}" for k, v in net.state_dict().items()] == read_keys(fixture)


# ------------------------------------------------------------------ checkpoints to stores
def test_the_committed_checkpoint_samples_into_a_store_that_records_it(tmp_path, cifar_npz):
    data, xs = cifar_npz
    code, out, err, exc = sample_cli("--model", CKPT, "--data", data, "--n0", 2, "--n", 6, tmp_path / "s")
    assert code == 0 and exc is None, err
    raw = torch.load(CKPT, map_location="cpu", weights_only=True)
    assert sorted(raw) == ["arch", "epoch", "optimizer", "state_dict"] and raw["optimizer"]["state"]
    st = check_rows(tmp_path / "s", raw["state_dict"], xs, *CIFAR, rows=8)
    sha = hashlib.sha256(CKPT.read_bytes()).hexdigest()
    assert st.attrs["model_fingerprint"] == sha
    assert st.attrs["model_checkpoint"] == {"format": "locuslab/smoothing checkpoint", "arch": "cifar_resnet20",
                                            "dataset": "cifar10", "epoch": 90, "sha256": sha}
    assert st.attrs["normalisation"] == {"mean": CIFAR[0], "std": CIFAR[1]}
    code, out, err, exc = invoke(["store", "info", tmp_path / "s"])
    assert code == 0 and "arch: cifar_resnet20" in out and f"sha256: {sha}" in out
    # the same command resumes; a changed checkpoint is another model
    code, _, err, _ = sample_cli("--model", CKPT, "--data", data, "--n0", 2, "--n", 6, tmp_path / "s")
    assert code == 0 and "2 already complete" in err
    other = tmp_path / "other.pth.tar"
    save_checkpoint(locuslab_model("cifar_resnet20", 1), "cifar_resnet20", other, train_step=False)
    code, _, err, exc = sample_cli("--model", other, "--data", data, "--n0", 2, "--n", 6, tmp_path / "s")
    assert "model fingerprint" in assert_one_line_error(code, err, exc)


@pytest.mark.parametrize("arch,legacy,side", [("cifar_resnet110", False, 32), ("resnet50", True, 32)])
def test_checkpoints_rows_equal_an_independent_forward_pass(tmp_path, arch, legacy, side):
    """ResNet-110 (keys 1.conv1...) in the zip format; ResNet-50 (keys 1.module.conv1..., DataParallel) in the old one."""
    path = tmp_path / "checkpoint.pth.tar"
    save_checkpoint(locuslab_model(arch, 3), arch, path, legacy=legacy, train_step=False, side=side)
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert next(iter(sd)) == ("1.module.conv1.weight" if arch == "resnet50" else "1.conv1.weight")
    x, y = cifar_inputs(1, side, seed=5)
    xs = [x[0].astype(np.float32) / np.float32(255)]
    r = smoothcert.sample(str(tmp_path / "s"), models=str(path), data=_npz(tmp_path, x, y), sigma=SIGMA, seed=SEED,
                          n0=1, n=2, batch_size=2, device="cpu", progress=False, log=lambda s: None)
    assert r.complete == 1
    st = check_rows(tmp_path / "s", sd, xs, *(IMAGENET if arch == "resnet50" else CIFAR), rows=3)
    assert st.attrs["model_checkpoint"]["arch"] == arch and st.num_classes == (1000 if arch == "resnet50" else 10)


def _npz(tmp_path, x, y):
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    return str(path)


@pytest.mark.parametrize("form", ["net", "sequential", "dataparallel"])
def test_a_bare_state_dict_loads_with_arch_and_without_it_the_error_names_the_fitting_one(tmp_path, form):
    model = locuslab_model("cifar_resnet20", 7)
    net = model[1]
    state = {"net": net.state_dict(), "sequential": model.state_dict(),
             "dataparallel": torch.nn.DataParallel(net).state_dict()}[form]
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"holds a state_dict without an 'arch'; name its architecture with --arch "
                                         r".*\(its keys fit cifar_resnet20\)"):
        load_model(str(path))
    lm = load_model(str(path), arch="cifar_resnet20")
    assert lm.checkpoint["format"] == "state_dict" and lm.normalisation == {"mean": CIFAR[0], "std": CIFAR[1]}
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        np.testing.assert_allclose(lm.module(x).numpy(), reference_logits(model.state_dict(), x, *CIFAR).numpy(),
                                   atol=1e-4, rtol=1e-4)


def test_factory_weights_lose_module_prefixes_and_a_mismatch_names_keys_and_the_prefix(tmp_path, monkeypatch):
    (tmp_path / "nets_c20.py").write_text("from smoothcert.sampler.architectures import build\n\n"
                                          "def c20():\n    return build('cifar_resnet20', 10)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = locuslab_model("cifar_resnet20", 8)
    ddp = tmp_path / "ddp.pt"
    torch.save(torch.nn.DataParallel(model[1]).state_dict(), ddp)          # keys module.conv1.weight, ...
    lm = load_model("nets_c20:c20", str(ddp))
    for k, v in model[1].state_dict().items():
        assert torch.equal(lm.module.model.state_dict()[k], v)
    ckpt = tmp_path / "c.pth.tar"
    save_checkpoint(model, "cifar_resnet20", ckpt, train_step=False)     # keys 1.conv1.weight: one level too deep
    with pytest.raises(ValueError) as e:
        load_model("nets_c20:c20", str(ckpt))
    msg = str(e.value)
    assert "\n" not in msg and "do not fit the factory's network" in msg
    assert "'conv1.weight'" in msg and "'1.conv1.weight'" in msg
    assert "the file's keys start with '1.' where the network's do not: removing '1.' fits 107 of the 107 missing keys" in msg
    inner = tmp_path / "inner.pt"
    torch.save({k[len("layer1."):]: v for k, v in model[1].state_dict().items() if k.startswith("layer1.")}, inner)
    with pytest.raises(ValueError, match="the network's keys start with 'layer1.' where the file's do not"):
        load_model("nets_c20:c20", str(inner))


# ------------------------------------------------------------------ bad input: one line each, nothing written
def _bad_files(tmp_path, marker):
    """name -> (file, extra CLI args, words the error line must hold)."""
    model = locuslab_model("cifar_resnet20", 9)
    files = {}

    def save(name, obj, **kw):
        torch.save(obj, tmp_path / name, **kw)
        return tmp_path / name

    files["unknown arch"] = (save("r18.pth.tar", {"epoch": 1, "arch": "resnet18", "state_dict": model.state_dict()}),
                             [], "'resnet18' is not an architecture smoothcert builds")
    files["fits no arch"] = (save("c20.pth.tar", {"epoch": 1, "arch": "cifar_resnet110", "state_dict": model.state_dict()}),
                             [], "does not fit the cifar_resnet110 network: 450 keys of the network missing")
    files["arch disagrees"] = (save("c20b.pth.tar", {"epoch": 1, "arch": "cifar_resnet20", "state_dict": model.state_dict()}),
                               ["--arch", "cifar_resnet110"], "the checkpoint's arch is 'cifar_resnet20', --arch says")
    files["--mean on a normalising model"] = (tmp_path / "c20b.pth.tar", ["--mean", "0.5", "--std", "0.2"],
                                              "normalises inside the model (cifar10 mean")
    files["unknown --arch"] = (tmp_path / "c20b.pth.tar", ["--arch", "vgg16"], "--arch 'vgg16' is not an architecture")
    good = (tmp_path / "c20b.pth.tar").read_bytes()
    (tmp_path / "cut.pth.tar").write_bytes(good[: len(good) // 2])
    files["truncated zip"] = (tmp_path / "cut.pth.tar", [],
                              "torch.load(weights_only=True) cannot read it (a damaged or truncated zip")
    legacy = tmp_path / "legacy.pth.tar"
    torch.save({"arch": "cifar_resnet20", "state_dict": model.state_dict()}, legacy, _use_new_zipfile_serialization=False)
    raw = legacy.read_bytes()
    (tmp_path / "cut_legacy.pth.tar").write_bytes(raw[: len(raw) // 2])
    files["truncated old format"] = (tmp_path / "cut_legacy.pth.tar", [],
                                     "cannot read it (the file ends too early: truncated or damaged)")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    files["malicious zip"] = (save("evil.pth.tar", {"epoch": 1, "arch": "cifar_resnet20", "state_dict": {"w": Evil()}}),
                              [], "not only tensors: it would call posix.system; nothing in it was run")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"arch": "cifar_resnet20", "state_dict": Evil()}, f)
    files["malicious pickle"] = (tmp_path / "evil.pkl", [], "not a TorchScript file, and torch.load(weights_only=True) "
                                                             "cannot read it (a pickle that is not tensors")
    files["not a dict"] = (save("list.pt", [torch.zeros(2)]), [], "holds a list, not a checkpoint or a state_dict")
    return files


def test_bad_checkpoints_give_one_line_errors_and_write_nothing(tmp_path, cifar_npz):
    data, _ = cifar_npz
    marker = tmp_path / "PWNED"
    for what, (path, extra, words) in _bad_files(tmp_path, marker).items():
        store = tmp_path / f"s-{what.replace(' ', '_')}"
        code, out, err, exc = sample_cli("--model", path, *extra, "--data", data, "--n0", 1, "--n", 1, store)
        line = assert_one_line_error(code, err, exc, what)
        assert words in line, (what, line)
        if what == "fits no arch":
            assert line.endswith("; its keys fit cifar_resnet20")
        assert not store.exists(), what
    assert not marker.exists()


def test_arch_without_a_model_file_that_uses_it_is_refused(tmp_path):
    from smoothcert.sampler import testing as T

    x, y = T.tiny_data(n=2)
    data = _npz(tmp_path, x, y)
    code, out, err, exc = sample_cli("--model", "smoothcert.sampler.testing:tiny", "--arch", "resnet50",
                                     "--data", data, "--n0", 1, "--n", 1, tmp_path / "s")
    assert "--arch resnet50 applies only to a model file holding a checkpoint" in assert_one_line_error(code, err, exc)
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------ torch.nn.Module objects from Python
def test_sample_takes_a_module_and_a_list_of_modules_without_changing_them(tmp_path, cifar_npz):
    data, xs = cifar_npz
    model = locuslab_model("cifar_resnet20", 11)             # a Sequential: one model, not a list of its children
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(data=str(data), sigma=SIGMA, seed=SEED, n0=1, n=3, batch_size=4, device="cpu", progress=False,
              log=lambda s: None)
    r = smoothcert.sample(str(tmp_path / "one"), models=model, **kw)
    assert r.complete == 2
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    st = check_rows(tmp_path / "one", model.state_dict(), xs, *CIFAR, rows=4)
    label = "<torch.nn.Module torch.nn.modules.container.Sequential>"
    assert st.attrs["model"] == label and st.attrs["normalisation"] is None
    assert st.attrs["model_fingerprint"] == state_dict_fingerprint(model.state_dict(), label)
    other = locuslab_model("cifar_resnet20", 12)
    r = smoothcert.sample(str(tmp_path / "two"), models=[model, other], **kw)
    st2 = open_store(tmp_path / "two")
    assert r.complete == 2 and st2.attrs["model"] == [label, label] and st2.members == 2
    assert st2.attrs["member_fingerprints"][0] == st.attrs["model_fingerprint"] != st2.attrs["member_fingerprints"][1]
    with pytest.raises(ValueError, match="--weights applies only to package.module:factory models; <torch.nn.Module"):
        smoothcert.sample(str(tmp_path / "w"), models=model, weights=["w.pt"], **kw)


def test_a_checkpoint_fixture_model_equals_a_sequential_of_normalize_and_the_network():
    """The loaded model is Sequential(NormalizeLayer, net) of the original code with the checkpoint's weights."""
    raw = torch.load(CKPT, map_location="cpu", weights_only=True)
    ref = torch.nn.Sequential(NormalizeLayer(*CIFAR), build("cifar_resnet20", 10)).eval()
    ref.load_state_dict(raw["state_dict"])
    lm = load_model(str(CKPT))
    x = torch.rand(3, 3, 32, 32)
    with torch.inference_mode():
        np.testing.assert_allclose(lm.module(x).numpy(), ref(x).numpy(), atol=1e-5, rtol=1e-5)


def test_config_keeps_a_module_whole_and_checks_arch():
    from smoothcert.sampler.config import SampleConfig

    model = locuslab_model("cifar_resnet20", 13)
    cfg = SampleConfig(models=model, core_model=model, data="d.npz", sigma=0.5)
    assert cfg.models == (model,) and cfg.core_model is model
    assert SampleConfig(models=[model, "m.pt"], data="d.npz", sigma=0.5).models == (model, "m.pt")
    with pytest.raises(ValueError, match="--arch 'resnet18' is not an architecture smoothcert builds"):
        SampleConfig(models="m.pt", arch="resnet18", data="d.npz", sigma=0.5)


def test_sample_help_explains_the_checkpoint_route():
    code, out, err, exc = invoke(["sample", "--help"])
    text = " ".join(out.split())
    assert code == 0
    assert "checkpoint of the field ({'epoch', 'arch', 'state_dict', 'optimizer'}" in text
    assert "--arch ARCH resnet50, cifar_resnet20 or cifar_resnet110" in text
