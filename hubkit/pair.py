"""`NLAPair`: an AV and an AR that belong together, and the round trip ``v → text → v̂``.

Two LoRA halves over one base share it (the AR then stops the forward after its K+1 blocks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from hubkit import heads, hub, loading
from hubkit.checkpoint import verify_on_load
from hubkit.errors import MetaError
from hubkit.inspection import Inspection, inspect_pair
from hubkit.meta import NLAMeta, check_compatible
from hubkit.metrics import cosine, fve, normalised_mse
from hubkit.reconstructor import ActivationReconstructor
from hubkit.vectors import check_vectors
from hubkit.verbalizer import ActivationVerbalizer, Explanation

log = logging.getLogger(__name__)

__all__ = ["NLAPair", "RoundTrip", "cosine", "normalised_mse"]


@dataclass
class RoundTrip:
    vectors: Tensor
    explanations: list[str]
    details: list[Explanation]
    reconstructions: Tensor
    cos: Tensor
    mse: Tensor

    @property
    def mean_cos(self) -> float:
        return float(self.cos.mean())

    @property
    def fve(self) -> float:
        """FVE of this round trip against its own predict-the-mean baseline (needs >= 2 distinct rows)."""
        return fve(self.vectors, self.reconstructions)


class NLAPair:
    def __init__(self, av: ActivationVerbalizer, ar: ActivationReconstructor) -> None:
        check_compatible(av.meta, ar.meta)
        self.av, self.ar = av, ar

    @property
    def shared_base(self) -> bool:
        return self.av.model is self.ar.model

    @classmethod
    def from_pretrained(
        cls,
        av: str | Path,
        ar: str | Path,
        base_model: str | None = None,
        revision: str | None = None,
        subfolder: str | None = None,
        av_revision: str | None = None,
        ar_revision: str | None = None,
        av_subfolder: str | None = None,
        ar_subfolder: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        injection_scale: float | str | None = None,
        verify: bool = True,
    ) -> NLAPair:
        """Load both halves; `revision`/`subfolder` apply to both unless the per-half ones are given."""
        av_dir = hub.resolve(av, revision=av_revision or revision, subfolder=av_subfolder or subfolder)
        ar_dir = hub.resolve(ar, revision=ar_revision or revision, subfolder=ar_subfolder or subfolder)
        av_meta, ar_meta = NLAMeta.load(av_dir, injection_scale=injection_scale), NLAMeta.load(ar_dir)
        if (av_meta.role, ar_meta.role) == ("ar", "av"):
            raise MetaError(
                f"av={av_dir} is an AR and ar={ar_dir} is an AV: the two halves are swapped; swap them"
            )
        for given, meta, want in ((av_dir, av_meta, "av"), (ar_dir, ar_meta, "ar")):
            if meta.role != want:
                raise MetaError(
                    f"{want}={given}: this is an {meta.role.upper()} checkpoint, not an {want.upper()}"
                )
        ar_base = base_model
        if not ar_meta.base_model:  # a LoRA-AR's ar_meta.json names no base: its AV's is the one
            ar_meta.base_model = av_meta.base_model
            ar_base = base_model or av_meta.base_model
            log.info("%s names no base model: using its AV's, %s", ar_dir, av_meta.base_model)
        check_compatible(av_meta, ar_meta)
        for folder in (av_dir, ar_dir):
            verify_on_load(folder, verify)
        both_adapters = loading.is_adapter(av_dir) and loading.is_adapter(ar_dir)
        if not (both_adapters and av_meta.adapter.quant == ar_meta.adapter.quant):
            load = dict(device=device, dtype=dtype, verify=False)
            av_half = ActivationVerbalizer.from_pretrained(
                av_dir, base_model=base_model, injection_scale=injection_scale, **load
            )
            return cls(av_half, ActivationReconstructor.from_pretrained(ar_dir, base_model=ar_base, **load))
        model, tok, _ = loading.load_half(av_dir, av_meta, base_model, device, dtype)  # the one base
        model = loading.attach_adapter(model, ar_dir, "ar", kept_blocks=ar_meta.ar.num_layers).eval()
        ar_tok = loading.load_tokenizer(ar_dir, loading.resolve_base(base_model or av_meta.base_model))
        head, _ = heads.load_head(ar_dir, ar_meta.ar.head_format, ar_meta.d_model, ar_meta.ar.head_bias)
        head = head.to(loading.model_device(model))
        av_half = ActivationVerbalizer(model, tok, av_meta, adapter_name="av")
        return cls(av_half, ActivationReconstructor(model, ar_tok, ar_meta, head, adapter_name="ar"))

    def round_trip(self, vectors: Tensor, batch_size: int | None = None, **generate_kwargs) -> RoundTrip:
        """``v → AV → text → AR → v̂`` with per-row cosine and normalised MSE (`generate_kwargs`: AV's)."""
        v = check_vectors(vectors, d_model=self.av.meta.d_model, nla_input=True)
        details = self.av.explain_detailed(v, batch_size=batch_size, **generate_kwargs)
        texts = [d.text for d in details]
        v_hat = self.ar.reconstruct(texts, **({"batch_size": batch_size} if batch_size else {}))
        return RoundTrip(v, texts, details, v_hat, cos=cosine(v, v_hat), mse=normalised_mse(v, v_hat))

    def inspect(
        self,
        text: str | None = None,
        *,
        chat: list[dict[str, str]] | None = None,
        reply_tokens: int = 0,
        positions: str | list[int] | None = "all",
        **kwargs,
    ) -> Inspection:
        """What this NLA says about each token of `text` or `chat`; see `hubkit.inspection.inspect_pair`."""
        return inspect_pair(self, text, chat=chat, reply_tokens=reply_tokens, positions=positions, **kwargs)
