"""``smoothcert store merge --data DATA``: the store's merge, with parts checked against the data set they came from.

A sampled part's ``data_fingerprint`` is the sampler's (``sampler.data.fingerprint``
of its selection), so only the sampler can recompute it from DATA; the store
layer's ``store.merge.merge_stores`` takes that recomputation as a function
of an ``--indices`` spec, and this module supplies it. DATA is read once, the
first time a part needs checking.
"""
from __future__ import annotations

from ..store.merge import merge_stores as _merge_stores


def data_fingerprinter(data, preprocessing=None):
    """The function ``spec -> data fingerprint of DATA at --indices spec`` that ``store.merge`` checks parts with.

    ``preprocessing``: the parts' ``data_preprocessing`` (an image folder's
    resize, crop and class list), with which DATA is read.
    """
    from .data import fingerprint, load_data, parse_indices, preprocessing_options

    loaded = []

    def fp(spec) -> str:
        if not loaded:
            loaded.append(load_data(str(data), **preprocessing_options(preprocessing)))
        ds = loaded[0]
        return fingerprint(ds, parse_indices(spec, len(ds)))

    return fp


def _preprocessing(sources, storage_options=None):
    """The first part's ``data_preprocessing`` (the merge refuses parts that differ in it)."""
    from ..store import open_store

    with open_store(str(sources[0]), storage_options=storage_options) as st:
        return st.attrs.get("data_preprocessing")


def merge_stores(sources, out, *, data=None, **kwargs) -> dict:
    """``store.merge.merge_stores`` with ``data`` (as ``smoothcert sample --data`` takes it) checked by the sampler."""
    fp = None
    if data is not None:
        fp = data_fingerprinter(data, _preprocessing(sources, kwargs.get("storage_options")))
    return _merge_stores(sources, out, data=data, data_fingerprint=fp, **kwargs)
