"""Fixtures for release tests: a tiny adapter pair, an AV trajectory, real eval.json files, release specs.

Everything is built once per session from a tiny random Llama (d=32, 2 blocks) and evaluated with the
real `hubkit.eval` functions; tests that alter files work on copies.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import constants

from hubkit.eval.generation import Generation
from hubkit.localhub import LocalHub, use_endpoint

D_MODEL = 32
LAYER = 1
SCALE = 1.0  # ~9x the tiny model's embedding norm (0.11): inside the 50x bound
TOKEN = "hf_release_test_secret_4f1c9a7d2e"
EVAL_KW = dict(generation=Generation(max_new_tokens=5, batch_size=12, ar_batch_size=32), n_boot=100)
STEPS = (1, 2, 3)


def _lora(base_dir: Path, seed: int):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(base_dir)),
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


@pytest.fixture(scope="session")
def release_world(tmp_path_factory) -> dict:
    """Base model, pair checkpoints, AV trajectory, eval table and eval outputs, built once."""
    root = tmp_path_factory.mktemp("release-world")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and kinder to a shared 2-core machine
    try:
        return _build_world(root)
    finally:
        torch.set_num_threads(threads)


def _build_world(root: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from hubkit.checkpoint import write_checkpoint
    from hubkit.eval.pair_eval import evaluate_pair
    from hubkit.eval.trajectory import evaluate_trajectory
    from hubkit.heads import identity_head
    from hubkit.meta import Training
    from hubkit.pair import NLAPair
    from hubkit.testing import make_tiny_model, tiny_metas
    from hubkit.train.trajectory import Part, TrainerState, write_step

    tiny = make_tiny_model("llama", d_model=D_MODEL, n_layers=2)
    base = tiny.save(root / "base")
    tok = AutoTokenizer.from_pretrained(str(base))
    av_meta, ar_meta = tiny_metas(tiny, layer=LAYER, scale=SCALE, base_model=str(base))
    head = identity_head(D_MODEL)
    with torch.no_grad():
        head.weight.add_(0.1 * torch.randn(D_MODEL, D_MODEL, generator=torch.Generator().manual_seed(3)))
    av_dir = write_checkpoint(root / "pair" / "av", _lora(base, 1), tok, av_meta)
    ar_dir = write_checkpoint(root / "pair" / "ar", _lora(base, 2), tok, ar_meta, head=head)

    rng = np.random.default_rng(0)
    n = 12
    vectors = rng.standard_normal((n, D_MODEL)).astype(np.float32)
    table = root / "eval.parquet"
    pq.write_table(
        pa.table(
            {
                "doc_id": [f"doc{i}" for i in range(n)],
                "position": list(range(n)),
                "prefix": [f"prefix {i}" for i in range(n)],
                "vector": pa.array(list(vectors), pa.list_(pa.float32(), D_MODEL)),
            }
        ),
        str(table),
    )

    pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
    evaluate_pair(
        pair, table, out_dir=root / "eval-pair", checkpoints={"av": av_dir, "ar": ar_dir}, **EVAL_KW
    )
    del pair

    run = root / "run" / "av"
    for step in STEPS:
        meta = av_meta.with_updates(training=Training(stage="av_sft", step=step, loss=3.0 - 0.5 * step))
        state = TrainerState(
            stage="av_sft",
            step=step,
            total_steps=STEPS[-1],
            loss=3.0 - 0.5 * step,
            lr=1e-4,
            tokens_seen=step * 64,
            seed=0,
            data_sha256="d" * 64,
            config_sha256="c" * 64,
            parent=None,
            global_batch=4,
            world_size=1,
        )
        write_step(run, state, [Part(_lora(base, 10 + step), tok, meta)], {}, {})
    evaluate_trajectory(run, table, ar=ar_dir, out_dir=root / "eval-traj", plots=False, **EVAL_KW)
    train = root / "av_sft.parquet"
    pq.write_table(pa.table({"doc_id": ["a", "b", "c"], "explanation": ["x", "y", "z"]}), str(train))
    return {
        "root": root,
        "base": base,
        "av": av_dir,
        "ar": ar_dir,
        "table": table,
        "vectors": vectors,
        "eval_pair": root / "eval-pair",
        "run": run,
        "eval_traj": root / "eval-traj",
        "train": train,
    }


@pytest.fixture
def project(tmp_path: Path, release_world: dict) -> dict:
    """A project folder with copies of the checkpoints and evals (safe to alter) and a ``releases/`` folder."""
    proj = tmp_path / "proj"
    (proj / "releases").mkdir(parents=True)
    out = {"root": proj, "base": release_world["base"], "vectors": release_world["vectors"]}
    for key, rel in (
        ("av", "ckpt/av"),
        ("ar", "ckpt/ar"),
        ("eval_pair", "eval-pair"),
        ("run", "run/av"),
        ("eval_traj", "eval-traj"),
    ):
        shutil.copytree(release_world[key], proj / rel)
        out[key] = proj / rel
    shutil.copyfile(release_world["train"], proj / "av_sft.parquet")
    # eval.json records absolute checkpoint paths; the copies are what these tests release
    return out


CARD = {
    "base_model": "hubkit-test/tiny-llama",
    "intended_use": "Unit tests of hubkit's release path.",
    "limitations": "A random tiny model: its explanations mean nothing.",
    "citation": "@misc{hubkit_test, title={hubkit test release}, year={2025}}",
}


def write_spec(project: dict, name: str = "rel", **fields) -> Path:
    """Write ``releases/NAME.yaml`` for a pair release (fields override), paths relative to the project root."""
    spec = {
        "kind": "pair",
        "tag": "v0.1",
        "license": "apache-2.0",
        "repos": {"av": "hubkit-org/tiny-nla-av", "ar": "hubkit-org/tiny-nla-ar"},
        "checkpoints": {"av": "ckpt/av", "ar": "ckpt/ar"},
        "eval": "eval-pair/eval.json",
        "training_data": ["av_sft.parquet"],
        "card": dict(CARD),
    }
    spec.update(fields)
    spec = {k: v for k, v in spec.items() if v is not None}
    path = project["root"] / "releases" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def trajectory_spec(project: dict, name: str = "traj", **fields) -> Path:
    base = {
        "kind": "trajectory",
        "repos": {"trajectory": "hubkit-org/tiny-nla-av-trajectory", "ar": "hubkit-org/tiny-nla-ar"},
        "checkpoints": None,
        "trajectory": "run/av",
        "eval": "eval-traj/eval.json",
        "partner_revision": "v0.1",
    }
    base.update(fields)
    return write_spec(project, name, **base)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """A local Hub that huggingface_hub, transformers and peft talk to, with a throwaway cache."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with LocalHub(tmp_path / "hub") as running, use_endpoint(running.endpoint):
        yield running


# -- one tiny pair per base family (the families tests) -------------------------------------------
FAMILY_ARCH = {"llama": "llama", "gemma": "gemma3", "qwen": "qwen2", "smollm": "llama"}


def _eval_table(path: Path, n: int, seed: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.random.default_rng(seed).standard_normal((n, D_MODEL)).astype(np.float32)
    pq.write_table(
        pa.table(
            {
                "doc_id": [f"doc{seed}-{i}" for i in range(n)],
                "position": list(range(n)),
                "prefix": [f"prefix {i}" for i in range(n)],
                "vector": pa.array(list(vectors), pa.list_(pa.float32(), D_MODEL)),
            }
        ),
        str(path),
    )
    return path


def _family_world(root: Path, family: str) -> dict:
    from transformers import AutoTokenizer

    from hubkit.checkpoint import write_checkpoint
    from hubkit.eval.pair_eval import evaluate_pair
    from hubkit.heads import identity_head
    from hubkit.pair import NLAPair
    from hubkit.scale_lint import embedding_norm
    from hubkit.testing import make_tiny_model, tiny_metas

    arch = FAMILY_ARCH[family]
    tiny = make_tiny_model(arch, d_model=D_MODEL, n_layers=2, chat=arch != "gemma3")
    base = tiny.save(root / "base")
    tok = AutoTokenizer.from_pretrained(str(base))
    scale = 2.0 * embedding_norm(tiny.model)  # well inside the out-of-distribution bound
    av_meta, ar_meta = tiny_metas(tiny, layer=LAYER, scale=scale, chat=arch != "gemma3", base_model=str(base))
    av_dir = write_checkpoint(root / "pair" / "av", _lora(base, 1), tok, av_meta)
    ar_dir = write_checkpoint(root / "pair" / "ar", _lora(base, 2), tok, ar_meta, head=identity_head(D_MODEL))
    pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
    checkpoints = {"av": av_dir, "ar": ar_dir}
    kw = dict(EVAL_KW, plots=False)
    evaluate_pair(
        pair, _eval_table(root / "eval.parquet", 12, 0), out_dir=root / "eval", checkpoints=checkpoints, **kw
    )
    out = {"root": root, "base": base, "av": av_dir, "ar": ar_dir, "eval": root / "eval"}
    if family == "smollm":  # a second eval of the same pair on another table: the training distribution
        evaluate_pair(
            pair,
            _eval_table(root / "train.parquet", 12, 1),
            out_dir=root / "eval-train",
            checkpoints=checkpoints,
            **kw,
        )
        out["eval_train"] = root / "eval-train"
    return out


@pytest.fixture(scope="session")
def family_worlds(tmp_path_factory) -> dict:
    """``{family: world}``: a tiny pair over a base of that family's architecture, evaluated, built on demand."""
    worlds: dict = {}
    root = tmp_path_factory.mktemp("family-worlds")

    def get(family: str) -> dict:
        if family not in worlds:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                worlds[family] = _family_world(root / family, family)
            finally:
                torch.set_num_threads(threads)
        return worlds[family]

    return get  # type: ignore[return-value]


def family_project(tmp_path: Path, world: dict) -> dict:
    """A project folder with copies of one family world (base included, so legal files can be added)."""
    proj = tmp_path / "proj"
    (proj / "releases").mkdir(parents=True)
    out = {"root": proj}
    for key in ("base", "av", "ar", "eval", "eval_train"):
        if key in world:
            shutil.copytree(world[key], proj / key)
            out[key] = proj / key
    return out
