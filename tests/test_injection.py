"""Injection: the pure functions against hand computations, then the hooks checked from inside the
model's own forward (hooks registered here, independent of hubkit's) on Llama, Gemma-3 and Gemma-4."""

from __future__ import annotations

import math

import pytest
import torch

from hubkit import arch, scale_lint
from hubkit import injection as inj
from hubkit.constants import OOD_SCALE_FACTOR
from hubkit.errors import InjectionError
from hubkit.injection import schemes
from hubkit.meta import Injection, resolve_scale
from hubkit.meta import sections as meta_sections
from hubkit.registry import Registry, RegistryError
from hubkit.testing import MARKER, make_tiny_model
from hubkit.vectors import check_vectors

D = 32
PROMPTS = [
    "Explain the activation ¶ in a few words.",
    "The cat sat. Explain the activation ¶ in a few words about the cat on the mat.",
]
ARCHS = ("llama", "gemma3", "gemma4")


# -- check_vectors ---------------------------------------------------------------------------------
def test_check_vectors_returns_float32_rows() -> None:
    v = torch.randn(3, D, dtype=torch.float64)
    out = check_vectors(v, d_model=D, nla_input=True)
    assert out.dtype == torch.float32 and out.shape == (3, D)
    torch.testing.assert_close(out, v.float())
    assert check_vectors(torch.randn(3, D).bfloat16(), d_model=D, nla_input=True).dtype == torch.float32


def test_check_vectors_promotes_one_vector() -> None:
    v = torch.randn(D)
    out = check_vectors(v, d_model=D, nla_input=True)
    assert out.shape == (1, D)
    assert torch.equal(out[0], v)


@pytest.mark.parametrize(
    ("vectors", "needle"),
    [
        (torch.randn(D + 1), f"width {D + 1}"),
        (torch.randn(2, D - 1), f"d_model is {D}"),
        (torch.randn(2, 3, D), f"must be 2-D [N, d_model], got shape (2, 3, {D})"),
        (torch.randn(0, D), "has no rows"),
    ],
)
def test_check_vectors_refuses_bad_shapes(vectors: torch.Tensor, needle: str) -> None:
    with pytest.raises(InjectionError) as err:
        check_vectors(vectors, d_model=D, nla_input=True)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("bad", "word"), [(float("nan"), "NaN"), (float("inf"), "inf"), (-float("inf"), "inf")]
)
def test_check_vectors_refuses_non_finite_rows_and_names_them(bad: float, word: str) -> None:
    v = torch.randn(5, D)
    v[1, 3] = bad
    v[4, 0] = bad
    with pytest.raises(InjectionError, match=word) as err:
        check_vectors(v, d_model=D, nla_input=True)
    assert "[1, 4]" in str(err.value)


def test_check_vectors_refuses_zero_rows_and_names_them() -> None:
    v = torch.randn(4, D)
    v[2] = 0.0
    with pytest.raises(InjectionError, match="all-zero") as err:
        check_vectors(v, d_model=D, nla_input=True)
    assert "[2]" in str(err.value)


# -- scale_vectors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 39.2, 150.0, 80000.0])
def test_scale_vectors_sets_the_norm_and_keeps_the_direction(scale: float) -> None:
    v = torch.randn(6, D) * torch.logspace(-2, 3, 6)[:, None]
    out = inj.scale_vectors(v, scale)
    norms = torch.sqrt((out.double() ** 2).sum(dim=1))
    torch.testing.assert_close(norms, torch.full((6,), scale, dtype=torch.float64), rtol=1e-6, atol=0)
    cos = (out.double() * v.double()).sum(1) / (norms * v.double().norm(dim=1))
    torch.testing.assert_close(cos, torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-6)


def test_scale_vectors_raw_leaves_vectors_unchanged() -> None:
    v = torch.randn(3, D) * 700
    assert torch.equal(inj.scale_vectors(v, None), v)
    assert resolve_scale("raw", D) is None and resolve_scale(None, D) is None


def test_scale_vectors_sqrt_d_model() -> None:
    v = torch.randn(3, D) * 5
    out = inj.scale_vectors(v, resolve_scale("sqrt_d_model", D))
    torch.testing.assert_close(out.norm(dim=1), torch.full((3,), math.sqrt(D)), rtol=1e-6, atol=0)


# -- find_markers ------------------------------------------------------------------------------------
M, L, R = 7, 3, 4


def _hand_positions(rows: list[list[int]], left: int | None, right: int | None) -> list[list[int]]:
    out = []
    for row in rows:
        hits = []
        for p, t in enumerate(row):
            if t != M:
                continue
            if left is not None and (p == 0 or row[p - 1] != left):
                continue
            if right is not None and (p == len(row) - 1 or row[p + 1] != right):
                continue
            hits.append(p)
        out.append(hits)
    return out


def test_find_markers_with_neighbours_skips_look_alikes() -> None:
    rows = [
        [0, L, M, R, 9, 9, 9],
        [M, 9, 9, L, M, R, 9],  # a bare marker at position 0 (no left neighbour) is not the slot
        [9, 9, M, 2, L, M, R],  # marker echoed with other neighbours is not the slot
    ]
    ids = torch.tensor(rows)
    got = inj.find_markers(ids, M, L, R, n_vectors=3)
    assert got.tolist() == [h[0] for h in _hand_positions(rows, L, R)] == [2, 4, 5]


def test_find_markers_without_neighbours() -> None:
    rows = [[1, 2, M, 5], [M, 2, 2, 5]]
    got = inj.find_markers(torch.tensor(rows), M)
    assert got.tolist() == [h[0] for h in _hand_positions(rows, None, None)] == [2, 0]


@pytest.mark.parametrize(
    ("rows", "left", "right", "n", "bad_rows"),
    [
        ([[0, L, M, R], [0, L, M, R]], L, R, 3, "[]"),  # two slots, three vectors
        ([[0, L, M, R], [0, 0, 0, 0]], L, R, 2, "[1]"),  # a row without a marker
        ([[0, L, M, R], [0, L, 9, R]], L, R, 1, "[1]"),
        ([[L, M, M, R], [0, L, M, R]], L, R, 2, "[0]"),  # two markers in a row: neither slot matches
        ([[M, M, 0, 0], [0, 0, M, 0]], None, None, 2, "[0]"),  # ...and without neighbour checks: 2 in one row
        ([[0, M, R, 0]], L, R, 1, "[0]"),  # wrong left neighbour
        ([[0, L, M, 0]], L, R, 1, "[0]"),  # wrong right neighbour
        ([[0, 0, L, M]], L, R, 1, "[0]"),  # marker last: it has no right neighbour
    ],
)
def test_find_markers_count_mismatch_errors(rows, left, right, n, bad_rows) -> None:
    with pytest.raises(InjectionError) as err:
        inj.find_markers(torch.tensor(rows), M, left, right, n_vectors=n)
    msg = str(err.value)
    total = sum(len(h) for h in _hand_positions(rows, left, right))
    assert f"found {total} marker tokens" in msg and f"for {n} vectors" in msg
    assert f"rows without exactly one: {bad_rows}" in msg


# -- replace_rows / add_norm_matched -----------------------------------------------------------------
def test_replace_rows_matches_a_hand_loop() -> None:
    emb = torch.randn(3, 6, D)
    original = emb.clone()
    pos = torch.tensor([1, 5, 0])
    vec = torch.randn(3, D)
    out = inj.replace_rows(emb, pos, vec)
    expected = emb.clone()
    for b in range(3):
        for t in range(6):
            if t == int(pos[b]):
                expected[b, t] = vec[b]
    assert torch.equal(out, expected)
    assert torch.equal(emb, original)  # a new tensor: the input is not modified in place


def test_replace_rows_casts_to_the_embedding_dtype() -> None:
    emb = torch.randn(2, 4, D, dtype=torch.bfloat16)
    vec = torch.randn(2, D)
    out = inj.replace_rows(emb, torch.tensor([3, 2]), vec)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out[0, 3], vec[0].bfloat16()) and torch.equal(out[1, 2], vec[1].bfloat16())


def test_add_norm_matched_matches_a_hand_computation() -> None:
    h = torch.randn(2, 5, D) * 10
    pos = torch.tensor([4, 2])
    vec = torch.randn(2, D) * 1000  # the vector's own norm must not matter
    original = h.clone()
    out = inj.add_norm_matched(h, pos, vec)
    expected = h.clone()
    for b in range(2):
        p = int(pos[b])
        hp = h[b, p].double()
        u = vec[b].double() / math.sqrt(float((vec[b].double() ** 2).sum()))
        expected[b, p] = (hp + math.sqrt(float((hp**2).sum())) * u).float()
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-5)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 4] = mask[1, 2] = False
    assert torch.equal(out[mask], h[mask])
    assert torch.equal(h, original)


# -- hooks on tiny models ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tinies():
    return {a: make_tiny_model(a, d_model=D, n_layers=3) for a in ARCHS}


def _spec(tiny, scheme: str = "embedding_replace", scale: float | None = 7.0) -> Injection:
    mid, left, right = inj.marker_ids(tiny.tokenizer, PROMPTS[0], MARKER)
    return Injection(
        scheme=scheme,
        scale=scale,
        marker=MARKER,
        marker_token_id=mid,
        left_neighbor_id=left,
        right_neighbor_id=right,
    )


def _own_embeddings(tiny, ids: torch.Tensor) -> torch.Tensor:
    """The model's own input embeddings computed by hand: Gemma scales rows by sqrt(hidden_size)."""
    weight = arch.text_model(tiny.model).embed_tokens.weight.detach()
    factor = math.sqrt(tiny.model.config.get_text_config().hidden_size) if tiny.arch != "llama" else 1.0
    return weight[ids] * factor


def _batch(tiny):
    return tiny.tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)


def _hand_marker_positions(tiny, ids: torch.Tensor) -> list[int]:
    mid = tiny.tokenizer.convert_tokens_to_ids(MARKER)
    return [row.index(mid) for row in ids.tolist()]


@pytest.mark.parametrize("arch_name", ARCHS)
def test_embedding_replace_seen_from_inside_the_forward(tinies, arch_name: str) -> None:
    tiny = tinies[arch_name]
    spec = _spec(tiny, scale=7.0)
    batch = _batch(tiny)
    ids = batch["input_ids"]
    vectors = torch.randn(2, D) * torch.tensor([[0.01], [500.0]])
    p = inj.plan(spec, ids, vectors, D)
    positions = _hand_marker_positions(tiny, ids)
    assert p.positions.tolist() == positions and positions[0] != positions[1]  # left padding differs

    seen: list[torch.Tensor] = []

    def pre_hook(_m, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    block0 = arch.decoder_layers(tiny.model)[0]
    with inj.injected(tiny.model, spec, p):
        handle = block0.register_forward_pre_hook(pre_hook, with_kwargs=True)
        try:
            with torch.no_grad():
                tiny.model(**batch)
        finally:
            handle.remove()
    (entering,) = seen
    own = _own_embeddings(tiny, ids)
    for b, pos in enumerate(positions):
        expected = vectors[b] * 7.0 / vectors[b].norm()
        torch.testing.assert_close(entering[b, pos], expected, rtol=0, atol=1e-6)
        assert float(entering[b, pos].norm()) == pytest.approx(7.0, rel=1e-6)  # not 7·sqrt(d) on Gemma
        others = [t for t in range(ids.shape[1]) if t != pos]
        assert torch.equal(entering[b, others], own[b, others])


@pytest.mark.parametrize("arch_name", ARCHS)
def test_residual_add_changes_block_1_at_the_marker_only(tinies, arch_name: str) -> None:
    tiny = tinies[arch_name]
    spec = _spec(tiny, scheme="residual_add", scale=None)
    batch = _batch(tiny)
    vectors = torch.randn(2, D) * 300
    p = inj.plan(spec, batch["input_ids"], vectors, D)
    layers = arch.decoder_layers(tiny.model)

    def run(injecting: bool) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}

        def grab(i):
            def hook(_m, _a, o):
                out[i] = (o[0] if isinstance(o, tuple) else o).detach().clone()

            return hook

        ctx = inj.injected(tiny.model, spec, p) if injecting else _nullcontext()
        with ctx:  # our hooks go on after hubkit's, so they see what the next block receives
            handles = [layers[i].register_forward_hook(grab(i)) for i in (0, 1, 2)]
            try:
                with torch.no_grad():
                    tiny.model(**batch)
            finally:
                for h in handles:
                    h.remove()
        return out

    clean, hit = run(False), run(True)
    assert torch.equal(clean[0], hit[0])  # block 0 untouched
    expected = clean[1].clone()
    for b, pos in enumerate(_hand_marker_positions(tiny, batch["input_ids"])):
        h = clean[1][b, pos].double()
        u = vectors[b].double() / vectors[b].double().norm()
        expected[b, pos] = (h + h.norm() * u).float()
    torch.testing.assert_close(hit[1], expected, rtol=1e-6, atol=1e-5)
    changed = (hit[1] != clean[1]).any(dim=-1)
    assert changed.sum() == 2 and changed[0, p.positions[0]] and changed[1, p.positions[1]]
    assert not torch.equal(clean[2], hit[2])  # and it propagates to later blocks


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _generate_watching_embeddings(tiny, spec, use_cache: bool):
    ids = tiny.tokenizer([PROMPTS[0]], return_tensors="pt", add_special_tokens=False)["input_ids"]
    vectors = torch.randn(1, D)
    p = inj.plan(spec, ids, vectors, D)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    emb = arch.text_model(tiny.model).embed_tokens

    def hook(_m, args, out):
        calls.append((args[0].detach().clone(), out.detach().clone()))

    with inj.injected(tiny.model, spec, p):
        handle = emb.register_forward_hook(hook)
        try:
            with torch.no_grad():
                seqs = tiny.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=3,
                    min_new_tokens=3,
                    do_sample=False,
                    use_cache=use_cache,
                    pad_token_id=tiny.tokenizer.pad_token_id,
                )
        finally:
            handle.remove()
    return ids, vectors, p, calls, seqs


@pytest.mark.parametrize("arch_name", ARCHS)
def test_decoding_steps_with_a_kv_cache_are_not_injected(tinies, arch_name: str) -> None:
    tiny = tinies[arch_name]
    spec = _spec(tiny, scale=5.0)
    ids, vectors, p, calls, seqs = _generate_watching_embeddings(tiny, spec, use_cache=True)
    assert [c[0].shape[1] for c in calls] == [ids.shape[1], 1, 1]
    pos = int(p.positions[0])
    prefill = calls[0][1]
    torch.testing.assert_close(prefill[0, pos], vectors[0] * 5.0 / vectors[0].norm(), rtol=0, atol=1e-6)
    for step, (step_ids, step_out) in enumerate(calls[1:]):
        assert int(step_ids[0, 0]) == int(seqs[0, ids.shape[1] + step])
        assert torch.equal(step_out, _own_embeddings(tiny, step_ids))


def test_generation_without_a_cache_keeps_the_injection_at_every_step(tinies) -> None:
    """Without a KV cache each step re-reads the whole prompt: the slot must hold the vector every time."""
    tiny = tinies["gemma3"]
    spec = _spec(tiny, scale=5.0)
    ids, vectors, p, calls, _ = _generate_watching_embeddings(tiny, spec, use_cache=False)
    assert [c[0].shape[1] for c in calls] == [ids.shape[1], ids.shape[1] + 1, ids.shape[1] + 2]
    pos = int(p.positions[0])
    expected = vectors[0] * 5.0 / vectors[0].norm()
    for step_ids, step_out in calls:
        torch.testing.assert_close(step_out[0, pos], expected, rtol=0, atol=1e-6)
        others = [t for t in range(step_ids.shape[1]) if t != pos]
        assert torch.equal(step_out[0, others], _own_embeddings(tiny, step_ids)[0, others])


def test_hooks_are_removed_after_the_context(tinies) -> None:
    tiny = tinies["llama"]
    spec = _spec(tiny)
    batch = _batch(tiny)
    p = inj.plan(spec, batch["input_ids"], torch.randn(2, D), D)
    with torch.no_grad():
        before = tiny.model(**batch).logits
        with inj.injected(tiny.model, spec, p):
            during = tiny.model(**batch).logits
        after = tiny.model(**batch).logits
    assert not torch.equal(before, during)
    assert torch.equal(before, after)


def test_residual_add_block_beyond_the_model_is_refused(tinies) -> None:
    tiny = tinies["llama"]
    spec = _spec(tiny, scheme="residual_add", scale=None)
    spec.block = 3
    p = inj.plan(spec, _batch(tiny)["input_ids"], torch.randn(2, D), D)
    with pytest.raises(InjectionError, match="block 3 is beyond the model's 3 blocks"):
        with inj.injected(tiny.model, spec, p):
            pass


def test_plan_needs_a_resolved_marker_id(tinies) -> None:
    spec = Injection(scale=1.0, marker=MARKER)
    with pytest.raises(InjectionError, match="marker_token_id"):
        inj.plan(spec, torch.tensor([[1, 2, 3]]), torch.randn(1, D), D)


# -- markers ---------------------------------------------------------------------------------------
def test_marker_ids_are_the_prompts_own_tokens(tinies) -> None:
    tok = tinies["llama"].tokenizer
    ids = tok(PROMPTS[0], add_special_tokens=False)["input_ids"]
    mid = tok.convert_tokens_to_ids(MARKER)
    i = ids.index(mid)
    assert inj.marker_ids(tok, PROMPTS[0], MARKER) == (mid, ids[i - 1], ids[i + 1])


def test_multi_token_marker_is_refused_with_a_clear_error(tinies) -> None:
    tok = tinies["llama"].tokenizer
    marker = "xyzzy"
    assert len(tok(marker, add_special_tokens=False)["input_ids"]) > 1
    with pytest.raises(InjectionError) as err:
        inj.marker_ids(tok, f"Explain {marker} now.", marker)
    assert "'xyzzy'" in str(err.value) and "tokens" in str(err.value) and "pick_marker" in str(err.value)


@pytest.mark.parametrize(("prompt", "count"), [("Explain ¶ and ¶ now.", 2), ("Explain nothing.", 0)])
def test_marker_must_appear_once_in_the_prompt(tinies, prompt: str, count: int) -> None:
    with pytest.raises(InjectionError, match=f"appears {count} times"):
        inj.marker_ids(tinies["llama"].tokenizer, prompt, MARKER)


def test_pick_marker_returns_the_first_single_token_character(tinies) -> None:
    tok = tinies["llama"].tokenizer

    def render(c: str) -> str:
        return f"Explain {c} now."

    candidates = ("ㅤ", "§", "@", "¶")
    expected = next(
        c
        for c in candidates
        if len(tok(c, add_special_tokens=False)["input_ids"]) == 1
        and tok(render(c), add_special_tokens=False)["input_ids"].count(
            tok(c, add_special_tokens=False)["input_ids"][0]
        )
        == 1
    )
    got = inj.pick_marker(tok, render, candidates)
    assert got == expected
    assert len(tok(got, add_special_tokens=False)["input_ids"]) == 1
    assert len(inj.pick_marker(tok, render)) == 1  # the default candidates work too


def test_pick_marker_without_a_usable_candidate(tinies) -> None:
    with pytest.raises(InjectionError, match="none of the marker candidates"):
        inj.pick_marker(tinies["llama"].tokenizer, lambda c: f"x {c} y", ("xyzzy", "ㅤ"))


# -- scale_report ----------------------------------------------------------------------------------
def _median_bracket(tiny) -> tuple[float, float]:
    """The two middle values of the embedding-row norms times the model's scale (equal for odd vocab)."""
    w = arch.text_model(tiny.model).embed_tokens.weight.detach().double()
    factor = math.sqrt(tiny.model.config.get_text_config().hidden_size) if tiny.arch != "llama" else 1.0
    norms = sorted(float(x) * factor for x in w.norm(dim=1))
    n = len(norms)
    return norms[(n - 1) // 2], norms[n // 2]


@pytest.mark.parametrize("arch_name", ARCHS)
def test_scale_report_ratio_is_against_the_scaled_embedding_median(tinies, arch_name: str) -> None:
    tiny = tinies[arch_name]
    lo, hi = _median_bracket(tiny)
    rep = inj.scale_report(3.0 * lo, tiny.model)
    assert lo * (1 - 1e-6) <= rep.embedding_norm <= hi * (1 + 1e-6)
    assert rep.ratio_to_embedding == pytest.approx(3.0 * lo / rep.embedding_norm, rel=1e-12)
    assert 3.0 * lo / hi * (1 - 1e-6) <= rep.ratio_to_embedding <= 3.0 * (1 + 1e-6)
    assert rep.ok and "OUT OF DISTRIBUTION" not in rep.message


@pytest.mark.parametrize(
    ("factor", "ok"),
    [(1.0, True), (49.0, True), (1 / 49.0, True), (51.0, False), (1 / 51.0, False), (510.0, False)],
)
def test_scale_report_flags_beyond_50x_either_way(tinies, factor: float, ok: bool) -> None:
    assert OOD_SCALE_FACTOR == 50.0
    tiny = tinies["gemma3"]
    lo, _ = _median_bracket(tiny)
    rep = inj.scale_report(factor * lo, tiny.model)
    assert rep.ok is ok
    assert ("OUT OF DISTRIBUTION" in rep.message) is (not ok)


def test_scale_report_raw_vectors(tinies) -> None:
    rep = inj.scale_report(None, tinies["llama"].model)
    assert rep.ok and rep.ratio_to_embedding is None and rep.scale is None
    lo, hi = _median_bracket(tinies["llama"])
    assert lo * (1 - 1e-6) <= rep.embedding_norm <= hi * (1 + 1e-6)


# -- k markers per prompt ------------------------------------------------------------------------------
def test_find_markers_k_per_row_in_order() -> None:
    rows = [[0, L, M, R, L, M, R], [L, M, R, 9, L, M, R]]
    got = inj.find_markers(torch.tensor(rows), M, L, R, n_vectors=4, per_row=2)
    assert got.tolist() == _hand_positions(rows, L, R) == [[2, 5], [1, 5]]


def test_find_markers_k_count_mismatch_is_one_line() -> None:
    rows = [[0, L, M, R, L, M, R], [L, M, R, 9, 9, 9, 9]]
    with pytest.raises(InjectionError) as err:
        inj.find_markers(torch.tensor(rows), M, L, R, n_vectors=4, per_row=2)
    msg = str(err.value)
    assert "found 3 marker tokens" in msg and "for 4 vectors" in msg and "exactly 2: [1]" in msg
    assert "\n" not in msg


def test_replace_rows_and_add_norm_matched_with_k_slots() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 6, D, generator=g)
    pos = torch.tensor([[1, 4], [0, 5]])
    vec = torch.randn(2, 2, D, generator=g)
    rep, add = inj.replace_rows(h, pos, vec), inj.add_norm_matched(h, pos, vec)
    want_rep, want_add = h.clone(), h.clone()
    for b in range(2):
        for j in range(2):
            p = int(pos[b, j])
            want_rep[b, p] = vec[b, j]
            want_add[b, p] = h[b, p] + h[b, p].norm() * vec[b, j] / vec[b, j].norm()
    torch.testing.assert_close(rep, want_rep, rtol=0, atol=0)
    torch.testing.assert_close(add, want_add, rtol=1e-6, atol=1e-5)


def test_plan_with_k_vectors_per_row(tinies) -> None:
    tiny = tinies["llama"]
    spec = _spec(tiny, scale=3.0)
    prompt = "Explain the activation ¶ in a few words and the activation ¶ in a few words."
    ids = tiny.tokenizer([prompt] * 2, return_tensors="pt", add_special_tokens=False)["input_ids"]
    v = torch.randn(2, 2, D)
    p = inj.plan(spec, ids, v, D)
    assert p.positions.shape == (2, 2) and p.vectors.shape == (2, 2, D)
    torch.testing.assert_close(p.vectors.norm(dim=-1), torch.full((2, 2), 3.0))
    with pytest.raises(InjectionError, match="found 4 marker tokens .* for 2 vectors"):
        inj.plan(spec, ids, torch.randn(2, D), D)
    with pytest.raises(InjectionError, match="found 4 marker tokens .* for 6 vectors"):
        inj.plan(spec, ids, torch.randn(2, 3, D), D)


def test_marker_ids_for_k_slots(tinies) -> None:
    tok = tinies["llama"].tokenizer
    two = "Say x ¶ y and x ¶ y now."
    assert inj.marker_ids(tok, two, MARKER, count=2) == inj.marker_ids(tok, "Say x ¶ y now.", MARKER)
    with pytest.raises(InjectionError, match="different token ids or neighbours"):
        inj.marker_ids(tok, "Say a¶b and x ¶ y now.", MARKER, count=2)


# -- the scheme registry --------------------------------------------------------------------------------
def test_registered_schemes_and_unknown_names() -> None:
    assert (
        {"embedding_replace", "residual_add"}
        <= set(inj.SCHEMES.names())
        <= set(meta_sections.SCHEMES.names())
    )
    with pytest.raises(RegistryError) as err:
        inj.SCHEMES.get("steering_vector")
    assert "embedding_replace" in str(err.value) and "residual_add" in str(err.value)


def test_duplicate_scheme_names_are_refused() -> None:
    class Again(inj.InjectionScheme):
        name = "embedding_replace"

    with pytest.raises(RegistryError, match="'embedding_replace' is already registered"):
        inj.register_scheme(Again)


@pytest.fixture
def scaled_add_scheme(monkeypatch):
    """A new scheme is one class: add `v` (unscaled) to the embedding row at the marker."""
    for module in (schemes, meta_sections):  # the registration ends with the test
        fresh: Registry = Registry(module.SCHEMES.kind, hint=module.SCHEMES.hint)
        for name, entry in module.SCHEMES.items():
            fresh.add(name, entry)
        monkeypatch.setattr(module, "SCHEMES", fresh)

    class EmbeddingAdd(inj.InjectionScheme):
        name = "embedding_add_test"
        embeds_only = True

        def hook_module(self, model, spec):
            return arch.text_model(model).embed_tokens

        def apply(self, output, positions, vectors):
            return inj.replace_rows(output, positions, output[torch.arange(len(output)), positions] + vectors)

        def lint(self, spec, model, d_model):
            return inj.scale_report(None, model)

    inj.register_scheme(EmbeddingAdd)
    assert "embedding_add_test" in meta_sections.SCHEMES  # a meta may name it now
    return "embedding_add_test"


def test_a_new_scheme_is_one_class(tinies, scaled_add_scheme) -> None:
    tiny = tinies["llama"]
    spec = _spec(tiny)
    spec.scheme = scaled_add_scheme
    batch = _batch(tiny)
    v = torch.randn(2, D)
    p = inj.plan(spec, batch["input_ids"], v, D)
    embed = arch.text_model(tiny.model).embed_tokens
    with torch.no_grad(), inj.injected(tiny.model, spec, p):
        got = embed(batch["input_ids"])
    own = _own_embeddings(tiny, batch["input_ids"])
    for b, pos in enumerate(_hand_marker_positions(tiny, batch["input_ids"])):
        torch.testing.assert_close(got[b, pos], own[b, pos] + v[b])
    assert schemes.SCHEMES.get(scaled_add_scheme).lint(spec, tiny.model, D).ok


@pytest.mark.parametrize(("scheme", "ok"), [("embedding_replace", False), ("residual_add", True)])
def test_scheme_lint(tinies, scheme: str, ok: bool) -> None:
    tiny = tinies["llama"]
    norm = scale_lint.embedding_norm(tiny.model)
    spec = _spec(tiny, scheme=scheme, scale=norm * 100 if scheme == "embedding_replace" else None)
    rep = inj.SCHEMES.get(scheme).lint(spec, tiny.model, D)
    assert rep.ok is ok
