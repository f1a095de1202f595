"""Plans and forward hooks: everything a forward needs to inject, computed once and pure."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

from torch import Tensor, nn

from hubkit.errors import InjectionError
from hubkit.injection import schemes
from hubkit.injection.markers import find_markers
from hubkit.meta import Injection
from hubkit.vectors import check_vectors


@dataclass
class InjectionPlan:
    """What to inject where, for one forward over ``seq_len`` tokens, vectors as the hook writes them."""

    positions: Tensor
    vectors: Tensor
    seq_len: int


def plan(spec: Injection, input_ids: Tensor, vectors: Tensor, d_model: int) -> InjectionPlan:
    """Validate vectors, locate markers and prepare the vectors: everything the hook needs, pure."""
    scheme = schemes.SCHEMES.get(spec.scheme)
    v = check_vectors(vectors, d_model=d_model, nla_input=True, slots=True)
    if spec.marker_token_id is None:
        raise InjectionError(
            "the meta's `injection.marker_token_id` is unresolved; load the NLA with its tokenizer"
        )
    per_row = v.shape[1] if v.ndim == 3 else 1
    marker = (spec.marker_token_id, spec.left_neighbor_id, spec.right_neighbor_id)
    pos = find_markers(input_ids, *marker, v.shape[0] * per_row, per_row=per_row)
    vectors = scheme.plan_vectors(spec, v, d_model)
    return InjectionPlan(positions=pos, vectors=vectors, seq_len=input_ids.shape[1])


def shift_plan(p: InjectionPlan, offset: int) -> InjectionPlan:
    """The same plan for a forward that starts `offset` tokens in (the first `offset` are cached)."""
    if offset < 0 or int(p.positions.min()) < offset:
        raise InjectionError(
            f"cannot cache {offset} prompt tokens: a marker sits at {int(p.positions.min())}"
        )
    return replace(p, positions=p.positions - offset, seq_len=p.seq_len - offset)


def _replace_output(output, fn):
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    if hasattr(output, "last_hidden_state"):
        output.last_hidden_state = fn(output.last_hidden_state)
        return output
    return fn(output)


@contextlib.contextmanager
def injected(model: nn.Module, spec: Injection, p: InjectionPlan) -> Iterator[None]:
    """Apply `p` on every forward over at least ``p.seq_len`` tokens; decoding steps with a KV cache
    (length 1) pass through untouched."""
    scheme = schemes.SCHEMES.get(spec.scheme)
    module = scheme.hook_module(model, spec)

    def hook(_mod, _args, output):
        if (output[0] if isinstance(output, tuple) else output).shape[1] < p.seq_len:
            return output
        return _replace_output(output, lambda t: scheme.apply(t, p.positions, p.vectors))

    with module.register_forward_hook(hook):  # the handle removes the hook on exit
        yield
