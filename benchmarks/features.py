"""Feature variants: the fused modules with something ``nn.*`` does not have, timed next to the plain modules so the
table shows what each feature costs (``cpu+resets1%`` next to ``cpu``).

    resets1%       ``forward(x, resets=r)`` with r[t, b] true at 1 % of the (step, row) pairs (fixed pattern)
    zoneout0.1     ``zoneout=0.1`` in training mode (fresh Bernoulli masks every call; LSTM and GRU)
    weightdrop0.1  ``weight_drop=0.1`` in training mode (one DropConnect mask per weight_hh and call)
    layernorm      the LayerNorm variant of the cell (``FusedLayerNormLSTM``/``FusedLayerNormGRU``; LayerNorm
                   parameters at their initial ones/zeros)

They are opt-in rows (``--impls 'cpu+*'`` or a full name). Their results are not nn.*'s, so the spot-check against
the baseline's float64 truth does not apply: their correctness is what tests/test_resets.py, test_zoneout.py,
test_weight_drop.py and test_layer_norm.py check.
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
from torch import nn

__all__ = ["Feature", "FEATURES", "FeatureModule", "RESET_DENSITY"]

RESET_DENSITY = 0.01


class Feature(NamedTuple):
    name: str
    description: str
    module_kwargs: Dict[str, float]               # constructor arguments of the fused module
    cells: Optional[Tuple[str, ...]] = None       # the cells it applies to (None: all)
    resets: bool = False                          # pass resets at RESET_DENSITY
    layer_norm: bool = False                      # the cell's LayerNorm variant (rnnfused.layer_norm)


FEATURES = (
    Feature("resets1%", "in-sequence state resets at 1 % of (step, row)", {}, resets=True),
    Feature("zoneout0.1", "zoneout 0.1 on h (and c), training-mode masks", {"zoneout": 0.1}, cells=("lstm", "gru")),
    Feature("weightdrop0.1", "DropConnect 0.1 on weight_hh, training mode", {"weight_drop": 0.1}),
    Feature("layernorm", "LayerNorm cell (Ba et al. 2016)", {}, cells=("lstm", "gru"), layer_norm=True),
)


class FeatureModule(nn.Module):
    """A fused module called with the feature's extra forward arguments (resets), returning ``(output, hidden)``."""

    def __init__(self, fused: nn.Module, resets: bool):
        super().__init__()
        self.fused = fused
        self.resets = resets
        self._pattern: Dict[Tuple[int, int, torch.device], torch.Tensor] = {}

    def _resets_for(self, x: torch.Tensor) -> torch.Tensor:
        T, B = (x.shape[1], x.shape[0]) if self.fused.batch_first else (x.shape[0], x.shape[1])
        key = (T, B, x.device)
        if key not in self._pattern:
            g = torch.Generator().manual_seed(17)
            r = torch.rand(T, B, generator=g) < RESET_DENSITY  # [T, B]
            self._pattern[key] = (r.t() if self.fused.batch_first else r).contiguous().to(x.device)
        return self._pattern[key]

    def forward(self, x):
        if not self.resets:
            return self.fused(x)
        return self.fused(x, resets=self._resets_for(x))


def unavailable(feature: Feature, cell: str, packed: bool) -> Optional[str]:
    """None when ``feature`` applies to such a config, else why not."""
    if feature.cells is not None and cell not in feature.cells:
        return f"{feature.name} applies to {', '.join(feature.cells)} only"
    if feature.resets and packed:
        return "resets do not combine with PackedSequence input"
    return None


def build(feature: Feature, baseline: nn.RNNBase, backend: str, fused_class: Callable[..., nn.Module]) -> nn.Module:
    """The fused twin of ``baseline`` (same weights, device and dtype) with ``feature`` switched on."""
    from rnnfused.modules import _FusedRNNBase

    first = next(baseline.parameters())
    fused = fused_class(**_FusedRNNBase._constructor_kwargs(baseline), backend=backend, device=first.device,
                        dtype=first.dtype, **feature.module_kwargs)
    # nn.*'s weights; a LayerNorm module's own parameters keep their initial values
    fused.load_state_dict(baseline.state_dict(), strict=not feature.layer_norm)
    fused.train(bool(feature.module_kwargs) or baseline.training)  # zoneout / weight-drop: their training cost
    return FeatureModule(fused, feature.resets)
