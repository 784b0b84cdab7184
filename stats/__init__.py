"""Statistics shared by the sampler and the certifier: pure functions over arrays, no I/O.

- ``bounds``: one-sided confidence bounds on a proportion (Clopper-Pearson)
  and on a mean of values in [0, 1] (Hoeffding, empirical Bernstein).
- ``hypotheses``: the exact binomial test against p = 1/2.
- ``counts``: top-k of count vectors with the project's tie rule.
- ``adaptive``: the stopping rule of adaptive certification, used offline
  by ``certifier.adaptive`` and online by the sampler (one code decides both).

This layer sits beside ``store`` at the bottom: it imports nothing from the
project's other layers.
"""
