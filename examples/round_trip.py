"""Round-trip a few tokens of your own text through a published NLA pair.

    python examples/round_trip.py --av ORG/NAME-av --ar ORG/NAME-ar --revision v0.1 "Some text to read."

After `hubkit demo`, its pair is on a local Hub under ~/.cache/hubkit/demo/hub; `--hub-root` serves
that folder for the duration of the script (the repo ids are printed at the end of the demo):

    python examples/round_trip.py --hub-root ~/.cache/hubkit/demo/hub \
        --av hubkit-demo/smollm2-135m-L20-nla-av --ar hubkit-demo/smollm2-135m-L20-nla-ar --revision v0.1

The vectors are the base model's residual stream at the NLA's layer for the last few tokens of the text
(read with the same forward the extraction stage uses), so they are what the NLA was trained to read.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from hubkit import NLAPair, arch, models
from hubkit.data.extract import tokenize


def layer_vectors(base: str, layer: int, text: str, last: int) -> tuple[torch.Tensor, list[str]]:
    """Residual vectors after block `layer` for the last `last` tokens of `text` (BOS first, as in extraction)."""
    model, tok = models.load(base, dtype=torch.float32)
    ids = tokenize(tok, [text], add_bos=True, max_length=128)[0]
    hidden = arch.hidden_at_block(model, layer, input_ids=torch.tensor([ids]))[0]
    positions = list(range(max(1, len(ids) - last), len(ids)))
    return hidden[positions].float(), [tok.decode(ids[: p + 1], skip_special_tokens=True) for p in positions]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="?", default="The kettle clicked off just as the rain started, and Maya")
    p.add_argument("--av", required=True, help="AV repo id or folder")
    p.add_argument("--ar", required=True, help="AR repo id or folder")
    p.add_argument("--revision", default=None, help="tag, branch or commit of both repos")
    p.add_argument("--hub-root", default=None, help="serve this local Hub folder while the script runs")
    p.add_argument("--last", type=int, default=3, help="how many final tokens to round-trip")
    p.add_argument("--max-new-tokens", type=int, default=48)
    args = p.parse_args()

    with contextlib.ExitStack() as stack:
        if args.hub_root:
            import huggingface_hub.hf_api  # noqa: F401  (use_endpoint patches its client)

            from hubkit.localhub import LocalHub, use_endpoint

            hub = stack.enter_context(LocalHub(args.hub_root))
            stack.enter_context(use_endpoint(hub.endpoint))
        pair = NLAPair.from_pretrained(av=args.av, ar=args.ar, revision=args.revision)
        meta = pair.av.meta
        vectors, prefixes = layer_vectors(meta.base_model, meta.layer, args.text, args.last)
        result = pair.round_trip(vectors, max_new_tokens=args.max_new_tokens)

    print(f"{meta.base_model}, layer {meta.layer}, d_model {meta.d_model}")
    for prefix, text, cos in zip(prefixes, result.explanations, result.cos.tolist()):
        print(f"\n…{prefix[-40:]!r}\n  explanation: {text!r}\n  cosine(v, v̂) = {cos:.3f}")
    print(f"\nmean cosine {result.mean_cos:.3f} over {len(prefixes)} vectors")


if __name__ == "__main__":
    main()
