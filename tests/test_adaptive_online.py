"""Online adaptive sampling (``smoothcert sample --adaptive-radius``) against the offline replay of a full run.

The same command without adaptive sampling stores every row; the offline
replay of CERTIFYADP on that store says where each input's rule decides. The
adaptive store must hold exactly those rows (the same noise, hence the same
rows) and certify to the same outcomes.
"""
import numpy as np
import pytest
import torch

from smoothcert.certifier import CertifyOptions, certify
from smoothcert.store import StoreError, open_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N0, NN, BS, SIGMA, R, M = 50, 400, 50, 0.25, 0.1, 5
STAGES = [50, 150, 400]  # stage ends n0 + n_j = 100, 200, 450: on batch boundaries, so batches are identical


@pytest.fixture
def env(tmp_path):
    # a linear model; input i lies at distance s_i from the grey image along its class's weight direction,
    # so the inputs range from ambiguous (aborted early) to robust (certified at the first stage)
    torch.manual_seed(0)
    W = torch.randn(M, 36) * 2
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, M))
    with torch.no_grad():
        net[1].weight.copy_(W)
        net[1].bias.copy_(-0.5 * W.sum(1))
    model = tmp_path / "m.pt"
    torch.jit.script(net).save(str(model))
    Wn = (W / W.norm(dim=1, keepdim=True)).numpy()
    x = (0.5 + np.linspace(0.05, 1.0, 10)[:, None] * Wn[np.arange(10) % M]).reshape(10, 1, 6, 6).astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(np.int64))
    return tmp_path, str(model), str(tmp_path / "d.npz")


def opts():
    return CertifyOptions(radius=R, stages=STAGES, alpha=0.01, beta=0.01)


def test_online_adaptive_store_equals_offline_replay(env):
    from click.testing import CliRunner

    from smoothcert.cli import main
    from smoothcert.sampler.run import sample

    root, model, data = env
    common = dict(models=[model], data=data, sigma=SIGMA, n0=N0, n=NN, batch_size=BS, device="cpu",
                  dtype="float32", progress=False, log=lambda s: None)
    sample(str(root / "full"), **common)
    res = CliRunner().invoke(main, ["sample", "--model", model, "--data", data, "--sigma", str(SIGMA), "--n0", str(N0),
                                    "--n", str(NN), "--batch-size", str(BS), "--device", "cpu", "--dtype", "float32",
                                    "--no-progress", "--adaptive-radius", str(R), "--adaptive-stages", "50,150,400",
                                    "--adaptive-alpha", "0.01", "--adaptive-beta", "0.01", str(root / "adp")])
    assert res.exit_code == 0, res.output
    assert "SampleRF" in res.output
    full, _ = certify(root / "full", "adaptive", opts(), progress=False)
    adp, meta = certify(root / "adp", "adaptive", opts(), progress=False)
    cols = ["idx", "predict", "radius", "rows_used", "outcome"]
    assert full[cols].equals(adp[cols])
    assert set(full["outcome"]) == {"certified", "aborted", "abstained"}
    assert set(full["rows_used"]) == {50, 150, 400}
    assert meta["adaptive"]["short_inputs"] == 0
    with open_store(root / "full") as a, open_store(root / "adp") as b:
        fa = a.read_block(0, a.n_inputs, fields=("rows", "argmax"))
        fb = b.read_block(0, b.n_inputs, fields=("rows", "argmax"))
        assert b.attrs["adaptive"]["stages"] == STAGES and b.attrs["adaptive"]["radius"] == R
    for i in range(len(fa["idx"])):
        r = int(fb["n_rows"][i])
        assert r == N0 + int(adp.iloc[i]["rows_used"])
        assert np.array_equal(fa["rows"][i, :r], fb["rows"][i, :r])
        assert np.array_equal(fa["argmax"][i, :r], fb["argmax"][i, :r])
        assert np.isnan(fb["rows"][i, r:]).all()
    # methods that need every row say so
    if (fb["n_rows"] < N0 + NN).any():
        with pytest.raises(ValueError, match="rows stored"):
            certify(root / "adp", "cohen", progress=False)
    # re-running with another rule is refused; the same command resumes (nothing left to do)
    with pytest.raises(StoreError, match="adaptive"):
        sample(str(root / "adp"), adaptive_radius=0.2, adaptive_stages=STAGES, adaptive_alpha=0.01,
               adaptive_beta=0.01, **common)
    again = sample(str(root / "adp"), adaptive_radius=R, adaptive_stages=STAGES, adaptive_alpha=0.01,
                   adaptive_beta=0.01, **common)
    assert again.written == 0 and again.skipped == 10
