"""One description per cell: the Python registry (rnnfused/_cells.py) and the C++ one (csrc/common/cells.h) agree,
every per-cell table is derived from them, and the package's imports form no cycle."""
import ast
import os
from pathlib import Path

import pytest
import torch

import rnnfused
from rnnfused._cell_ops import cell_backward_arg_names, cell_forward_arg_names, cell_grad_names, cell_output_names
from rnnfused._cells import CELL_IDS, CELL_KINDS, cell_kind
from rnnfused._inputs import backward_arg_names, forward_arg_names, forward_output_names, grad_names
from rnnfused import _layer_norm_ops as ln

ROOT = Path(__file__).resolve().parents[1]


def _cell_ops():
    """The forward/backward op names of the C++ namespace that are not internal (leading underscore) or another
    family (suffix _triton)."""
    names = [n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("rnnfused::")]
    return {n.split(".")[0] for n in names if not n.startswith("_") and not n.endswith("_triton")}


@pytest.mark.skipif(not rnnfused.extension_loaded(), reason="needs rnnfused._C")
def test_cpp_ops_are_exactly_the_python_registry():
    expected = {f"{k.name}{suffix}" for k in CELL_KINDS.values()
                for suffix in ("", "_backward", "_cell", "_cell_backward")}  # layer ops, single-step cell ops
    expected |= {ln.op_name(k, backward=b) for k in ln.LAYER_NORM_KINDS.values() for b in (False, True)}
    assert _cell_ops() == expected


@pytest.mark.skipif(not rnnfused.extension_loaded(), reason="needs rnnfused._C")
@pytest.mark.parametrize("name", list(ln.LAYER_NORM_KINDS))
def test_cpp_layer_norm_schemas_follow_the_python_spec(name):
    kind = ln.LAYER_NORM_KINDS[name]
    for backward, names, returns in ((False, ln.forward_arg_names(kind), ln.forward_output_names(kind)),
                                     (True, ln.backward_arg_names(kind), ln.grad_names(kind))):
        schema = ln.layer_norm_op(kind, backward=backward)._schema
        assert [a.name for a in schema.arguments] == names
        if not backward:
            assert [f"{a.type} {a.name}".replace("Optional[Tensor]", "Tensor?") for a in schema.arguments] == \
                [t.split("=")[0] for t in ln.schema_types(names)]
        assert len(schema.returns) == len(returns)


@pytest.mark.skipif(not rnnfused.extension_loaded(), reason="needs rnnfused._C")
@pytest.mark.parametrize("name", list(CELL_KINDS))
def test_cpp_schemas_follow_the_python_traits(name):
    kind = CELL_KINDS[name]
    fwd = getattr(torch.ops.rnnfused, name).default._schema
    bwd = getattr(torch.ops.rnnfused, f"{name}_backward").default._schema
    assert [a.name for a in fwd.arguments] == forward_arg_names(kind)
    assert len(fwd.returns) == len(forward_output_names(kind))
    assert [a.name for a in bwd.arguments] == backward_arg_names(kind)
    assert len(bwd.returns) == len(grad_names(kind))


@pytest.mark.skipif(not rnnfused.extension_loaded(), reason="needs rnnfused._C")
@pytest.mark.parametrize("name", list(CELL_KINDS))
def test_cpp_cell_op_schemas_follow_the_python_traits(name):
    kind = CELL_KINDS[name]
    fwd = getattr(torch.ops.rnnfused, f"{name}_cell").default._schema
    bwd = getattr(torch.ops.rnnfused, f"{name}_cell_backward").default._schema
    assert [a.name for a in fwd.arguments] == cell_forward_arg_names(kind)
    assert len(fwd.returns) == len(cell_output_names(kind))
    assert [a.name for a in bwd.arguments] == cell_backward_arg_names(kind)
    assert len(bwd.returns) == len(cell_grad_names(kind))


def test_registry_entries_are_consistent():
    for name, kind in CELL_KINDS.items():
        assert cell_kind(kind.mode) is kind and cell_kind(name) is kind
        module = getattr(rnnfused, kind.module)
        cell = getattr(rnnfused, kind.cell_module)
        assert issubclass(module, torch.nn.RNNBase) and issubclass(cell, torch.nn.RNNCellBase)
        assert module._MODE in ("RNN_TANH", kind.mode) and kind.torch_cell is cell_kind(cell._MODE).torch_cell
        assert kind.family == kind.torch_module.__name__.lower()
        if kind.layer_norm_step is not None:
            ln_module = getattr(rnnfused, kind.layer_norm_module)
            ln_cell = getattr(rnnfused, kind.layer_norm_cell_module)
            assert ln_module._MODE == kind.mode and ln_cell._MODE == kind.mode
    assert list(CELL_IDS.values()) == list(range(len(CELL_KINDS)))


def test_triton_cell_ids_come_from_the_registry():
    pytest.importorskip("triton")
    from rnnfused._triton import cell_math

    for name, constant in (("lstm", "LSTM"), ("gru", "GRU"), ("rnn_tanh", "RNN_TANH"), ("rnn_relu", "RNN_RELU")):
        assert getattr(cell_math, constant).value == CELL_IDS[name]


def test_benchmark_cells_come_from_the_registry():
    from benchmarks.config import CELLS

    assert CELLS == tuple(dict.fromkeys(k.family for k in CELL_KINDS.values()))


# ------------------------------------------------------------------------------------------------ import graph
PACKAGES = {"rnnfused": ROOT / "rnnfused", "rnnfused._triton": ROOT / "triton_kernels"}


def _modules():
    """{module name: path} of the installed package's Python modules."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _imports(name: str, path: Path, known) -> set:
    """The package modules that ``name`` imports anywhere in its body (module level or inside functions)."""
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_imports_form_no_cycle():
    graph = _graph()
    # Package __init__ files import their submodules (that is their job); a cycle is between modules.
    edges = {m: {d for d in deps if d not in PACKAGES} for m, deps in graph.items() if m not in PACKAGES}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for dep in edges.get(m, ()):
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_triton_kernels_depend_only_on_leaf_modules():
    graph = _graph()
    heavy = {"rnnfused.backends", "rnnfused.functional", "rnnfused.modules", "rnnfused.info"}

    def reach(m, seen):
        for dep in graph.get(m, ()):
            if dep not in seen and dep not in PACKAGES:
                seen.add(dep)
                reach(dep, seen)
        return seen

    for m in graph:
        if m.startswith("rnnfused._triton"):
            bad = reach(m, set()) & heavy
            assert not bad, f"{m} imports {sorted(bad)}"
