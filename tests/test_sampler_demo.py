"""The demo: reproducible training, the shipped checkpoint, and a small end-to-end run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from smoothcert import demo
from smoothcert.sampler import train


def test_training_is_reproducible_with_a_fixed_seed():
    a = train.train(epochs=1, seed=3)
    b = train.train(epochs=1, seed=3)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train.train(epochs=1, seed=4)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_the_shipped_checkpoint_loads_safely_and_classifies_digits():
    assert train.CHECKPOINT.is_file() and train.CHECKPOINT.stat().st_size < 400_000
    state = torch.load(train.CHECKPOINT, map_location="cpu", weights_only=True)
    net = train.digits_cnn()
    net.load_state_dict(state)
    net.eval()
    _, (x, y) = train.digits_split()
    with torch.no_grad():
        acc = (net(torch.from_numpy(x)).argmax(1).numpy() == y).mean()
    assert acc > 0.95


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_demo_end_to_end_small(tmp_path, monkeypatch):
    from smoothcert import certifier

    monkeypatch.setattr(demo, "QUICK", {"inputs": 6, "n0": 20, "n": 300, "batch_size": 200})
    lines = []
    out = demo.run_demo(tmp_path / "demo", quick=True, echo=lines.append)
    text = "\n".join(lines)
    assert (tmp_path / "demo" / "certified_accuracy-quick.png").stat().st_size > 1000
    for m in certifier.available_methods():
        assert (tmp_path / "demo" / "certificates-quick" / f"{m}.csv").is_file(), m
        assert f"certified {m}" in text
    s = out["summary"]
    assert set(s["method"]) == set(certifier.available_methods())
    cohen = s[s["method"] == "cohen"].iloc[0]
    assert cohen["inputs"] == 6 and cohen["acc@0"] >= 0.5
    assert "Certified accuracy" in text and "demo finished" in text
    from smoothcert.store import open_store

    with open_store(out["store"]) as b, open_store(tmp_path / "demo" / "store-pruned-quick") as r:
        assert r.attrs["replay_of"] == {"location": out["store"], "fingerprint": b.fingerprint()}
        assert (r.n0, r.n, r.attrs["seed"], r.attrs["indices"]) == (b.n0, b.n // demo.REPLAY_SHARE, b.attrs["seed"],
                                                                    b.attrs["indices"])
    scripted = torch.jit.load(str(tmp_path / "demo" / "model.pt"))
    _, (x, _) = train.digits_split()
    ref = train.digits_cnn()
    ref.load_state_dict(torch.load(train.CHECKPOINT, weights_only=True))
    with torch.no_grad():
        assert torch.allclose(scripted(torch.from_numpy(x[:5])), ref.eval()(torch.from_numpy(x[:5])), atol=1e-5)
    # a second run resumes the complete store instead of sampling again
    lines.clear()
    demo.run_demo(tmp_path / "demo", quick=True, echo=lines.append)
    assert any("0 inputs (0 noisy samples)" in line and "6 already complete" in line for line in lines)
    assert np.isfinite(s["ACR"]).all()
