"""The persistent kernels' fit rule and geometry (csrc/cuda/kernels/persistent_plan.cuh), tested on the host.

The header is torch-free plain C++: this file compiles a tiny driver with g++ (skipped without one), feeds it layer
sizes and made-up GPU limits, and checks the invariants the kernel relies on (no out-of-bounds staging, conflict-free
strides, the shared-memory layout inside the budget, every hidden unit owned by exactly one CTA) and the geometry
the fit table of csrc/cuda/persistent/DESIGN.md quotes for the H100 and the A100 — for every synchronisation variant
(persistent_tuning.h). Also host-tested here: the tuning knob's parser and the watchdog's stall-record decoding
(persistent_stall.h), and the weight packing against the kernel's K order (every build has that op).
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
  int dir, gates, elem, acc, ntiles, states, sms, smem, coop, cc, units, nchunk, variant;
  long long hidden, batch;
  while (std::cin >> dir >> gates >> hidden >> batch >> elem >> acc >> ntiles >> states >> sms >> smem >> coop >> cc
                  >> units >> nchunk >> variant) {
    PlanRequest r;
    r.dir = Direction(dir); r.gates = gates; r.hidden = hidden; r.batch = batch; r.elem_bytes = elem;
    r.acc_bytes = acc; r.max_ntiles = ntiles; r.state_arrays = states; r.units_override = units;
    r.n_chunk_override = nchunk; r.variant = Variant(variant);
    DeviceLimits d; d.sm_count = sms; d.smem_per_block_optin = smem; d.cooperative_launch = coop != 0;
    d.cc_major = cc;
    const Plan p = make_plan(r, d);
    const Geometry& g = p.geo;
    std::printf("{\"ok\": %d, \"why\": \"%s\", \"units\": %d, \"rows\": %d, \"rows_padded\": %d, \"ctas\": %d, "
                "\"segment\": %d, \"seg_stride\": %d, \"k_padded\": %d, \"chunk_elems\": %d, \"chunks\": %d, "
                "\"active_warps\": %d, \"row_stride\": %d, \"n_chunk\": %d, \"passes\": %d, \"ring_rows\": %d, "
                "\"partial_stride\": %d, \"flag_stride\": %d, \"ll_row_words\": %d, \"ll_valid_words\": %d, "
                "\"stage_warp\": %lld, \"off\": [%lld, %lld, %lld, %lld, %lld, %lld, %lld], \"smem\": %lld, "
                "\"ring_bytes\": %lld, \"abort_word\": %lld, \"flag_words\": %lld, \"describe\": \"%s\"}\n",
                p.ok, p.why_not.c_str(), g.units, g.rows, g.rows_padded, g.ctas, g.segment, g.seg_stride, g.k_padded,
                g.chunk_elems, g.chunks, g.active_warps, g.row_stride, g.n_chunk, g.passes, g.ring_rows,
                g.partial_stride, g.flag_stride, g.ll_row_words, g.ll_valid_words, (long long)g.stage_warp_bytes,
                (long long)g.off_weights, (long long)g.off_stage, (long long)g.off_partials, (long long)g.off_state,
                (long long)g.off_bias, (long long)g.off_lengths, (long long)g.off_xch, (long long)g.smem_bytes,
                (long long)ring_bytes(g), (long long)abort_word_index(g), (long long)flag_words(g),
                p.ok ? describe(g).c_str() : "");
  }
  return 0;
}
"""

H100 = dict(sms=132, smem=232448, coop=1, cc=9)
A100 = dict(sms=108, smem=166912, coop=1, cc=8)
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
DTYPE_BYTES = {"bf16": (2, 4, 4), "fp16": (2, 4, 4), "fp32": (4, 4, 4), "fp64": (8, 8, 2)}  # elem, acc, max_ntiles
VARIANTS = ("baseline", "store_first", "padded", "poll_warp", "ll")  # persistent_tuning.h, in enum order


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
                dev["smem"], dev["coop"], dev["cc"], q.get("units", 0), q.get("nchunk", 0),
                VARIANTS.index(q.get("variant", "baseline")))))
        out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
        return [json.loads(line) for line in out.stdout.splitlines()]

    return plan_many


def req(cell, dtype, H, B, direction="fwd", **kw):
    return dict(cell=cell, dtype=dtype, H=H, B=B, dir=direction, **kw)


GRID = [req(cell, dtype, H, B, d, device=dev)
        for cell in GATES for dtype in DTYPE_BYTES for H in (1, 37, 64, 256, 768, 1000, 1024, 2048)
        for B in (1, 7, 16, 64, 512) for d in ("fwd", "bwd") for dev in (H100, A100)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_geometry_invariants_over_the_grid(planner, variant):
    """Every plan that fits is one the kernel can run without out-of-bounds accesses or a missing unit."""
    grid = [dict(q, variant=variant) for q in GRID]
    plans = planner(grid)
    ll = variant == "ll"
    fitted = 0
    for q, p in zip(grid, plans):
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
        # K entries reserved per CTA: the segment, rounded up to whole 4-byte LL words (one writer per word).
        if ll:
            assert p["seg_stride"] * elem % 4 == 0 and p["segment"] <= p["seg_stride"] < p["segment"] + 4 // elem + 1
            assert p["seg_stride"] == p["segment"] or elem == 2, ident
        else:
            assert p["seg_stride"] == p["segment"], ident
        K = p["ctas"] * p["seg_stride"]
        assert p["chunk_elems"] * elem == 64 and p["k_padded"] % p["chunk_elems"] == 0, ident
        assert K <= p["k_padded"] < K + p["chunk_elems"], ident
        assert p["k_padded"] >= (q["H"] if fwd else G * q["H"]), ident
        assert p["chunks"] * p["chunk_elems"] == p["k_padded"], ident
        assert p["active_warps"] == min(8, p["chunks"]), ident
        assert p["row_stride"] % 128 == 64 and p["row_stride"] >= p["k_padded"] * elem, ident  # conflict-free LDS.128
        assert p["n_chunk"] % 8 == 0 and 8 <= p["n_chunk"] <= 8 * ntiles, ident
        assert p["passes"] * p["n_chunk"] == p["ring_rows"] >= q["B"] > (p["passes"] - 1) * p["n_chunk"], ident
        assert p["units"] * p["n_chunk"] <= 256 * 2, ident          # epilogue elements per thread <= 2
        assert p["partial_stride"] == p["rows_padded"] + 4, ident
        # Flags: one word per CTA (padded: one 128-byte line each), then the abort word on a line of its own.
        assert p["flag_stride"] == (32 if variant == "padded" else 1), ident
        assert p["abort_word"] % 32 == 0 and p["abort_word"] >= p["ctas"] * p["flag_stride"], ident
        assert p["flag_words"] == p["abort_word"] + 32, ident
        # The exchange ring: elements, or 8-byte {payload, tag} words carrying 4 bytes of v each.
        if ll:
            assert p["ll_row_words"] * 4 == p["k_padded"] * elem and p["ll_valid_words"] * 4 == K * elem, ident
        row_bytes = p["ll_row_words"] * 8 if ll else p["k_padded"] * elem
        assert p["ring_bytes"] == 2 * p["ring_rows"] * row_bytes, ident
        # Shared-memory regions in order, 16-byte aligned, each large enough for what the kernel puts there.
        w, st, pa, sa, bi, le, xc = p["off"]
        assert all(o % 16 == 0 for o in p["off"]), ident
        stage_warp = p["n_chunk"] * 64 * (1 if ll else 4)  # LL: one unpacked chunk; else kStages=4 chunks of 64 B
        assert p["stage_warp"] == stage_warp, ident
        assert w == 0 and st >= w + p["rows"] * p["row_stride"], ident
        assert pa >= st + p["active_warps"] * stage_warp, ident
        assert sa >= pa + p["active_warps"] * p["n_chunk"] * p["partial_stride"] * acc, ident
        states = 2 if q["cell"] == "lstm" else 1
        assert bi >= sa + states * p["units"] * p["ring_rows"] * acc, ident
        assert le >= bi + (2 * G * p["units"] * acc if fwd else 0), ident
        assert xc >= le + 4 * p["ring_rows"], ident
        assert p["smem"] >= xc + (p["n_chunk"] * p["seg_stride"] * elem if ll else 0), ident
        assert p["describe"].endswith("variant=" + variant), ident
    assert fitted > len(grid) // 2  # the rule is not vacuous


def test_ll_pads_odd_segments_of_16_bit_types(planner):
    """An LL word holds 4 bytes of v and has one writer, so a CTA's 2-byte segment of odd length gets one zero entry;
    4- and 8-byte types need none. The flag variants never pad."""
    base, ll16, ll32, ll16_bwd = planner([req("gru", "bf16", 100, 9), req("gru", "bf16", 100, 9, variant="ll"),
                                          req("gru", "fp32", 100, 9, variant="ll"),
                                          req("gru", "bf16", 100, 9, "bwd", variant="ll")])
    assert (base["units"], base["ctas"], base["segment"], base["seg_stride"]) == (5, 20, 5, 5)
    assert (ll16["units"], ll16["ctas"], ll16["segment"], ll16["seg_stride"]) == (5, 20, 5, 6)
    assert ll16["ll_valid_words"] == 20 * 6 * 2 // 4 and ll16["k_padded"] == 128
    assert (ll32["segment"], ll32["seg_stride"]) == (5, 5)
    assert ll16_bwd["segment"] % 2 == 1 or ll16_bwd["seg_stride"] == ll16_bwd["segment"]


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


@pytest.mark.skipif(_pack_op() is None, reason="rnnfused._C is not built (or predates the packing op)")
@pytest.mark.parametrize("pad", [0, 1], ids=["seg", "seg+1"])
@pytest.mark.parametrize("gates", [4, 3, 1], ids=["lstm", "gru", "rnn"])
@pytest.mark.parametrize("hidden,units", [(1, 1), (37, 5), (64, 16), (30, 8)])
def test_packed_weights_reproduce_the_recurrent_products(gates, hidden, units, pad):
    """The packed slices, multiplied by the exchange vector in the kernel's producer-major K order (CTA c's entries
    at c*seg_stride + g*units + u), give exactly h W_hhᵀ (forward rows g*units + u of CTA c) and dgh W_hh (backward
    row u of CTA c); the padding columns (seg_stride > segment: the LL variant's, and the K tail) are zero, so
    whatever v holds there does not matter. Runs the packing op on CPU tensors in float64 (8 elements per chunk)."""
    import torch

    pack = _pack_op()
    G, H, U, B = gates, hidden, units, 3
    C = -(-H // U)
    chunk = 8
    w = torch.randn(G * H, H, dtype=torch.float64)
    units_of = torch.arange(C * U).view(C, U)  # hidden unit j of (cta, u); j >= H is padding

    def garbage(Kp):  # v with random values everywhere; the real entries are overwritten below
        return torch.randn(B, Kp, dtype=torch.float64)

    # forward: v[b, c*S + u] = h[b, j]  (S = seg_stride = U + pad)
    S = U + pad
    Kp = -(-C * S // chunk) * chunk
    packed = pack(w, G, False, C, U, Kp, S if pad else 0)
    assert packed.shape == (C, G * U, Kp)
    h = torch.randn(B, H, dtype=torch.float64)
    v = garbage(Kp)
    for c in range(C):
        for u in range(U):
            j = int(units_of[c, u])
            v[:, c * S + u] = h[:, j] if j < H else 0.0  # the kernel writes zero for units beyond H
    acc = torch.einsum("crk,bk->crb", packed, v).view(C, G, U, B)
    expected = (h @ w.T).view(B, G, H)
    for c in range(C):
        for u in range(U):
            j = int(units_of[c, u])
            want = expected[:, :, j].T if j < H else torch.zeros(G, B, dtype=torch.float64)
            torch.testing.assert_close(acc[c, :, u], want, rtol=1e-12, atol=1e-12)

    # backward: v[b, c*S + g*U + u] = dgh[b, g*H + j]  (S = G*U + pad)
    S = G * U + pad
    Kp = -(-C * S // chunk) * chunk
    packed = pack(w, G, True, C, U, Kp, S if pad else 0)
    assert packed.shape == (C, U, Kp)
    dgh = torch.randn(B, G * H, dtype=torch.float64)
    v = garbage(Kp)
    for c in range(C):
        for g in range(G):
            for u in range(U):
                j = int(units_of[c, u])
                v[:, c * S + g * U + u] = dgh[:, g * H + j] if j < H else 0.0
    acc = torch.einsum("cuk,bk->cub", packed, v)
    expected = dgh @ w  # [B, H]
    for c in range(C):
        for u in range(U):
            j = int(units_of[c, u])
            want = expected[:, j] if j < H else torch.zeros(B, dtype=torch.float64)
            torch.testing.assert_close(acc[c, u], want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ tuning knob and stall record
KNOB_DRIVER = r"""
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include "cuda/kernels/persistent_stall.h"
#include "cuda/kernels/persistent_tuning.h"
using namespace rnnfused::persistent;
int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "stall") == 0) {  // fields on stdin -> describe_stall
    StallRecord r;
    std::memset(static_cast<void*>(&r), 0, sizeof(r));
    unsigned stalled;
    std::cin >> stalled >> r.cta >> r.warp >> r.phase >> r.producer >> r.seen >> r.target >> r.ctas >> r.phases
             >> r.dir >> r.variant >> r.spins;
    r.stalled = stalled;
    std::printf("%s\n", describe_stall(r).c_str());
    return 0;
  }
  for (std::string line; std::getline(std::cin, line);) {  // one knob value per line -> parse result
    Tuning t;
    std::string error;
    if (parse_tuning(line.c_str(), &t, &error)) {
      std::printf("ok %s %d %d\n", variant_name(t.variant), t.units, t.n_chunk);
    } else {
      std::printf("error %s\n", error.c_str());
    }
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def knob(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("needs a C++ compiler")
    tmp = tmp_path_factory.mktemp("knob")
    src, exe = tmp / "knob.cpp", tmp / "knob"
    src.write_text(KNOB_DRIVER)
    subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", os.path.join(ROOT, "csrc"), str(src), "-o",
                    str(exe)], check=True)

    def parse(values):
        out = subprocess.run([str(exe)], input="\n".join(values) + "\n", capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    def describe(fields):
        out = subprocess.run([str(exe), "stall"], input=" ".join(map(str, fields)), capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()

    return parse, describe


def test_tuning_knob_parses_variants_and_geometry(knob):
    parse, _ = knob
    assert parse(["", "ll", " poll_warp , units=8", "nchunk=16,store_first", "padded,units=3,nchunk=24", "baseline"]) == [
        "ok baseline 0 0", "ok ll 0 0", "ok poll_warp 8 0", "ok store_first 0 16", "ok padded 3 24",
        "ok baseline 0 0"]


@pytest.mark.parametrize("value,why", [
    ("fast", "unknown variant 'fast'"), ("ll,padded", "more than one variant"), ("units=0", "positive integer"),
    ("nchunk=12", "multiple of 8"), ("units=x", "positive integer"), ("depth=2", "unknown key 'depth'"),
])
def test_tuning_knob_rejects_bad_values_naming_the_variable(knob, value, why):
    parse, _ = knob
    (line,) = parse([value])
    assert line.startswith("error RNNFUSED_PERSISTENT_TUNING='" + value + "'") and why in line, line


def test_stall_record_is_decoded_into_one_sentence(knob):
    _, describe = knob
    # stalled cta warp phase producer seen target ctas phases dir variant spins
    text = describe([1, 17, 3, 42, 5, 42, 43, 96, 512, 1, 4, 4194304])
    assert text == ("persistent backward kernel (variant ll, 96 CTAs, 512 phases) stopped: CTA 17 warp 3 waited in "
                    "phase 42 for producer CTA 5, whose flag read 42 (needed 43) after 4194304 polls; the launch was "
                    "abandoned and its outputs are invalid")
    assert describe([0] * 12) == "no stall recorded"
