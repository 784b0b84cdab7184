"""Stores for the soundness checks: built once per session through the public import path."""
from __future__ import annotations

import numpy as np
import pytest

from . import sim

N_HARD = 1500      # inputs (independent trials) of the hard-label store
N_ENSEMBLE = 600   # inputs of the ensemble store (per-member rows make it 4x larger)


def _build(tmp_path_factory, name, scenario, n_inputs, seed):
    from smoothcert.store.importer import import_npz

    sim.check_thresholds_clear(scenario)
    data = scenario.sample(n_inputs, seed=seed)
    d = tmp_path_factory.mktemp(name)
    np.savez(d / "src.npz", **scenario.npz_arrays(data))
    import_npz(d / "src.npz", d / "store", sigma=scenario.sigma, n0=scenario.n0)
    (d / "src.npz").unlink()
    return {"path": d / "store", "scenario": scenario, "data": data}


@pytest.fixture(scope="session")
def hard_store(tmp_path_factory):
    return _build(tmp_path_factory, "hard", sim.hard_scenario(), N_HARD, seed=101)


@pytest.fixture(scope="session")
def ensemble_store(tmp_path_factory):
    return _build(tmp_path_factory, "ensemble", sim.ensemble_scenario(), N_ENSEMBLE, seed=202)
