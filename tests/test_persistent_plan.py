"""The persistent kernels' fit rule and geometry (csrc/cuda/kernels/persistent_plan.cuh), tested on the host.

The header is torch-free plain C++: this file compiles a tiny driver with g++ (skipped without one), feeds it layer
sizes and made-up GPU limits, and checks the invariants the kernel relies on (no out-of-bounds staging, conflict-free
strides, the shared-memory layout inside the budget, every hidden unit owned by exactly one CTA) and the geometry
the fit table of csrc/cuda/persistent/DESIGN.md quotes for the H100 and the A100.
"""
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DRIVER = r"""
#include <cstdio>
#include <iostream>
#include "cuda/kernels/persistent_plan.cuh"
using namespace rnnfused::persistent;
int main() {
  int dir, gates, elem, acc, ntiles, states, sms, smem, coop, cc, units, nchunk;
  long long hidden, batch;
  while (std::cin >> dir >> gates >> hidden >> batch >> elem >> acc >> ntiles >> states >> sms >> smem >> coop >> cc
                  >> units >> nchunk) {
    PlanRequest r;
    r.dir = Direction(dir); r.gates = gates; r.hidden = hidden; r.batch = batch; r.elem_bytes = elem;
    r.acc_bytes = acc; r.max_ntiles = ntiles; r.state_arrays = states; r.units_override = units;
    r.n_chunk_override = nchunk;
    DeviceLimits d; d.sm_count = sms; d.smem_per_block_optin = smem; d.cooperative_launch = coop != 0;
    d.cc_major = cc;
    const Plan p = make_plan(r, d);
    const Geometry& g = p.geo;
    std::printf("{\"ok\": %d, \"why\": \"%s\", \"units\": %d, \"rows\": %d, \"rows_padded\": %d, \"ctas\": %d, "
                "\"segment\": %d, \"k_padded\": %d, \"chunk_elems\": %d, \"chunks\": %d, \"active_warps\": %d, "
                "\"row_stride\": %d, \"n_chunk\": %d, \"passes\": %d, \"ring_rows\": %d, \"partial_stride\": %d, "
                "\"off\": [%lld, %lld, %lld, %lld, %lld, %lld], \"smem\": %lld, \"describe\": \"%s\"}\n",
                p.ok, p.why_not.c_str(), g.units, g.rows, g.rows_padded, g.ctas, g.segment, g.k_padded,
                g.chunk_elems, g.chunks, g.active_warps, g.row_stride, g.n_chunk, g.passes, g.ring_rows,
                g.partial_stride, (long long)g.off_weights, (long long)g.off_stage, (long long)g.off_partials,
                (long long)g.off_state, (long long)g.off_bias, (long long)g.off_lengths, (long long)g.smem_bytes,
                p.ok ? describe(g).c_str() : "");
  }
  return 0;
}
"""

H100 = dict(sms=132, smem=232448, coop=1, cc=9)
A100 = dict(sms=108, smem=166912, coop=1, cc=8)
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
DTYPE_BYTES = {"bf16": (2, 4, 4), "fp16": (2, 4, 4), "fp32": (4, 4, 4), "fp64": (8, 8, 2)}  # elem, acc, max_ntiles


@pytest.fixture(scope="module")
def planner(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("needs a C++ compiler")
    tmp = tmp_path_factory.mktemp("plan")
    src, exe = tmp / "plan_driver.cpp", tmp / "plan_driver"
    src.write_text(DRIVER)
    subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", os.path.join(ROOT, "csrc"), str(src), "-o",
                    str(exe)], check=True)

    def plan_many(requests):
        lines = []
        for q in requests:
            elem, acc, ntiles = DTYPE_BYTES[q["dtype"]]
            gates = GATES[q["cell"]]
            states = 2 if q["cell"] == "lstm" else 1
            dev = q.get("device", H100)
            lines.append(" ".join(str(v) for v in (
                1 if q["dir"] == "bwd" else 0, gates, q["H"], q["B"], elem, acc, ntiles, states, dev["sms"],
                dev["smem"], dev["coop"], dev["cc"], q.get("units", 0), q.get("nchunk", 0))))
        out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
        return [json.loads(line) for line in out.stdout.splitlines()]

    return plan_many


def req(cell, dtype, H, B, direction="fwd", **kw):
    return dict(cell=cell, dtype=dtype, H=H, B=B, dir=direction, **kw)


GRID = [req(cell, dtype, H, B, d, device=dev)
        for cell in GATES for dtype in DTYPE_BYTES for H in (1, 37, 64, 256, 768, 1000, 1024, 2048)
        for B in (1, 7, 16, 64, 512) for d in ("fwd", "bwd") for dev in (H100, A100)]


def test_geometry_invariants_over_the_grid(planner):
    """Every plan that fits is one the kernel can run without out-of-bounds accesses or a missing unit."""
    plans = planner(GRID)
    fitted = 0
    for q, p in zip(GRID, plans):
        if not p["ok"]:
            assert p["why"], q
            continue
        fitted += 1
        dev, G, fwd = q["device"], GATES[q["cell"]], q["dir"] == "fwd"
        elem, acc, ntiles = DTYPE_BYTES[q["dtype"]]
        ident = f"{q}"
        assert p["ctas"] <= dev["sms"], ident                        # co-resident with one CTA per SM
        assert p["smem"] <= dev["smem"], ident
        assert (p["ctas"] - 1) * p["units"] < q["H"] <= p["ctas"] * p["units"], ident  # each unit owned once
        assert p["rows"] == (G * p["units"] if fwd else p["units"]) and p["rows"] <= 64, ident
        assert p["rows_padded"] % 16 == 0 and p["rows"] <= p["rows_padded"] < p["rows"] + 16, ident
        assert p["segment"] == (p["units"] if fwd else G * p["units"]), ident
        assert p["chunk_elems"] * elem == 64 and p["k_padded"] % p["chunk_elems"] == 0, ident
        assert p["ctas"] * p["segment"] <= p["k_padded"] < p["ctas"] * p["segment"] + p["chunk_elems"], ident
        assert p["k_padded"] >= (q["H"] if fwd else G * q["H"]), ident
        assert p["chunks"] * p["chunk_elems"] == p["k_padded"], ident
        assert p["active_warps"] == min(8, p["chunks"]), ident
        assert p["row_stride"] % 128 == 64 and p["row_stride"] >= p["k_padded"] * elem, ident  # conflict-free LDS.128
        assert p["n_chunk"] % 8 == 0 and 8 <= p["n_chunk"] <= 8 * ntiles, ident
        assert p["passes"] * p["n_chunk"] == p["ring_rows"] >= q["B"] > (p["passes"] - 1) * p["n_chunk"], ident
        assert p["units"] * p["n_chunk"] <= 256 * 2, ident          # epilogue elements per thread <= 2
        assert p["partial_stride"] == p["rows_padded"] + 4, ident
        # Shared-memory regions in order, 16-byte aligned, each large enough for what the kernel puts there.
        w, st, pa, sa, bi, le = p["off"]
        assert all(o % 16 == 0 for o in p["off"]), ident
        assert w == 0 and st >= w + p["rows"] * p["row_stride"], ident
        assert pa >= st + p["active_warps"] * 4 * p["n_chunk"] * 64, ident  # kStages=4 chunks of 64 B per warp
        assert sa >= pa + p["active_warps"] * p["n_chunk"] * p["partial_stride"] * acc, ident
        states = 2 if q["cell"] == "lstm" else 1
        assert bi >= sa + states * p["units"] * p["ring_rows"] * acc, ident
        assert le >= bi + (2 * G * p["units"] * acc if fwd else 0), ident
        assert p["smem"] >= le + 4 * p["ring_rows"], ident
    assert fitted > len(GRID) // 2  # the rule is not vacuous


@pytest.mark.parametrize("case,expected", [
    # The benchmark shapes on the H100: (ctas, units, rows_padded, n_chunk, passes)
    (req("lstm", "fp16", 768, 16), (96, 8, 32, 16, 1)),
    (req("lstm", "bf16", 1024, 8), (128, 8, 32, 8, 1)),
    (req("gru", "bf16", 768, 16), (77, 10, 32, 16, 1)),
    (req("lstm", "fp32", 512, 64), (128, 4, 16, 32, 2)),
    (req("lstm", "bf16", 1024, 8, "bwd"), (64, 16, 16, 8, 1)),
    (req("gru", "bf16", 768, 16, "bwd"), (48, 16, 16, 16, 1)),
], ids=lambda v: "-".join(str(x) for x in v.values()) if isinstance(v, dict) else None)
def test_benchmark_shapes_geometry(planner, case, expected):
    (p,) = planner([case])
    assert p["ok"], p["why"]
    assert (p["ctas"], p["units"], p["rows_padded"], p["n_chunk"], p["passes"]) == expected, p["describe"]


def test_preference_fewest_mtiles_then_fewest_ctas(planner):
    # LSTM H=768: 6 units/CTA would need 128 CTAs with 24 rows; 8 units fill the same two m16 tiles with 96 CTAs.
    (p,) = planner([req("lstm", "bf16", 768, 8)])
    assert (p["units"], p["ctas"], p["rows_padded"]) == (8, 96, 32)
    # H=1024: 4 units (one m16 tile) would need 256 CTAs > 132 SMs.
    (p,) = planner([req("lstm", "bf16", 1024, 8)])
    assert p["ctas"] <= 132 and p["rows_padded"] == 32


def test_overrides_are_honoured(planner):
    (p,) = planner([req("lstm", "bf16", 1024, 16, units=16, nchunk=8)])
    assert p["ok"] and (p["units"], p["ctas"], p["n_chunk"], p["passes"]) == (16, 64, 8, 2)
    (p,) = planner([req("lstm", "bf16", 1024, 16, units=3)])  # 342 CTAs > 132 SMs: nothing matches
    assert not p["ok"] and "CTAs" in p["why"]


@pytest.mark.parametrize("device,why", [
    (dict(H100, coop=0), "cooperative launch"),
    (dict(H100, cc=7), "compute capability"),
], ids=["no-coop", "sm70"])
def test_device_requirements(planner, device, why):
    (p,) = planner([req("lstm", "bf16", 256, 8, device=device)])
    assert not p["ok"] and why in p["why"]


def test_too_large_reports_the_shared_memory_need(planner):
    # LSTM H=2048 bf16: 16 units x 4 gates x 2048 x 2 B = 256 KiB of W_hh per CTA > 227 KiB.
    (p,) = planner([req("lstm", "bf16", 2048, 16)])
    assert not p["ok"] and "shared memory" in p["why"] and "232448" in p["why"]
    # H beyond 64 rows per CTA on 132 SMs: 8448 units (LSTM: 16 per CTA at most).
    (p,) = planner([req("lstm", "bf16", 8448 + 1, 1)])
    assert not p["ok"] and "CTAs" in p["why"]


def test_a100_fits_less_than_h100(planner):
    h100, a100 = planner([req("lstm", "bf16", 1024, 64, "bwd"), req("lstm", "bf16", 1024, 64, "bwd", device=A100)])
    assert h100["ok"]
    assert (not a100["ok"]) or a100["passes"] >= h100["passes"]


# ------------------------------------------------------------------------------------------------ weight packing
def _pack_op():
    try:
        import torch

        import rnnfused  # noqa: F401  (loads the extension)

        return torch.ops.rnnfused._persistent_pack.default
    except (ImportError, AttributeError, RuntimeError):
        return None


@pytest.mark.skipif(_pack_op() is None, reason="rnnfused._C was built without the persistent CUDA kernels")
@pytest.mark.parametrize("gates", [4, 3, 1], ids=["lstm", "gru", "rnn"])
@pytest.mark.parametrize("hidden,units", [(1, 1), (37, 5), (64, 16), (30, 8)])
def test_packed_weights_reproduce_the_recurrent_products(gates, hidden, units):
    """The packed slices, multiplied by the exchange vector in the kernel's producer-major K order (CTA c's entries
    at c*segment + g*units + u), give exactly h W_hhᵀ (forward rows g*units + u of CTA c) and dgh W_hh (backward
    row u of CTA c). Runs the packing op on CPU tensors in float64 (8 elements per 64-byte chunk)."""
    import torch

    pack = _pack_op()
    G, H, U, B = gates, hidden, units, 3
    C = -(-H // U)
    chunk = 8
    w = torch.randn(G * H, H, dtype=torch.float64)
    units_of = torch.arange(C * U).view(C, U)  # hidden unit j of (cta, u); j >= H is padding

    # forward: v[b, c*U + u] = h[b, j]
    Kp = -(-C * U // chunk) * chunk
    packed = pack(w, G, False, C, U, Kp)
    assert packed.shape == (C, G * U, Kp)
    h = torch.randn(B, H, dtype=torch.float64)
    v = torch.zeros(B, Kp, dtype=torch.float64)
    v[:, :H] = h
    acc = torch.einsum("crk,bk->crb", packed, v).view(C, G, U, B)
    expected = (h @ w.T).view(B, G, H)
    for c in range(C):
        for u in range(U):
            j = int(units_of[c, u])
            want = expected[:, :, j].T if j < H else torch.zeros(G, B, dtype=torch.float64)
            torch.testing.assert_close(acc[c, :, u], want, rtol=1e-12, atol=1e-12)

    # backward: v[b, c*G*U + g*U + u] = dgh[b, g*H + j]
    Kp = -(-C * G * U // chunk) * chunk
    packed = pack(w, G, True, C, U, Kp)
    assert packed.shape == (C, U, Kp)
    dgh = torch.randn(B, G * H, dtype=torch.float64)
    v = torch.zeros(B, Kp, dtype=torch.float64)
    for c in range(C):
        for g in range(G):
            for u in range(U):
                j = int(units_of[c, u])
                if j < H:
                    v[:, c * G * U + g * U + u] = dgh[:, g * H + j]
    acc = torch.einsum("cuk,bk->cub", packed, v)
    expected = dgh @ w  # [B, H]
    for c in range(C):
        for u in range(U):
            j = int(units_of[c, u])
            want = expected[:, j] if j < H else torch.zeros(B, dtype=torch.float64)
            torch.testing.assert_close(acc[c, u], want, rtol=1e-12, atol=1e-12)
