"""What one process holds under FSDP2: bytes of its local shards of parameters, gradients and AdamW state.

    torchrun --nproc_per_node 2 benchmarks/bench_fsdp_memory.py --model smollm2-135m --adapter full
    torchrun --nproc_per_node 1 benchmarks/bench_fsdp_memory.py --model tiny --json one.json

Each process shards the model as `hubkit train` does (`hubkit.train.fsdp.shard`: every decoder block,
then the root), takes one AdamW step on a small batch, and reports the bytes of its local shards.
Rank 0 prints the per-rank table, the bytes per parameter of the whole run (all ranks' bytes over the
parameter count: what each parameter costs, however it is split), and the largest base that fits
on K devices of M GB at that cost (weights, gradients and optimiser state; activations are given the
stated reserve). Runs on CPU with gloo, or one GPU per process with nccl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from hubkit.train import fsdp

BASES = {
    "7B": 7.6e9,
    "12B": 12.2e9,
    "27B": 27.4e9,
    "70B": 70.6e9,
}  # Qwen2.5-7B, Gemma-3-12B/27B, Llama-3.3-70B


def build(name: str, adapter: str, dtype: torch.dtype) -> torch.nn.Module:
    if name == "tiny":
        from hubkit.testing import make_tiny_model

        model = make_tiny_model("llama", d_model=64, n_layers=4, seed=0).model.to(dtype)
    else:
        from hubkit import loading, models

        model = loading.load_causal_lm(str(models.prepare(name)), dtype)
    if adapter == "full":
        return model.requires_grad_(True).train()
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=16, target_modules="all-linear"), adapter_name="av").train()


def largest_base(bytes_per_param: float, devices: int, gb: float, reserve: float) -> float:
    """Parameters whose weights, gradients and optimiser state fill `devices` x `gb` less the reserve."""
    return devices * gb * 1e9 * (1 - reserve) / bytes_per_param


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny", help="tiny, or a registry name (smollm2-135m)")
    ap.add_argument("--adapter", default="full", choices=("full", "lora"))
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--gb", type=float, default=80.0)
    ap.add_argument("--reserve", type=float, default=0.2, help="share of each device kept for activations")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    model = build(args.model, args.adapter, getattr(torch, args.dtype)).to(device)
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fsdp.shard(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(0, 100, (2, 16), device=device)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    mine = fsdp.local_bytes(model, opt)
    everyone: list = [None] * world
    dist.all_gather_object(everyone, mine)
    if rank == 0:
        run_bytes = sum(sum(r.values()) for r in everyone)
        per_param = run_bytes / total
        out = {
            "model": args.model,
            "adapter": args.adapter,
            "dtype": args.dtype,
            "world": world,
            "parameters": total,
            "trained": trained,
            "ranks": everyone,
            "bytes_per_parameter": per_param,
            "largest_base": largest_base(per_param, args.devices, args.gb, args.reserve),
            "fits": {
                k: n * per_param / args.devices <= args.gb * 1e9 * (1 - args.reserve)
                for k, n in BASES.items()
            },
        }
        print(
            f"{args.model} {args.adapter} {args.dtype}: {total:,} parameters ({trained:,} trained), {world} process(es)"
        )
        print("| rank | parameters | gradients | optimiser | total |")
        print("|---|---|---|---|---|")
        for i, r in enumerate(everyone):
            print(
                f"| {i} | {r['parameters']:,} | {r['gradients']:,} | {r['optimizer']:,} | {sum(r.values()):,} |"
            )
        print(f"bytes per parameter (all ranks together): {per_param:.2f}")
        print(
            f"largest base on {args.devices} x {args.gb:g} GB ({args.reserve:.0%} kept for activations): "
            f"{out['largest_base'] / 1e9:.1f}B parameters"
        )
        for k, n in BASES.items():
            need = n * per_param / args.devices / 1e9
            print(f"  {k}: {need:.1f} GB per device -> {'fits' if out['fits'][k] else 'does not fit'}")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # gloo's threads can abort the interpreter's own shutdown ("terminate called without an active
    # exception", SIGABRT, about one run in four on 2 CPU cores) after every figure is written: leave at once.
    sys.stdout.flush()
    os._exit(0)
