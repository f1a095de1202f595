"""Tiny random models with a real in-memory byte-level BPE tokenizer.

They train and generate in milliseconds, so unit tests and `hubkit demo --quick`
exercise the same code paths as real models: Llama, Qwen2, Gemma-3 text (scaled
embeddings) and Gemma-4 (text tower under ``model.language_model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma3TextConfig,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4TextConfig,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from hubkit import models
from hubkit.arch import hidden_size
from hubkit.checkpoint import write_checkpoint
from hubkit.heads import identity_head
from hubkit.injection import pick_marker
from hubkit.meta import ARSpec, AVSpec, Injection, NLAMeta
from hubkit.scale_lint import embedding_norm
from hubkit.verbalizer import render_prompt

ARCHS = ("llama", "qwen2", "gemma3", "gemma4")

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"
MARKER = "¶"  # kept as one token in the tiny vocabulary
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_TRAIN_TEXT = [
    "The cat sat on the mat and looked at the door.",
    "Summary of the following text: <text>a short explanation</text> <summary>",
    "<explanation>The token is a noun about animals; the sentence is about a city.</explanation>",
    "Explain the activation ¶ in a few words.",
    "Numbers like 1 2 3 4 5 6 7 8 9 0 appear in code, prose and lists.",
    "Paris is the capital of France. Rivers flow to the sea; rain falls in spring.",
    "def f(x): return x + 1  # python code with symbols {} [] () <> = + - * /",
    "<|user|> <|assistant|> <|end|> user assistant system",
]


def make_tokenizer(vocab_size: int = 512, chat: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in memory: every string encodes, nothing is downloaded."""
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [PAD, BOS, EOS, "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", MARKER]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TRAIN_TEXT * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left"
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def _config(arch: str, vocab: int, d: int, layers: int, tok: PreTrainedTokenizerFast):
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    common = dict(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=2 * d,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        **ids,
    )
    if arch not in ARCHS:
        raise ValueError(f"unknown tiny arch {arch!r}; choose one of {ARCHS}")
    if arch in ("llama", "qwen2"):
        return (LlamaConfig if arch == "llama" else Qwen2Config)(**common)
    if arch == "gemma3":
        return Gemma3TextConfig(head_dim=d // 4, sliding_window=64, **common)
    text = Gemma4TextConfig(head_dim=d // 4, sliding_window=64, **common)
    cfg = Gemma4Config(text_config=text.to_dict(), **ids)
    cfg.vision_config = cfg.audio_config = None
    return cfg


@dataclass
class TinyModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    arch: str

    @property
    def d_model(self) -> int:
        return hidden_size(self.model)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return path


def make_tiny_model(
    arch: str = "llama", d_model: int = 64, n_layers: int = 4, seed: int = 0, chat: bool = True
) -> TinyModel:
    """Build a random model of `arch` in float32 with a real tokenizer; deterministic in `seed`."""
    tok = make_tokenizer(chat=chat and arch != "gemma3")
    torch.manual_seed(seed)
    cfg = _config(arch, len(tok), d_model, n_layers, tok)
    model = Gemma4ForConditionalGeneration(cfg) if arch == "gemma4" else AutoModelForCausalLM.from_config(cfg)
    model = model.to(torch.float32).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return TinyModel(model=model, tokenizer=tok, arch=arch)


def tiny_metas(
    tiny: TinyModel,
    layer: int = 1,
    scale: float | str = "sqrt_d_model",
    chat: bool = True,
    scheme: str = "embedding_replace",
    base_model: str = "tiny",
) -> tuple[NLAMeta, NLAMeta]:
    """(AV meta, AR meta) in hubkit's schema for a tiny model, marker resolved from its tokenizer."""
    av_spec = AVSpec(template="Explain the activation {injection_char} in a few words.", chat_template=chat)
    inj = Injection(scheme=scheme, scale=scale if scheme == "embedding_replace" else None, marker=MARKER)
    ar_spec = ARSpec(num_layers=layer + 1)
    common = dict(base_model=base_model, d_model=tiny.d_model, layer=layer)
    av = NLAMeta(role="av", injection=inj, av=av_spec, ar=ar_spec, **common)
    return av, NLAMeta(role="ar", ar=ar_spec, **common)


def write_adapter_pair(
    folder: str | Path,
    base_dir: str | Path,
    layer: int = 2,
    seed: int = 1,
    *,
    metas: tuple[NLAMeta, NLAMeta] | None = None,
    r: int = 4,
    b_std: float = 0.3,
    head_noise: float = 0.1,
) -> tuple[Path, Path]:
    """Write an AV and an AR LoRA checkpoint over the saved base at `base_dir` (hubkit layout).

    The LoRA B matrices (std `b_std`) and the head (identity + `head_noise`) are random, so both halves
    really differ from the base; `metas` default to `tiny_metas` at `layer`. Returns (av_dir, ar_dir)."""
    folder, base_dir = Path(folder), Path(base_dir)
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    if metas is None:
        tiny = TinyModel(AutoModelForCausalLM.from_pretrained(str(base_dir)), tok, arch="saved")
        metas = tiny_metas(tiny, layer=layer, base_model=str(base_dir))
    d = metas[0].d_model
    for offset, meta in enumerate(metas):
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"]))
        g = torch.Generator().manual_seed(seed + offset)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * b_std)
        head = None
        if meta.role == "ar":
            head = identity_head(d)
            with torch.no_grad():
                head.weight.add_(head_noise * torch.randn(d, d, generator=g))
        write_checkpoint(folder / meta.role, model, tok, meta, head=head)
    return folder / "av", folder / "ar"


def write_real_pair(model_name: str, out: Path, layer: int) -> tuple[Path, Path, str]:
    """An untrained LoRA pair (r 8, B ~ N(0, 0.01), identity head) over an offline registry model, its marker
    picked on the real tokenizer and its scale the median embedding norm: (av_dir, ar_dir, base folder)."""
    base = str(models.prepare(model_name))
    model, tok = models.load(model_name, dtype=torch.float32)
    av_spec = AVSpec(template="Explain the activation {injection_char} in a few words.", chat_template=True)
    marker = pick_marker(tok, lambda c: render_prompt(tok, av_spec.template, c, True))
    inj = Injection(scale=round(embedding_norm(model), 3), marker=marker)
    common = dict(base_model=base, d_model=hidden_size(model), layer=layer, ar=ARSpec(num_layers=layer + 1))
    metas = (NLAMeta(role="av", injection=inj, av=av_spec, **common), NLAMeta(role="ar", **common))
    av_dir, ar_dir = write_adapter_pair(out, base, seed=0, metas=metas, r=8, b_std=0.01, head_noise=0.0)
    return av_dir, ar_dir, base
