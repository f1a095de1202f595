"""Where a vector goes: the marker token of the AV prompt, checked by its neighbours."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import Tensor

from hubkit.errors import InjectionError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MARKER_CANDIDATES = ("ㅤ", "¶", "§", "∆", "⊕", "★", "◆", "¤", "‡", "†", "@", "#")


def find_markers(
    input_ids: Tensor,
    marker_id: int,
    left_id: int | None = None,
    right_id: int | None = None,
    n_vectors: int | None = None,
    per_row: int = 1,
) -> Tensor:
    """Positions ``[N]`` (or ``[N, per_row]``) of the markers whose neighbours match; raises on a miscount."""
    hit = input_ids == marker_id
    if left_id is not None:  # a marker without that left neighbour (or at position 0) is not a slot
        hit[:, 1:] &= input_ids[:, :-1] == left_id
        hit[:, 0] = False
    if right_id is not None:
        hit[:, :-1] &= input_ids[:, 1:] == right_id
        hit[:, -1] = False
    counts = hit.sum(dim=1)
    total = int(counts.sum())
    n = n_vectors if n_vectors is not None else input_ids.shape[0] * per_row
    if total != n or bool((counts != per_row).any()):
        rows = (counts != per_row).nonzero().flatten().tolist()
        word = "one" if per_row == 1 else str(per_row)
        raise InjectionError(
            f"found {total} marker tokens (id {marker_id}, neighbours {left_id}/{right_id}) for {n} vectors; "
            f"rows without exactly {word}: {rows[:10]}. Check the AV template and the meta's token ids"
        )
    if per_row == 1:
        return hit.float().argmax(dim=1)
    return hit.nonzero()[:, 1].reshape(input_ids.shape[0], per_row)


def marker_ids(
    tokenizer: PreTrainedTokenizerBase, prompt: str, marker: str, count: int = 1
) -> tuple[int, int | None, int | None]:
    """Token id of `marker` in the rendered `prompt` and of its left/right neighbours.

    Located by character offsets, so a BPE that folds the preceding space in (``Ġ@``) is fine; raises
    when the marker is not one token at each of its `count` places, or its neighbours differ.
    """
    found = prompt.count(marker)
    if found != count:
        raise InjectionError(
            f"marker {marker!r} appears {found} times in the rendered prompt; it must appear exactly "
            f"{'once' if count == 1 else f'{count} times (once per marker slot)'}"
        )
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    triples = []
    start = -1
    for _ in range(count):
        start = prompt.index(marker, start + 1)
        end = start + len(marker)
        covering = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        span = prompt[offsets[covering[0]][0] : offsets[covering[-1]][1]] if covering else ""
        if len(covering) != 1 or span.strip() != marker.strip():
            raise InjectionError(
                f"marker {marker!r} is {len(covering)} tokens ({span!r}) in the rendered prompt for this "
                "tokenizer; pick a character that is one token there (hubkit.injection.pick_marker finds one)"
            )
        i = covering[0]
        triples.append((ids[i], ids[i - 1] if i > 0 else None, ids[i + 1] if i + 1 < len(ids) else None))
    if len(set(triples)) != 1:
        raise InjectionError(
            f"the {count} markers {marker!r} have different token ids or neighbours {triples}: the "
            "neighbour check would skip some; give every slot the same text around it"
        )
    return triples[0]


def pick_marker(
    tokenizer: PreTrainedTokenizerBase,
    render: Callable[[str], str],
    candidates: tuple[str, ...] = MARKER_CANDIDATES,
) -> str:
    """First candidate character that is one token alone and inside ``render(marker)``."""
    for c in candidates:
        try:
            marker_ids(tokenizer, render(c), c)
        except InjectionError:
            continue
        return c
    raise InjectionError(f"none of the marker candidates {candidates} is a single token in this prompt")
