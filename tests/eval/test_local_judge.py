"""The likelihood judge against an independent computation: each verdict scored alone, unpadded."""

from __future__ import annotations

import pytest
import torch

from hubkit.data.labelers import render_chat
from hubkit.eval.judge import VERDICTS, judge_claims, judge_messages, parse_verdict
from hubkit.eval.local_judge import CLOSE, OPEN, LikelihoodJudge


@torch.no_grad()
def _score(model, tok, conv, word: str) -> float:
    text = render_chat(tok, conv, OPEN)
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    cont = tok(word + CLOSE, add_special_tokens=False)["input_ids"]
    logits = model(input_ids=torch.tensor([prompt + cont])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(cont))


def test_scores_and_choice_match_an_unpadded_computation(tiny):
    judge = LikelihoodJudge(tiny.model, tiny.tokenizer, "tiny")
    convs = [judge_messages("The cat sat on the mat.", c) for c in ("A cat.", "Paris is in France.", "x")]
    replies = judge.chat(convs)
    for conv, reply in zip(convs, replies):
        want = {w: _score(tiny.model, tiny.tokenizer, conv, w) for w in VERDICTS}
        got = judge.scores(conv)
        for w in VERDICTS:
            assert got[w] == pytest.approx(want[w], abs=1e-4)
        assert parse_verdict(reply) == max(want, key=want.get)
    jc = judge_claims(judge, ["The cat sat on the mat."] * 2, ["A cat. A mat.", "Rain."], n_boot=100)
    assert (
        jc.verdicts["unparsed"] == 0 and jc.n_claims == 3 and jc.judge == "tiny (likelihood of each verdict)"
    )
