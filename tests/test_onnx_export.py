"""torch.onnx.export of models holding fused modules and cells, with the dynamo exporter and with dynamo=False, and
onnxruntime's output against PyTorch's (float32, 1e-5).

While exporting, the fused modules run nn.*'s own RNN functions on their parameters (which the exporters translate
to ONNX's LSTM/GRU/RNN ops); LSTMs with proj_size, which ONNX's LSTM op cannot express, export the reference
equations as plain ops. Outside export nothing changes: torch.export still records the rnnfused ops.
"""
import io
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnfused import FusedGRU, FusedGRUCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell

onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx (installed by .ci/env)")
pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript (installed by .ci/env)")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests run the model in onnxruntime (installed by .ci/env)")

I, H, B, T = 4, 6, 3, 5
EXPORTERS = {"dynamo": True, "torchscript": False}


def export(model, args, dynamo):
    """The ONNX ModelProto of ``model`` traced with ``args``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' advice on opsets, dynamic axes, batch_first ...
        if dynamo:
            return torch.onnx.export(model, args, dynamo=True, verbose=False).model_proto
        buf = io.BytesIO()
        torch.onnx.export(model, args, buf, dynamo=False)
        return onnx.load_from_string(buf.getvalue())


def run_onnx(proto, args):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(a) for a in sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)})]


def op_types(proto):
    return {n.op_type for n in proto.graph.node}


def assert_onnx_matches(model, example, fresh, dynamo):
    """Exports with ``example`` and compares onnxruntime with PyTorch on ``fresh`` inputs of the same shapes."""
    proto = export(model, example, dynamo)
    with torch.no_grad():
        expected = model(*fresh)
    got = run_onnx(proto, fresh)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5, msg=lambda m, i=i: f"output {i}: {m}")
    return proto


class AllFused(nn.Module):
    """Every fused module and cell in one model: multi-layer, bidirectional, batch_first, initial states."""

    def __init__(self):
        super().__init__()
        self.lstm = FusedLSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = FusedGRU(2 * H, H, bidirectional=True)
        self.rnn = FusedRNN(2 * H, H, nonlinearity="relu")
        self.rnn_tanh = FusedRNN(H, H, num_layers=2)
        self.lstm_cell = FusedLSTMCell(H, H)
        self.gru_cell = FusedGRUCell(H, H)
        self.rnn_cell = FusedRNNCell(H, H, nonlinearity="tanh")

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))                # x [B, T, I], states [4, B, H]
        y, hg = self.gru(y.transpose(0, 1))                # time-major from here
        y, hr = self.rnn(y)
        y, ht = self.rnn_tanh(y)
        hc, cc = self.lstm_cell(y[-1], (h[-1], c[-1]))
        hg2 = self.gru_cell(hc, hg[0])
        hr2 = self.rnn_cell(hg2)
        return y, h, c, hg, hr, ht, hc, cc, hr2


def _all_fused_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, I, generator=g), torch.randn(4, B, H, generator=g), torch.randn(4, B, H, generator=g))


@pytest.mark.parametrize("exporter", list(EXPORTERS))
def test_every_fused_module_and_cell_exports_to_standard_rnn_ops(exporter):
    torch.manual_seed(0)
    model = AllFused().eval()
    proto = assert_onnx_matches(model, _all_fused_inputs(1), _all_fused_inputs(2), EXPORTERS[exporter])
    assert {"LSTM", "GRU"} <= op_types(proto), sorted(op_types(proto))
    assert "rnnfused" not in str([n.domain for n in proto.graph.node])


class ProjLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = FusedLSTM(I, H, num_layers=2, bidirectional=True, proj_size=2)

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))
        return y, h, c


@pytest.mark.parametrize("exporter", list(EXPORTERS))
def test_lstm_with_proj_size_exports_as_an_equivalent_graph(exporter):
    """nn.LSTM(proj_size>0) itself does not export (dynamo=False: unsupported; dynamo: a graph onnxruntime rejects,
    torch 2.13); the fused one exports the reference equations."""
    torch.manual_seed(0)
    model = ProjLSTM().eval()

    def inputs(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(T, B, I, generator=g), torch.randn(4, B, 2, generator=g), torch.randn(4, B, H, generator=g)

    assert_onnx_matches(model, inputs(1), inputs(2), EXPORTERS[exporter])


class Packed(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, lengths):
        out, h = self.rnn(pack_padded_sequence(x, lengths, enforce_sorted=False))
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])
        return (out,) + (h if isinstance(h, tuple) else (h,))


def _packed_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, I, generator=g), torch.tensor([5, 2, 4])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_packed_input_exports_with_the_torchscript_exporter(cell):
    torch.manual_seed(0)
    rnn = FusedLSTM(I, H, bidirectional=True) if cell == "lstm" else FusedGRU(I, H, num_layers=2)
    proto = assert_onnx_matches(Packed(rnn).eval(), _packed_inputs(1), _packed_inputs(2), dynamo=False)
    assert cell.upper() in op_types(proto)


def test_packed_input_with_the_dynamo_exporter_where_nn_exports_it():
    model = Packed(FusedLSTM(I, H)).eval()
    try:
        export(Packed(model.rnn.to_torch()).eval(), _packed_inputs(1), dynamo=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch.onnx raises for nn.LSTM itself
        pytest.skip(f"nn.LSTM with packed input does not export with the dynamo exporter in torch "
                    f"{torch.__version__} either ({type(exc).__name__})")
    assert_onnx_matches(model, _packed_inputs(1), _packed_inputs(2), dynamo=True)


def test_torch_export_still_records_the_fused_ops_after_an_onnx_export():
    torch.manual_seed(0)
    model = AllFused().eval()
    export(model, _all_fused_inputs(1), dynamo=False)
    program = torch.export.export(model, _all_fused_inputs(1))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    for op in ("rnnfused.lstm", "rnnfused.gru", "rnnfused.rnn_relu", "rnnfused.lstm_cell", "rnnfused.gru_cell",
               "rnnfused.rnn_tanh_cell"):
        assert any(t.startswith(op + ".") for t in targets), (op, sorted(targets))
    torch.testing.assert_close(program.module()(*_all_fused_inputs(3)), model(*_all_fused_inputs(3)))
