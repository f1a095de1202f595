from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from hubkit.errors import InjectionError
from hubkit.meta import NLAMeta
from hubkit.train.loop import RunOptions
from hubkit.train.sft_av import train_av
from hubkit.verbalizer import ActivationVerbalizer

from .train_helpers import make_recipe, response_logprobs

AV = {
    "steps": 8,
    "micro_batch_size": 4,
    "grad_accum": 2,
    "checkpoint_every": 4,
    "adapter": {"r": 8, "alpha": 16},
    "optim": {"lr": 2e-2},
}


def independent_ce(av: ActivationVerbalizer, vectors: torch.Tensor, texts: list[str]) -> tuple[float, int]:
    """Mean cross-entropy over every response token (+EOS) of the table, computed row by row."""
    logps = [response_logprobs(av, v, t) for v, t in zip(vectors, texts)]
    return float(-torch.cat(logps).mean()), sum(len(lp) for lp in logps)


def test_av_loss_goes_down_on_response_tokens_only(tmp_path, train_base, sft_table):
    data, vectors, texts = sft_table
    recipe = make_recipe(train_base, tmp_path / "run", av={**AV, "data": str(data)})
    last = train_av(recipe, RunOptions(quiet=True))
    assert last == tmp_path / "run" / "av" / "step_000008"
    metrics = [
        json.loads(line) for line in (tmp_path / "run" / "av" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in metrics] == list(range(1, 9))

    # step 1 sees every row once with a zero-initialised LoRA: its loss is the base's response-only CE
    base = ActivationVerbalizer.from_pretrained(last, base_model=str(train_base))
    base.model.disable_adapter_layers()
    before, n_response = independent_ce(base, vectors, texts)
    assert metrics[0]["loss"] == pytest.approx(before, rel=1e-4)

    trained = ActivationVerbalizer.from_pretrained(last)
    after, _ = independent_ce(trained, vectors, texts)
    assert after < 0.9 * before, (before, after)

    meta = NLAMeta.load(last)
    t = meta.training
    assert (t.stage, t.step, t.seed, t.parent) == ("av_sft", 8, 0, "step_000004")
    assert t.loss == pytest.approx(metrics[-1]["loss"]) and t.lr == pytest.approx(2e-2)
    assert t.data_sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert t.config_sha256 == recipe.config_sha256("av")
    assert t.tokens_seen == 8 * (
        len(texts) * len(trained.prompt_ids) + n_response
    )  # 8 steps × one epoch each
    assert NLAMeta.load(tmp_path / "run" / "av" / "step_000004").training.parent == str(train_base)
    assert meta.adapter.kind == "lora" and meta.adapter.r == 8 and meta.injection.ood_allowed is False


def test_grad_accumulation_and_checkpointing_do_not_change_the_update(tmp_path, train_base, sft_table):
    data = str(sft_table[0])
    common = {**AV, "steps": 2, "checkpoint_every": 2, "data": data, "adapter": {"r": 4, "dropout": 0.0}}
    a = train_av(
        make_recipe(train_base, tmp_path / "a", av={**common, "micro_batch_size": 8, "grad_accum": 1}),
        RunOptions(quiet=True),
    )
    b = train_av(
        make_recipe(
            train_base,
            tmp_path / "b",
            av={**common, "micro_batch_size": 2, "grad_accum": 4, "gradient_checkpointing": True},
        ),
        RunOptions(quiet=True),
    )
    wa, wb = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    assert any(k.endswith("lora_B.weight") and w.abs().sum() > 0 for k, w in wa.items())
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)


def test_injection_scale_out_of_distribution(tmp_path, train_base, sft_table):
    data = str(sft_table[0])
    for scale in (1000.0, 1e-4):  # ~10⁴× above and ~10⁻³× below the tiny base's embedding norm
        recipe = make_recipe(
            train_base,
            tmp_path / f"r{scale}",
            av={**AV, "steps": 1, "data": data},
            nla={"injection_scale": scale},
        )
        with pytest.raises(InjectionError, match=r"OUT OF DISTRIBUTION.*Pass --allow-ood-injection"):
            train_av(recipe, RunOptions(quiet=True))
        assert not list((tmp_path / f"r{scale}" / "av").glob("step_*"))
    last = train_av(recipe, RunOptions(quiet=True, allow_ood_injection=True))
    meta = NLAMeta.load(last)
    assert meta.injection.ood_allowed is True and meta.injection.scale == 1e-4


def test_qlora_with_8bit_adamw(tmp_path, train_base, sft_table):
    av = {
        **AV,
        "steps": 2,
        "checkpoint_every": 2,
        "data": str(sft_table[0]),
        "adapter": {"kind": "qlora", "r": 4},
        "optim": {"lr": 1e-2, "optimizer": "adamw_8bit"},
    }
    last = train_av(make_recipe(train_base, tmp_path / "q", av=av), RunOptions(quiet=True))
    meta = NLAMeta.load(last)
    assert meta.adapter.quant == "nf4" and meta.adapter.kind == "lora"
    state = json.loads((last / "trainer_state.json").read_text())
    assert "alpha" in json.dumps(state["optimizers"]["main"])  # bitsandbytes AdamW8bit's param-group keys
    reloaded = ActivationVerbalizer.from_pretrained(last)
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in reloaded.model.modules())
    saved = load_file(str(last / "adapter_model.safetensors"))
    lora_b = [k for k in saved if k.endswith("lora_B.weight")]
    assert lora_b and all(saved[k].abs().sum() > 0 for k in lora_b)  # trained away from the zero init
    loaded = dict(reloaded.model.named_parameters())
    for k in lora_b:
        torch.testing.assert_close(
            loaded[k.replace("lora_B.weight", "lora_B.av.weight")].detach().cpu(), saved[k]
        )


def test_continued_sft_starts_from_the_init_checkpoint(tmp_path, train_base, sft_table):
    """`av.init`: step 1's loss is the starting AV's own loss on the data (an independent CE), not the base's."""
    from hubkit.errors import CheckpointError

    data, vectors, texts = sft_table
    first = train_av(
        make_recipe(train_base, tmp_path / "a", av={**AV, "data": str(data)}), RunOptions(quiet=True)
    )
    start_ce, _ = independent_ce(ActivationVerbalizer.from_pretrained(first), vectors, texts)
    cont = {**AV, "data": str(data), "steps": 1, "checkpoint_every": 1, "init": str(first)}
    cont["adapter"] = {**AV["adapter"], "dropout": 0.0}  # the independent CE runs without dropout
    last = train_av(make_recipe(train_base, tmp_path / "b", av=cont), RunOptions(quiet=True))
    m = json.loads((last.parent / "metrics.jsonl").read_text().splitlines()[0])
    base = ActivationVerbalizer.from_pretrained(first, base_model=str(train_base))
    base.model.disable_adapter_layers()
    base_ce, _ = independent_ce(base, vectors, texts)
    assert abs(base_ce - start_ce) > 0.1 * start_ce  # a fresh adapter would start far from it
    assert m["loss"] == pytest.approx(start_ce, rel=5e-4)
    assert NLAMeta.load(last).training.parent == str(first)
    wider = {**cont, "adapter": {**AV["adapter"], "r": 16}}
    with pytest.raises(CheckpointError, match=r"field `av.init`: .* does not fit the adapter"):
        train_av(make_recipe(train_base, tmp_path / "c", av=wider), RunOptions(quiet=True))
