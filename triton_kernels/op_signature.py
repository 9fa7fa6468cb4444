"""Typed Python signatures for torch.library.triton_op, which infers an op's schema from its function's signature
(torch 2.13 ignores ``schema=``): the ops' functions take ``*args``, so they are given one built from the schema's
typed arguments ('Tensor xg', 'Tensor? b_hh', 'bool train=True', …)."""
from __future__ import annotations

import inspect
from typing import Callable, List, Optional, Sequence, Tuple

from torch import Tensor

_ANNOTATIONS = {"Tensor": Tensor, "Tensor?": Optional[Tensor], "bool": bool}
_DEFAULTS = {"True": True, "False": False, "None": None}


def _parameter(typed: str) -> inspect.Parameter:
    kind, name = typed.split()
    name, _, default = name.partition("=")
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=_ANNOTATIONS[kind],
                             default=_DEFAULTS[default] if default else inspect.Parameter.empty)


def schema_string(typed: Sequence[str], n_outputs: int) -> str:
    """'(Tensor xg, …) -> (Tensor, Tensor)'."""
    return f"({', '.join(typed)}) -> ({', '.join(['Tensor'] * n_outputs)})"


def with_signature(fn: Callable, typed: List[str], n_outputs: int) -> Callable:
    """fn(*args) given the typed signature (typed...) -> (Tensor,) * n_outputs; calls are bound to it, so keyword
    arguments and defaults work as for any op."""
    sig = inspect.Signature([_parameter(a) for a in typed], return_annotation=Tuple[(Tensor,) * n_outputs])

    def op(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return fn(*bound.args)

    op.__signature__ = sig
    op.__annotations__ = {**{p.name: p.annotation for p in sig.parameters.values()}, "return": sig.return_annotation}
    return op
