"""A block of inputs as the methods see it: the n0 / n split made explicit."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Block:
    """Inputs read from a store, with the selection block S0 and estimation block S.

    ``argmax`` (B, R) hard labels and ``rows`` (B, R, m) float32 are the
    stored arrays (or the ensemble's, when members were chosen); S0 is rows
    ``0:n0_use`` and S is rows ``n0:n0 + n_use`` of each input (``n_i`` of
    them, fewer for adaptive inputs). Methods must take classes and
    thresholds from S0 and estimates from S only.
    """

    idx: np.ndarray
    label: np.ndarray
    n_rows: np.ndarray
    core_predict: np.ndarray
    n0: int              # the store's selection block size (S starts here)
    n0_use: int
    n_use: int
    sigma: float
    m: int
    argmax: np.ndarray | None = None
    rows: np.ndarray | None = None
    member_logprobs: np.ndarray | None = None
    # compact stores only (rows is None then): topk_p (B, R, K) float32, topk_c (B, R, K), entropy (B, R)
    # float64; read them through certifier.compact, which says what each method gets from them
    compact: dict | None = None
    # arrays a method reads from a second store for these inputs (``incremental``: the base store's selection and
    # estimation counts and its first P estimation labels), filled by the method's ``read_extra`` hook
    extra: dict | None = None

    def __len__(self) -> int:
        return len(self.idx)

    @property
    def n_i(self) -> np.ndarray:
        """(B,) rows of S available per input (n_use, or fewer for an adaptive input)."""
        return np.minimum(self.n_rows - self.n0, self.n_use).astype(np.int64)

    def s0_labels(self) -> np.ndarray:
        return self.argmax[:, : self.n0_use]

    def s_labels(self) -> np.ndarray:
        return self.argmax[:, self.n0 : self.n0 + self.n_use]

    def s0_rows(self) -> np.ndarray:
        return self.rows[:, : self.n0_use]

    def s_rows(self) -> np.ndarray:
        return self.rows[:, self.n0 : self.n0 + self.n_use]
