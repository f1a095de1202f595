"""Publishing a trajectory: hubkit's one commit of ``step_*/`` folders vs one commit per checkpoint.

Builds a tiny NLA trajectory of 10 AV checkpoints (plus the fixed AR), evaluates it with
``hubkit.eval``, bundles it with ``hubkit.release``, then publishes the same bundle two ways, each
to its own local Hub endpoint (``hubkit.localhub``):

* hubkit: ``push_bundle`` (one ``create_commit`` with every file, then the tag);
* naive: ``HfApi.upload_folder`` once per checkpoint folder, then once for the top-level files.

For both it prints commits made, LFS bytes the server stored, and all request-body bytes the client
sent; then the same for pushing the unchanged release again (goal: 0 commits, 0 bytes).

    python benchmarks/bench_release.py [--steps 10] [--d-model 64]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

TOKEN = "hf_bench_token"


class Wire:
    """Counts request-body bytes huggingface_hub sends (Content-Length of every request)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.requests = 0

    def hook(self, request) -> None:
        self.requests += 1
        self.bytes += int(request.headers.get("content-length") or 0)

    def install(self) -> None:
        import huggingface_hub
        from huggingface_hub.utils import _http

        def factory():
            client = _http.default_client_factory()
            client.event_hooks["request"].append(self.hook)
            return client

        huggingface_hub.set_client_factory(factory)


def build_world(root: Path, steps: int, d_model: int) -> tuple[Path, Path]:
    """Tiny base, fixed AR, `steps` AV checkpoints, a trajectory eval, and a release spec; returns (spec, run)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hubkit.checkpoint import write_checkpoint
    from hubkit.eval.generation import Generation
    from hubkit.eval.trajectory import evaluate_trajectory
    from hubkit.heads import identity_head
    from hubkit.meta import Training
    from hubkit.testing import make_tiny_model, tiny_metas
    from hubkit.train.trajectory import Part, TrainerState, write_step

    tiny = make_tiny_model("llama", d_model=d_model, n_layers=2)
    base = tiny.save(root / "base")
    tok = AutoTokenizer.from_pretrained(str(base))
    av_meta, ar_meta = tiny_metas(tiny, layer=1, scale=1.0, base_model=str(base))

    def lora(seed: int):
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(str(base)),
            LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
        )
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        return model

    ar = write_checkpoint(root / "ar", lora(1), tok, ar_meta, head=identity_head(d_model))
    run = root / "run" / "av"
    for step in range(1, steps + 1):
        loss = 3.0 / step
        meta = av_meta.with_updates(training=Training(stage="av_sft", step=step * 50, loss=loss))
        state = TrainerState(
            stage="av_sft",
            step=step * 50,
            total_steps=steps * 50,
            loss=loss,
            lr=1e-4,
            tokens_seen=step * 3200,
            seed=0,
            data_sha256="d" * 64,
            config_sha256="c" * 64,
            parent=None,
            global_batch=8,
            world_size=1,
        )
        write_step(run, state, [Part(lora(100 + step), tok, meta)], {}, {})
    n = 10
    vectors = np.random.default_rng(0).standard_normal((n, d_model)).astype(np.float32)
    table = root / "eval.parquet"
    pq.write_table(
        pa.table(
            {
                "doc_id": [f"d{i}" for i in range(n)],
                "position": list(range(n)),
                "prefix": ["p"] * n,
                "vector": pa.array(list(vectors), pa.list_(pa.float32(), d_model)),
            }
        ),
        str(table),
    )
    gen = Generation(max_new_tokens=4)
    evaluate_trajectory(run, table, ar=ar, out_dir=root / "eval", generation=gen, n_boot=50, plots=False)
    (root / "releases").mkdir()
    spec = root / "releases" / "traj.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "kind": "trajectory",
                "tag": "v0.1",
                "license": "apache-2.0",
                "repos": {"trajectory": "bench/traj-av", "ar": "bench/traj-ar"},
                "partner_revision": "v0.1",
                "trajectory": "run/av",
                "eval": "eval/eval.json",
                "card": {
                    "base_model": "bench/tiny",
                    "intended_use": "benchmark",
                    "limitations": "random weights",
                    "citation": "@misc{bench}",
                },
            }
        )
    )
    return spec, run


def naive_push(api, folder: Path, repo: str) -> int:
    """One ``upload_folder`` commit per checkpoint folder, then one for the top-level files; returns commits."""
    api.create_repo(repo, exist_ok=True)
    commits = 0
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        info = api.upload_folder(
            repo_id=repo, folder_path=str(sub), path_in_repo=sub.name, commit_message=f"add {sub.name}"
        )
        commits += info.oid is not None
    api.upload_folder(
        repo_id=repo,
        folder_path=str(folder),
        allow_patterns=["*.md", "*.json"],
        commit_message="card and eval",
    )
    return commits + 1


def measure(hub, wire: Wire, fn) -> dict:
    c0, b0, w0, r0 = hub.stats.commits, hub.stats.lfs_bytes_received, wire.bytes, wire.requests
    t0 = time.perf_counter()
    fn()
    return {
        "commits": hub.stats.commits - c0,
        "lfs_bytes": hub.stats.lfs_bytes_received - b0,
        "sent_bytes": wire.bytes - w0,
        "requests": wire.requests - r0,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--d-model", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its "no files modified" notes

    from huggingface_hub import HfApi, constants

    from hubkit.localhub import LocalHub, use_endpoint
    from hubkit.release.bundle import build_bundle
    from hubkit.release.push import push_bundle

    with tempfile.TemporaryDirectory(prefix="bench-release-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        spec, _ = build_world(root, args.steps, args.d_model)
        bundle = build_bundle(spec, root / "bundle")
        folder = bundle.root / "trajectory"
        files = [p for p in folder.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        print(f"setup (models, eval, bundle): {time.perf_counter() - t0:.1f} s")
        wire = Wire()
        wire.install()
        constants.HF_HUB_CACHE = str(root / "hf-cache")
        results = {}
        with LocalHub(root / "hub-a") as hub, use_endpoint(hub.endpoint, token=TOKEN):
            results["hubkit"] = measure(
                hub, wire, lambda: push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)
            )
            results["hubkit re-push"] = measure(
                hub, wire, lambda: push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)
            )
        with LocalHub(root / "hub-b") as hub, use_endpoint(hub.endpoint, token=TOKEN):
            api = HfApi(endpoint=hub.endpoint, token=TOKEN)
            results["naive"] = measure(hub, wire, lambda: naive_push(api, folder, "bench/traj-av"))
            results["naive re-push"] = measure(hub, wire, lambda: naive_push(api, folder, "bench/traj-av"))

    print(
        f"\ntrajectory of {args.steps} checkpoints (tiny Llama d={args.d_model}, LoRA r=8), "
        f"{len(files)} files, {size / 1e6:.2f} MB; 2-core CPU, local Hub endpoint\n"
    )
    print(f"{'':34}{'commits':>9}{'LFS bytes':>12}{'bytes sent':>13}{'requests':>10}{'seconds':>9}")
    for name, r in results.items():
        label = {
            "hubkit": "hubkit: one commit",
            "naive": "naive: a commit per checkpoint",
            "hubkit re-push": "hubkit: re-push unchanged",
            "naive re-push": "naive: re-push unchanged",
        }[name]
        print(
            f"{label:34}{r['commits']:>9}{r['lfs_bytes']:>12}{r['sent_bytes']:>13}{r['requests']:>10}"
            f"{r['seconds']:>9.2f}"
        )
    h, n = results["hubkit"], results["naive"]
    print(
        f"\nnaive / hubkit: commits {n['commits'] / max(h['commits'], 1):.1f}x, "
        f"bytes sent {n['sent_bytes'] / max(h['sent_bytes'], 1):.2f}x, LFS bytes {n['lfs_bytes'] / max(h['lfs_bytes'], 1):.2f}x"
    )
    r = results["hubkit re-push"]
    print(
        f"re-push of the unchanged release (hubkit): {r['commits']} commits, {r['lfs_bytes']} LFS bytes, "
        f"{r['sent_bytes']} request-body bytes (goal 0); its {r['requests']} requests are the remote tree "
        "listing, the tag lookup and the sha256 verification"
    )


if __name__ == "__main__":
    main()
