"""Store layouts: one registry maps every stored ``layout`` attribute to its class; the store layer imports nothing above it."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from smoothcert import cli
from smoothcert.store import LAYOUTS, CompactFullS0, CompactRows, FullRows, StoreError, create_store, open_store
from smoothcert.store.format import ATTRS_KEY, StoreShape, sealed
from smoothcert.store.layouts import PART_CRC, layout_of

STORE_DIR = Path(__file__).resolve().parents[1] / "store"


def _rows(R, m, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(m), size=R).astype(np.float32)


def _store(path, layout, members=0):
    st = create_store(path, n_inputs=2, n0=3, n=12, num_classes=6, sigma=0.5, dtype="float16", members=members,
                      layout=layout)
    for i in range(2):
        rows = _rows(15, 6, i)
        kw = {"member_logprobs": np.log(np.stack([rows, rows], 1))} if members else {}
        st.write_input(i, rows=rows, label=i, idx=10 + i, **kw)
    st.close()
    return path


def _reseal(path, **changes):
    p = Path(path) / "zarr.json"
    j = json.loads(p.read_text())
    a = dict(j["attributes"][ATTRS_KEY], **changes)
    j["attributes"][ATTRS_KEY] = sealed(a)
    p.write_text(json.dumps(j))


def test_registry_maps_each_stored_layout_attribute_to_its_class(tmp_path):
    assert LAYOUTS == {"full": FullRows, "compact": CompactRows, "compact-s0": CompactFullS0}
    stores = {None: _store(tmp_path / "full.zarr", None), "compact": _store(tmp_path / "c.zarr", CompactRows(3)),
              "compact-s0": _store(tmp_path / "s.zarr", CompactFullS0(3))}
    for stored, path in stores.items():
        with open_store(path) as st:
            assert st.attrs.get("layout") == stored               # a full store keeps the pre-layout attributes
            assert type(st.layout) is LAYOUTS[stored or "full"]
            assert st.verify() == []
    with open_store(stores["compact"]) as st:
        assert st.layout == CompactRows(3) and st.layout.topk == st.topk == 3 and not st.layout.has_full_rows
        assert not st.keeps_full_s0 and st.attrs["format_version"] == 2
    with open_store(stores["compact-s0"]) as st:
        assert st.layout == CompactFullS0(3) and st.layout != CompactRows(3) and st.topk == 3
        assert st.keeps_full_s0 and not st.layout.has_full_rows and st.attrs["format_version"] == 3
    with open_store(stores[None]) as st:
        assert st.layout == FullRows() and st.layout.has_full_rows and st.topk is None
        assert st.keeps_full_s0 and st.attrs["format_version"] == 2       # full stores are written as before
    base = {"num_classes": 6, "members": 0}
    assert isinstance(layout_of(base, "store x"), FullRows)
    assert isinstance(layout_of(dict(base, layout="full"), "store x"), FullRows)
    assert layout_of(dict(base, layout="compact", topk=4), "store x") == CompactRows(4)
    assert layout_of(dict(base, layout="compact-s0", topk=4, format_version=3), "store x") == CompactFullS0(4)


def test_a_layout_in_a_format_version_older_than_the_layout_is_refused_in_one_line(tmp_path):
    path = _store(tmp_path / "s.zarr", CompactFullS0(3))
    _reseal(path, format_version=2)
    with pytest.raises(StoreError) as e:
        open_store(path)
    assert "\n" not in str(e.value) and "layout 'compact-s0', which appeared in format version 3" in str(e.value)


@pytest.mark.parametrize("name", ["sparse", 7, None, ["compact"]])
def test_an_unknown_layout_is_refused_in_one_line_naming_it(tmp_path, name):
    path = _store(tmp_path / "s.zarr", None)
    _reseal(path, layout=name)
    with pytest.raises(StoreError) as e:
        open_store(path)
    msg = str(e.value)
    assert "\n" not in msg and f"layout {name!r}" in msg and "full, compact, compact-s0" in msg, msg
    r = CliRunner().invoke(cli.main, ["store", "info", str(path)])
    assert r.exit_code != 0 and r.output.count("\n") == 1 and repr(name) in r.output, r.output


@pytest.mark.parametrize("layout,members", [(FullRows(), 0), (FullRows(), 2), (CompactRows(4), 0),
                                            (CompactFullS0(4), 0)])
def test_every_field_reads_whole_checksummed_parts_and_stored_fields_cover_every_array(layout, members):
    """What makes one generic read and verify sound for any layout: a field's arrays are exactly the arrays of
    its record checksum's part, and the stored fields read every array the layout declares."""
    shape = StoreShape(3, 5, 20, 10, members)
    specs = layout.arrays(shape, "float16")
    assert [a.name for a in specs].count("argmax") == 1
    fields = layout.fields(shape)
    for name, f in fields.items():
        assert f.part in PART_CRC
        assert list(f.arrays) == [a.name for a in specs if a.part == f.part], name
    covered = {a for f in layout.stored_fields(shape) for a in fields[f].arrays}
    assert covered == {a.name for a in specs}


def test_a_layout_refuses_fields_it_does_not_hold_in_one_line(tmp_path):
    full = _store(tmp_path / "f.zarr", None)
    comp = _store(tmp_path / "c.zarr", CompactRows(3))
    with open_store(full) as st:
        with pytest.raises(StoreError, match="holds no ensemble members"):
            st.read_block(0, 1, fields=("member_logprobs",))
        with pytest.raises(ValueError, match="unknown field 'compact'"):
            st.read_block(0, 1, fields=("compact",))
    with open_store(comp) as st:
        for f, what in (("rows", "full softmax rows"), ("member_logprobs", "ensemble member rows")):
            with pytest.raises(StoreError, match=f"is compact \\(top-3 per row\\): it holds no {what}"):
                st.read_block(0, 1, fields=(f,))
        with pytest.raises(StoreError, match="without whole selection rows") as e:
            st.read_block(0, 1, fields=("rows0",))
        assert "\n" not in str(e.value)
    with open_store(_store(tmp_path / "s.zarr", CompactFullS0(3))) as st:
        for f, what in (("rows", "full softmax rows of the estimation block"),
                        ("member_logprobs", "ensemble member rows")):
            with pytest.raises(StoreError, match=f"is compact \\(top-3 per row\\): it holds no {what}"):
                st.read_block(0, 1, fields=(f,))


def test_read_input_writes_every_layout_again_with_the_same_checksums(tmp_path):
    for name, layout, members in (("f", None, 2), ("c", CompactRows(3), 0), ("s", CompactFullS0(3), 0)):
        src = _store(tmp_path / f"{name}.zarr", layout, members)
        with open_store(src) as st:
            dst = create_store(tmp_path / f"{name}-copy.zarr", n_inputs=2, n0=3, n=12, num_classes=6, sigma=0.5,
                               dtype="float16", members=members, layout=st.layout)
            for s in range(2):
                dst.write_input(s, **st.read_input(s))
            assert dst.fingerprint() == st.fingerprint()
            dst.close()


def _imports(path: Path):
    """(level, module) of every import in a module, those inside functions included."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""
            if node.level == 1 and not node.module:
                for a in node.names:
                    yield 1, a.name
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield 0, a.name


def test_the_store_layer_imports_nothing_above_it_and_has_no_import_cycle():
    graph = {}
    for path in sorted(STORE_DIR.glob("*.py")):
        mod = path.stem
        deps = set()
        for level, name in _imports(path):
            assert level <= 1, f"store/{path.name} imports from above the store: {'.' * level}{name}"
            assert not (level == 0 and name.split(".")[0] in ("smoothcert", "sampler", "certifier", "cli")), \
                f"store/{path.name} imports {name}"
            if level == 1:
                deps.add(name.split(".")[0])
        graph[mod] = deps - {mod}
    state = {}

    def visit(m, stack):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle in store/: " + " -> ".join(stack + [m])
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if d != "__init__":
                visit(d, stack + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])
    for low in ("errors", "format", "checksum", "locations", "backend", "topk", "layouts"):
        assert "api" not in graph[low], f"store/{low}.py must stay below api"
