"""Fixtures for the engine tests: a SmolLM2-135M AV in fp32 (slow tests only)."""

from __future__ import annotations

import pytest
import torch


def smollm2_av(adapter_seed: int | None = None):
    """An AV over the prepared SmolLM2-135M in fp32 (embedding replacement at the embedding-norm scale,
    chat template), with an untrained LoRA adapter "av" (random B, so it changes the output) if asked."""
    from hubkit import arch, models
    from hubkit.injection import pick_marker
    from hubkit.meta import ARSpec, AVSpec, Injection, NLAMeta
    from hubkit.scale_lint import embedding_norm
    from hubkit.verbalizer import ActivationVerbalizer, render_prompt

    models.prepare("smollm2-135m")  # the one-off conversion: loading never converts
    model, tok = models.load("smollm2-135m", dtype=torch.float32)
    d = arch.hidden_size(model)
    spec = AVSpec(template="Explain the activation {injection_char} in a few words.", chat_template=True)
    marker = pick_marker(tok, lambda c: render_prompt(tok, spec.template, c, True))
    inj = Injection(scale=round(embedding_norm(model), 3), marker=marker)
    meta = NLAMeta(
        role="av",
        injection=inj,
        av=spec,
        ar=ARSpec(num_layers=21),
        base_model=model.name_or_path,
        d_model=d,
        layer=20,
    )
    name = None
    if adapter_seed is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"), adapter_name="av"
        )
        g = torch.Generator().manual_seed(adapter_seed)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        model.eval()
        name = "av"
    return ActivationVerbalizer(model, tok, meta, adapter_name=name)


@pytest.fixture(scope="module")
def close_engines_after():
    yield
    from hubkit import engines

    engines.close_engines()
