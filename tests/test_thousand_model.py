"""The 1,000-class model and data set the project builds itself (sampler/testing.py: thousand)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from smoothcert.sampler import testing as T
from smoothcert.sampler.data import load_data
from smoothcert.sampler.models import load_model, state_dict_fingerprint

MODEL, DATA = "smoothcert.sampler.testing:thousand", "smoothcert.sampler.testing:thousand_dataset"


@pytest.fixture(scope="module")
def net():
    return T.thousand().eval()


def test_the_factory_builds_the_same_weights_every_time(net):
    again = T.thousand()
    assert state_dict_fingerprint(net.state_dict(), MODEL) == state_dict_fingerprint(again.state_dict(), MODEL)
    grid = net.fc.weight.detach().double() * 2 ** 16  # the derived weights sit on the 2^-16 grid
    assert torch.equal(grid, torch.round(grid))


def test_the_data_set_is_500_deterministic_inputs_with_labels_in_0_to_999():
    ds = T.thousand_dataset()
    assert len(ds) == 500
    x0, _ = ds[0]
    assert tuple(x0.shape) == (3, 64, 64) and x0.dtype == torch.float32
    assert float(x0.min()) >= 0 and float(x0.max()) <= 1
    ys = np.array([ds[i][1] for i in range(500)])
    assert ys.min() >= 0 and ys.max() <= 999 and len(np.unique(ys)) > 300
    assert torch.equal(T.thousand_dataset()[17][0], ds[17][0]) and T.thousand_dataset()[17][1] == ds[17][1]
    with pytest.raises(IndexError):
        ds[500]


def test_softmax_rows_are_peaked_on_the_label_under_noise(net):
    """Under sigma = 0.25 noise the label is the argmax in most rows, with 0.3-0.9 of the mass in the median."""
    ds = T.thousand_dataset()
    xs = torch.stack([ds[i][0] for i in range(12)])
    ys = np.array([ds[i][1] for i in range(12)])
    g = torch.Generator().manual_seed(0)
    x = xs.repeat_interleave(10, 0) + 0.25 * torch.randn((120, 3, 64, 64), generator=g)
    with torch.no_grad():
        p = torch.softmax(net(x), dim=1).numpy()
    assert p.shape == (120, 1000)
    top = np.sort(p, axis=1)[:, ::-1]
    assert (p.argmax(1) == np.repeat(ys, 10)).mean() >= 0.8
    assert 0.3 <= np.median(top[:, 0]) <= 0.9
    assert np.median(top[:, 4]) > 1e-4 and (top[:, 0] < 0.999).all()  # a tail, not one-hot rows


def test_the_sampler_takes_it_by_name_and_writes_1000_class_rows(tmp_path):
    model = load_model(MODEL, device="cpu")
    data = load_data(DATA)
    assert len(data) == 500
    from smoothcert.sampler.run import sample
    from smoothcert.store import open_store

    sample(str(tmp_path / "s.zarr"), models=[MODEL], data=DATA, sigma=0.25, n0=3, n=7, batch_size=10,
           indices="0:2", device="cpu", progress=False, log=lambda s: None)
    with open_store(tmp_path / "s.zarr") as st:
        assert st.num_classes == 1000 and st.attrs["model_fingerprint"] == model.fingerprint
        b = st.read_block(0, 2, fields=("rows", "argmax"))
    assert b["rows"].shape == (2, 10, 1000)
    np.testing.assert_allclose(b["rows"].astype(np.float64).sum(-1), 1.0, atol=2e-2)
