"""A table of bad inputs run through the real CLI: each must exit non-zero with ONE line saying what was
wrong (naming the file, field or option), no traceback, and leave every file as it was.

The workspace is built once (a tiny saved base, an AV/AR LoRA pair, vectors, texts, an activations
table, a recipe); each case damages a copy of what it needs, so the cases are independent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from hubkit.cli import main

D = 64  # the tiny model's width


@dataclass
class Workspace:
    root: Path
    base: Path
    av: Path
    ar: Path
    vectors: Path
    texts: Path
    acts: Path
    splits: Path
    recipe: Path
    corpus: Path
    n: int = 0

    def tmp(self, name: str) -> Path:
        """A fresh folder for one case (inside the workspace, so its files are checked too)."""
        self.n += 1
        path = self.root / "cases" / f"{self.n:03d}-{name}"
        path.mkdir(parents=True)
        return path

    def copy(self, src: Path, name: str) -> Path:
        dst = self.tmp(name) / src.name
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
        return dst


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    from safetensors.torch import save_file

    from hubkit.testing import make_tiny_model, write_adapter_pair

    root = tmp_path_factory.mktemp("bad-inputs")
    os.environ["HUBKIT_CACHE"] = str(root / "cache")
    tiny = make_tiny_model("llama", d_model=D, n_layers=4)
    base = tiny.save(root / "base")
    av, ar = write_adapter_pair(root / "pair", base, layer=2)
    vectors = root / "vectors.safetensors"
    save_file({"vectors": torch.randn(3, D)}, str(vectors))
    texts = root / "texts.txt"
    texts.write_text("a cat on a mat\nthe sky is blue\n")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(f"word{i}x{j}" for j in range(40)) for i in range(12)))
    acts = root / "acts.parquet"
    splits = root / "splits"
    runner = CliRunner()
    for args in (
        [
            "extract",
            "--model",
            str(base),
            "--corpus",
            str(corpus),
            "--out",
            str(acts),
            "--layer",
            "2",
            "--positions-per-doc",
            "2",
            "--min-position",
            "2",
            "--max-length",
            "32",
            "--dtype",
            "float32",
        ],
        ["split", "--in", str(acts), "--out", str(splits)],
    ):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    sft = write_sft(root / "sft.parquet", torch.randn(8, D), [f"text number {i}" for i in range(8)])
    recipe = root / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "base_model": str(base),
                "layer": 2,
                "output_dir": str(root / "runs"),
                "nla": {"injection_scheme": "embedding_replace", "injection_scale": "embedding_norm"},
                "av": {"data": str(sft), "steps": 2, "micro_batch_size": 2},
                "ar": {"data": str(sft), "steps": 2, "micro_batch_size": 2},
            }
        )
    )
    return Workspace(root, base, av, ar, vectors, texts, acts, splits, recipe, corpus)


# -- helpers that write one kind of damage -------------------------------------------------------
def write_sft(path: Path, vectors: torch.Tensor, texts: list[str]) -> Path:
    """An av_sft / ar_sft table as stage 3 writes it (doc_id, position, vector, explanation)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(vectors.float().flatten().numpy(), pa.float32())
    table = pa.table(
        {
            "doc_id": [f"doc{i}" for i in range(len(texts))],
            "position": list(range(len(texts))),
            "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
            "explanation": texts,
        }
    )
    pq.write_table(table, path)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def edit_yaml(path: Path, edit: Callable[[dict], None]) -> Path:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))
    return path


def set_dotted(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[last] = value


def vec_file(ws: Workspace, name: str, tensors: dict) -> str:
    from safetensors.torch import save_file

    path = ws.tmp(name) / "v.safetensors"
    save_file(tensors, str(path))
    return str(path)


def npy_file(ws: Workspace, name: str, array: np.ndarray) -> str:
    path = ws.tmp(name) / "v.npy"
    np.save(str(path), array, allow_pickle=True)
    return str(path)


def meta_edit(ws: Workspace, which: str, edit: Callable[[dict], None]) -> str:
    """A copy of the AV or AR whose meta has `edit` applied to hubkit's own record (which readers prefer)."""
    folder = ws.copy(getattr(ws, which), which)
    edit_yaml(folder / "nla_meta.yaml", lambda data: edit(data.get("hubkit", data)))
    return str(folder)


def top_level_edit(ws: Workspace, which: str, edit: Callable[[dict], None]) -> str:
    folder = ws.copy(getattr(ws, which), which)
    edit_yaml(folder / "nla_meta.yaml", edit)
    return str(folder)


def damaged(ws: Workspace, which: str, file: str, damage: Callable[[Path], None]) -> str:
    folder = ws.copy(getattr(ws, which), which)
    damage(folder / file)
    return str(folder)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def truncated_copy(ws: Workspace, src: Path) -> str:
    path = ws.copy(src, "truncated")
    truncate(path)
    return str(path)


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little") + 8
    for i in range(8):
        data[header + 17 * i + 3] ^= 0xFF
    path.write_bytes(bytes(data))


def nan_head(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    tensors["weight"][0, 0] = float("nan")
    save_file(tensors, str(path))


def file_as_parent(ws: Workspace, name: str, leaf: str) -> str:
    blocker = ws.tmp(name) / "a-file"
    blocker.write_text("x")
    return str(blocker / leaf)


def recipe_with(ws: Workspace, name: str, dotted: str, value) -> str:
    path = ws.copy(ws.recipe, name)
    edit_yaml(path, lambda d: set_dotted(d, dotted, value))
    return str(path)


def parquet_without(ws: Workspace, name: str, column: str) -> str:
    """The activations table without `column`, its sidecar copied beside it (so only the column is wrong)."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(ws.acts))
    path = ws.tmp(name) / "acts.parquet"
    pq.write_table(table.drop([column]), str(path))
    for sidecar in ws.acts.parent.glob(ws.acts.name + ".*"):
        shutil.copy2(sidecar, path.parent / sidecar.name)
    return str(path)


def foreign_file(ws: Workspace, name: str, filename: str) -> str:
    path = ws.tmp(name) / filename
    path.write_bytes(b"a user's own file, not written by hubkit")
    return str(path)


def used_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


# -- the table: (id, args builder, what the one error line must name) ----------------------------
Case = tuple[str, Callable[[Workspace], list[str]], str]
V = "--vectors"

EXPLAIN: list[Case] = [
    ("vectors-missing", lambda w: ["explain", str(w.av), V, str(w.root / "nope.safetensors")], "nope"),
    (
        "vectors-empty",
        lambda w: ["explain", str(w.av), V, str(write_bytes(w.tmp("e") / "v.safetensors", b""))],
        "v.safetensors",
    ),
    (
        "vectors-truncated",
        lambda w: ["explain", str(w.av), V, truncated_copy(w, w.vectors)],
        "vectors.safetensors",
    ),
    (
        "vectors-random-bytes",
        lambda w: ["explain", str(w.av), V, str(write_bytes(w.tmp("r") / "v.safetensors", os.urandom(300)))],
        "v.safetensors",
    ),
    (
        "vectors-npy-object",
        lambda w: ["explain", str(w.av), V, npy_file(w, "o", np.array([{"a": 1}], dtype=object))],
        "v.npy",
    ),
    (
        "vectors-npy-width",
        lambda w: ["explain", str(w.av), V, npy_file(w, "w", np.ones((2, 10), np.float32))],
        "64|width|d_model",
    ),
    (
        "vectors-nan",
        lambda w: ["explain", str(w.av), V, vec_file(w, "n", {"vectors": torch.full((2, D), float("nan"))})],
        "NaN|non-finite|finite",
    ),
    (
        "vectors-inf",
        lambda w: ["explain", str(w.av), V, vec_file(w, "i", {"vectors": torch.full((2, D), float("inf"))})],
        "NaN|non-finite|finite|inf",
    ),
    (
        "vectors-zero-row",
        lambda w: ["explain", str(w.av), V, vec_file(w, "z", {"vectors": torch.zeros(2, D)})],
        "zero",
    ),
    (
        "vectors-3d",
        lambda w: ["explain", str(w.av), V, vec_file(w, "3", {"vectors": torch.ones(2, 2, 2, D)})],
        "shape|dim",
    ),
    (
        "vectors-1-wide",
        lambda w: ["explain", str(w.av), V, vec_file(w, "1", {"vectors": torch.ones(3, 1)})],
        "64|width|d_model",
    ),
    (
        "vectors-two-tensors",
        lambda w: ["explain", str(w.av), V, vec_file(w, "2", {"a": torch.ones(2, D), "b": torch.ones(2, D)})],
        "holds|name one",
    ),
    (
        "vectors-unknown-suffix",
        lambda w: ["explain", str(w.av), V, str(write_bytes(w.tmp("s") / "v.bin", b"123"))],
        "format|suffix|\\.bin",
    ),
    (
        "vectors-parquet-no-column",
        lambda w: ["explain", str(w.av), V, parquet_without(w, "p", "vector")],
        "vector",
    ),
    (
        "vectors-parquet-garbage",
        lambda w: [
            "explain",
            str(w.av),
            V,
            str(write_bytes(w.tmp("g") / "v.parquet", b"not parquet at all")),
        ],
        "v.parquet",
    ),
    (
        "vectors-empty-npy",
        lambda w: ["explain", str(w.av), V, npy_file(w, "0", np.zeros((0, D), np.float32))],
        "no vectors|empty|0 rows|no rows",
    ),
    ("av-missing", lambda w: ["explain", str(w.root / "no-such-av"), V, str(w.vectors)], "no-such-av"),
    ("av-empty-folder", lambda w: ["explain", str(w.tmp("ef")), V, str(w.vectors)], "nla_meta"),
    (
        "av-meta-invalid-yaml",
        lambda w: [
            "explain",
            damaged(w, "av", "nla_meta.yaml", lambda p: p.write_text("role: [av\n")),
            V,
            str(w.vectors),
        ],
        "nla_meta.yaml",
    ),
    (
        "av-meta-not-mapping",
        lambda w: [
            "explain",
            damaged(w, "av", "nla_meta.yaml", lambda p: p.write_text("- 1\n- 2\n")),
            V,
            str(w.vectors),
        ],
        "nla_meta.yaml",
    ),
    (
        "av-meta-unknown-key",
        lambda w: ["explain", meta_edit(w, "av", lambda d: d.update(colour="red")), V, str(w.vectors)],
        "colour",
    ),
    (
        "av-meta-reference-key-contradicts-record",
        lambda w: [
            "explain",
            top_level_edit(w, "av", lambda d: d["extraction"].update(injection_scale=999.0)),
            V,
            str(w.vectors),
        ],
        "injection_scale",
    ),
    (
        "av-meta-bad-d-model",
        lambda w: ["explain", meta_edit(w, "av", lambda d: d.update(d_model="wide")), V, str(w.vectors)],
        "d_model",
    ),
    (
        "av-meta-negative-layer",
        lambda w: ["explain", meta_edit(w, "av", lambda d: d.update(layer=-3)), V, str(w.vectors)],
        "layer",
    ),
    (
        "av-meta-null-scale",
        lambda w: [
            "explain",
            meta_edit(w, "av", lambda d: d["injection"].update(scale=None)),
            V,
            str(w.vectors),
        ],
        "scale",
    ),
    (
        "av-meta-negative-scale",
        lambda w: [
            "explain",
            meta_edit(w, "av", lambda d: d["injection"].update(scale=-4.0)),
            V,
            str(w.vectors),
        ],
        "scale",
    ),
    (
        "av-meta-template-no-marker",
        lambda w: [
            "explain",
            meta_edit(w, "av", lambda d: d["av"].update(template="no marker here")),
            V,
            str(w.vectors),
        ],
        "template",
    ),
    (
        "av-meta-empty-file",
        lambda w: [
            "explain",
            damaged(w, "av", "nla_meta.yaml", lambda p: p.write_text("")),
            V,
            str(w.vectors),
        ],
        "nla_meta.yaml",
    ),
    (
        "av-no-adapter-config",
        lambda w: ["explain", damaged(w, "av", "adapter_config.json", Path.unlink), V, str(w.vectors)],
        "adapter",
    ),
    (
        "av-no-adapter-weights",
        lambda w: ["explain", damaged(w, "av", "adapter_model.safetensors", Path.unlink), V, str(w.vectors)],
        "adapter_model|weights",
    ),
    (
        "av-adapter-config-bad-json",
        lambda w: [
            "explain",
            damaged(w, "av", "adapter_config.json", lambda p: p.write_text("{oops")),
            V,
            str(w.vectors),
        ],
        "adapter_config",
    ),
    (
        "av-adapter-weights-truncated",
        lambda w: ["explain", damaged(w, "av", "adapter_model.safetensors", truncate), V, str(w.vectors)],
        "adapter_model",
    ),
    (
        "av-tokenizer-corrupt",
        lambda w: [
            "explain",
            damaged(w, "av", "tokenizer.json", lambda p: p.write_text("{not json")),
            V,
            str(w.vectors),
        ],
        "tokenizer",
    ),
    (
        "av-meta-base-missing",
        lambda w: [
            "explain",
            meta_edit(w, "av", lambda d: d.update(base_model=str(w.root / "gone-base"))),
            V,
            str(w.vectors),
        ],
        "gone-base",
    ),
    (
        "explain-dtype-float8",
        lambda w: ["explain", str(w.av), V, str(w.vectors), "--dtype", "float8"],
        "float8",
    ),
    ("explain-device-cuda", lambda w: ["explain", str(w.av), V, str(w.vectors), "--device", "cuda"], "cuda"),
    (
        "explain-device-nonsense",
        lambda w: ["explain", str(w.av), V, str(w.vectors), "--device", "gpu9"],
        "gpu9",
    ),
    ("explain-batch-zero", lambda w: ["explain", str(w.av), V, str(w.vectors), "--batch-size", "0"], "batch"),
    (
        "explain-max-new-zero",
        lambda w: ["explain", str(w.av), V, str(w.vectors), "--max-new-tokens", "0"],
        "max-new-tokens",
    ),
    (
        "explain-max-new-negative",
        lambda w: ["explain", str(w.av), V, str(w.vectors), "--max-new-tokens", "-5"],
        "max-new-tokens",
    ),
    (
        "explain-temperature-negative",
        lambda w: ["explain", str(w.av), V, str(w.vectors), "--sample", "--temperature", "-1"],
        "temperature",
    ),
    (
        "explain-out-parent-file",
        lambda w: ["explain", str(w.av), V, str(w.vectors), "--out", file_as_parent(w, "pf", "o.jsonl")],
        "a-file|directory",
    ),
    (
        "explain-out-proc",
        lambda w: ["explain", str(w.av), V, str(w.vectors), "--out", "/proc/hubkit-nope/o.jsonl"],
        "/proc",
    ),
    (
        "explain-out-too-long",
        lambda w: [
            "explain",
            str(w.av),
            V,
            str(w.vectors),
            "--out",
            str(w.tmp("tl") / ("x" * 300 + ".jsonl")),
        ],
        "long",
    ),
    (
        "explain-subfolder-missing",
        lambda w: ["explain", str(w.av), V, str(w.vectors), "--subfolder", "step_999999"],
        "step_999999",
    ),
    ("explain-ar-as-av", lambda w: ["explain", str(w.ar), V, str(w.vectors)], "role|AV|av"),
]

RECONSTRUCT: list[Case] = [
    (
        "texts-missing",
        lambda w: [
            "reconstruct",
            str(w.ar),
            "--texts",
            str(w.root / "none.txt"),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "none.txt",
    ),
    (
        "texts-binary",
        lambda w: [
            "reconstruct",
            str(w.ar),
            "--texts",
            str(write_bytes(w.tmp("b") / "t.txt", bytes(range(256)) * 4)),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "t.txt",
    ),
    (
        "texts-jsonl-bad-line",
        lambda w: [
            "reconstruct",
            str(w.ar),
            "--texts",
            str(write_bytes(w.tmp("j") / "t.jsonl", b'{"text": "a"}\n{broken\n')),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "t.jsonl",
    ),
    (
        "texts-jsonl-no-field",
        lambda w: [
            "reconstruct",
            str(w.ar),
            "--texts",
            str(write_bytes(w.tmp("j") / "t.jsonl", b'{"words": "a"}\n')),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "text",
    ),
    (
        "texts-jsonl-not-string",
        lambda w: [
            "reconstruct",
            str(w.ar),
            "--texts",
            str(write_bytes(w.tmp("j") / "t.jsonl", b'{"text": 5}\n')),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "text",
    ),
    (
        "texts-empty",
        lambda w: [
            "reconstruct",
            str(w.ar),
            "--texts",
            str(write_bytes(w.tmp("e") / "t.txt", b"")),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "t.txt",
    ),
    (
        "ar-head-nan",
        lambda w: [
            "reconstruct",
            damaged(w, "ar", "value_head.safetensors", nan_head),
            "--texts",
            str(w.texts),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "value_head",
    ),
    (
        "ar-head-truncated",
        lambda w: [
            "reconstruct",
            damaged(w, "ar", "value_head.safetensors", truncate),
            "--texts",
            str(w.texts),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "value_head",
    ),
    (
        "ar-head-missing",
        lambda w: [
            "reconstruct",
            damaged(w, "ar", "value_head.safetensors", Path.unlink),
            "--texts",
            str(w.texts),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "value_head",
    ),
    (
        "ar-head-wrong-shape",
        lambda w: [
            "reconstruct",
            damaged(
                w,
                "ar",
                "value_head.safetensors",
                lambda p: __import__("safetensors.torch").torch.save_file(
                    {"weight": torch.ones(3, 3)}, str(p)
                ),
            ),
            "--texts",
            str(w.texts),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "value_head",
    ),
    (
        "ar-adapter-flipped-bytes",
        lambda w: [
            "reconstruct",
            damaged(w, "ar", "adapter_model.safetensors", truncate),
            "--texts",
            str(w.texts),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "adapter_model",
    ),
    (
        "ar-layer-99",
        lambda w: [
            "reconstruct",
            meta_edit(w, "ar", lambda d: (d.update(layer=99), d["ar"].update(num_layers=100))),
            "--texts",
            str(w.texts),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "99|100|layer|blocks",
    ),
    (
        "ar-meta-role-av",
        lambda w: [
            "reconstruct",
            str(w.av),
            "--texts",
            str(w.texts),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
        ],
        "role|AR|ar",
    ),
    (
        "reconstruct-out-parent-file",
        lambda w: [
            "reconstruct",
            str(w.ar),
            "--texts",
            str(w.texts),
            "--out",
            file_as_parent(w, "pf", "v.safetensors"),
        ],
        "a-file|directory",
    ),
    (
        "reconstruct-out-is-dir",
        lambda w: ["reconstruct", str(w.ar), "--texts", str(w.texts), "--out", str(w.tmp("d"))],
        "directory|out",
    ),
    (
        "reconstruct-batch-zero",
        lambda w: [
            "reconstruct",
            str(w.ar),
            "--texts",
            str(w.texts),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
            "--batch-size",
            "0",
        ],
        "batch",
    ),
    (
        "reconstruct-dtype-float8",
        lambda w: [
            "reconstruct",
            str(w.ar),
            "--texts",
            str(w.texts),
            "--out",
            str(w.tmp("o") / "v.safetensors"),
            "--dtype",
            "float8",
        ],
        "float8",
    ),
]

ROUND_TRIP: list[Case] = [
    (
        "rt-av-is-ar",
        lambda w: ["round-trip", "--av", str(w.ar), "--ar", str(w.ar), V, str(w.vectors)],
        "role|AV|av",
    ),
    (
        "rt-ar-is-av",
        lambda w: ["round-trip", "--av", str(w.av), "--ar", str(w.av), V, str(w.vectors)],
        "role|AR|ar",
    ),
    (
        "rt-layer-mismatch",
        lambda w: [
            "round-trip",
            "--av",
            meta_edit(w, "av", lambda d: d.update(layer=1)),
            "--ar",
            str(w.ar),
            V,
            str(w.vectors),
        ],
        "layer",
    ),
    (
        "rt-width-mismatch",
        lambda w: [
            "round-trip",
            "--av",
            meta_edit(w, "av", lambda d: d.update(d_model=32)),
            "--ar",
            str(w.ar),
            V,
            str(w.vectors),
        ],
        "d_model|width|32",
    ),
    (
        "rt-vectors-nan",
        lambda w: [
            "round-trip",
            "--av",
            str(w.av),
            "--ar",
            str(w.ar),
            V,
            vec_file(w, "n", {"vectors": torch.full((2, D), float("nan"))}),
        ],
        "NaN|finite",
    ),
    (
        "rt-max-new-zero",
        lambda w: [
            "round-trip",
            "--av",
            str(w.av),
            "--ar",
            str(w.ar),
            V,
            str(w.vectors),
            "--max-new-tokens",
            "0",
        ],
        "max-new-tokens",
    ),
]

CHECK: list[Case] = [
    ("check-missing-folder", lambda w: ["check", str(w.root / "absent-ckpt")], "absent-ckpt"),
    ("check-5000-char-name", lambda w: ["check", "a" * 5000], "long|name|repo"),
    ("check-bad-repo-id", lambda w: ["check", "org/with spaces/and/too/many/parts"], "repo|folder"),
]

EXTRACT_BASE = ["--layer", "2", "--max-length", "32", "--min-position", "2", "--dtype", "float32"]


def extract(
    w: Workspace, *extra: str, out: str | None = None, model: str | None = None, corpus: str | None = None
) -> list[str]:
    return [
        "extract",
        "--model",
        model or str(w.base),
        "--corpus",
        corpus or str(w.corpus),
        "--out",
        out or str(w.tmp("x") / "acts.parquet"),
        *EXTRACT_BASE,
        *extra,
    ]


EXTRACT: list[Case] = [
    ("extract-model-missing", lambda w: extract(w, model=str(w.root / "no-model")), "no-model"),
    ("extract-corpus-missing", lambda w: extract(w, corpus=str(w.root / "no-corpus.txt")), "no-corpus"),
    (
        "extract-corpus-binary",
        lambda w: extract(w, corpus=str(write_bytes(w.tmp("b") / "c.txt", bytes(range(256)) * 8))),
        "c.txt",
    ),
    (
        "extract-corpus-empty",
        lambda w: extract(w, corpus=str(write_bytes(w.tmp("e") / "c.txt", b""))),
        "c.txt|no documents|empty",
    ),
    (
        "extract-corpus-jsonl-bad",
        lambda w: extract(w, corpus=str(write_bytes(w.tmp("j") / "c.jsonl", b'{"text": "a b"}\n{bad\n'))),
        "c.jsonl",
    ),
    (
        "extract-corpus-jsonl-no-text",
        lambda w: extract(w, corpus=str(write_bytes(w.tmp("j") / "c.jsonl", b'{"body": "a b"}\n'))),
        "text",
    ),
    ("extract-layer-99", lambda w: extract(w, "--layer", "99"), "layer"),
    ("extract-layer-negative", lambda w: extract(w, "--layer", "-1"), "layer"),
    ("extract-positions-zero", lambda w: extract(w, "--positions-per-doc", "0"), "positions"),
    ("extract-max-length-zero", lambda w: extract(w, "--max-length", "0"), "max-length"),
    ("extract-min-position-negative", lambda w: extract(w, "--min-position", "-1"), "min-position"),
    ("extract-batch-zero", lambda w: extract(w, "--batch-size", "0"), "batch"),
    ("extract-dtype-float8", lambda w: extract(w, "--dtype", "float8"), "float8"),
    ("extract-device-cuda", lambda w: extract(w, "--device", "cuda"), "cuda"),
    (
        "extract-out-parent-file",
        lambda w: extract(w, out=file_as_parent(w, "pf", "a.parquet")),
        "a-file|directory",
    ),
    ("extract-out-foreign", lambda w: extract(w, out=foreign_file(w, "f", "mine.parquet")), "overwrite"),
    ("extract-out-not-parquet", lambda w: extract(w, out=str(w.tmp("s") / "acts.csv")), "parquet"),
    ("extract-docs-per-chunk-zero", lambda w: extract(w, "--docs-per-chunk", "0"), "docs-per-chunk"),
    ("extract-limit-docs-zero", lambda w: extract(w, "--limit-docs", "0"), "limit-docs"),
]

SPLIT: list[Case] = [
    (
        "split-in-missing",
        lambda w: ["split", "--in", str(w.root / "na.parquet"), "--out", str(w.tmp("o"))],
        "na.parquet",
    ),
    (
        "split-in-garbage",
        lambda w: [
            "split",
            "--in",
            str(write_bytes(w.tmp("g") / "a.parquet", b"garbage")),
            "--out",
            str(w.tmp("o")),
        ],
        "a.parquet",
    ),
    (
        "split-in-no-doc-id",
        lambda w: ["split", "--in", parquet_without(w, "d", "doc_id"), "--out", str(w.tmp("o"))],
        "doc_id",
    ),
    (
        "split-fractions-garbage",
        lambda w: ["split", "--in", str(w.acts), "--out", str(w.tmp("o")), "--fractions", "abc"],
        "fraction",
    ),
    (
        "split-fractions-negative",
        lambda w: [
            "split",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o")),
            "--fractions",
            "av_sft=-1,ar_sft=1,rl=0.5,eval=0.5",
        ],
        "fraction|-1",
    ),
    (
        "split-fractions-unknown-name",
        lambda w: ["split", "--in", str(w.acts), "--out", str(w.tmp("o")), "--fractions", "foo=0.5,bar=0.5"],
        "foo",
    ),
    (
        "split-fractions-not-number",
        lambda w: [
            "split",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o")),
            "--fractions",
            "av_sft=x,ar_sft=0.4,rl=0.1,eval=0.1",
        ],
        "x|number|fraction",
    ),
    (
        "split-out-is-file",
        lambda w: ["split", "--in", str(w.acts), "--out", foreign_file(w, "f", "splits")],
        "splits|directory",
    ),
    (
        "split-out-foreign",
        lambda w: [
            "split",
            "--in",
            str(w.acts),
            "--out",
            str(Path(foreign_file(w, "f", "av_sft.parquet")).parent),
        ],
        "overwrite",
    ),
]

LABEL: list[Case] = [
    (
        "label-in-missing",
        lambda w: ["label", "--in", str(w.root / "q.parquet"), "--out", str(w.tmp("o") / "l.parquet")],
        "q.parquet",
    ),
    (
        "label-in-no-prefix",
        lambda w: [
            "label",
            "--in",
            parquet_without(w, "p", "prefix"),
            "--out",
            str(w.tmp("o") / "l.parquet"),
            "--model",
            str(w.base),
        ],
        "prefix",
    ),
    (
        "label-openai-no-url",
        lambda w: [
            "label",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o") / "l.parquet"),
            "--backend",
            "openai",
        ],
        "base-url",
    ),
    (
        "label-openai-bad-url",
        lambda w: [
            "label",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o") / "l.parquet"),
            "--backend",
            "openai",
            "--base-url",
            "not a url",
            "--model",
            "m",
        ],
        "base-url|URL|url",
    ),
    (
        "label-batch-zero",
        lambda w: [
            "label",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o") / "l.parquet"),
            "--batch-size",
            "0",
            "--model",
            str(w.base),
        ],
        "batch",
    ),
    (
        "label-out-foreign",
        lambda w: [
            "label",
            "--in",
            str(w.acts),
            "--out",
            foreign_file(w, "f", "l.parquet"),
            "--model",
            str(w.base),
        ],
        "overwrite",
    ),
    (
        "label-model-missing",
        lambda w: [
            "label",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o") / "l.parquet"),
            "--model",
            str(w.root / "no-labeler"),
        ],
        "no-labeler",
    ),
    (
        "label-rps-negative",
        lambda w: [
            "label",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o") / "l.parquet"),
            "--backend",
            "openai",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--rps",
            "-1",
        ],
        "rps",
    ),
    (
        "label-concurrency-zero",
        lambda w: [
            "label",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o") / "l.parquet"),
            "--backend",
            "openai",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--concurrency",
            "0",
        ],
        "concurrency",
    ),
    (
        "label-cache-parent-file",
        lambda w: [
            "label",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o") / "l.parquet"),
            "--model",
            str(w.base),
            "--cache",
            file_as_parent(w, "pf", "c.sqlite"),
        ],
        "a-file|directory",
    ),
    (
        "label-rows-per-chunk-zero",
        lambda w: [
            "label",
            "--in",
            str(w.acts),
            "--out",
            str(w.tmp("o") / "l.parquet"),
            "--model",
            str(w.base),
            "--rows-per-chunk",
            "0",
        ],
        "rows-per-chunk",
    ),
]

BUILD: list[Case] = [
    (
        "build-splits-missing",
        lambda w: [
            "build",
            "--splits",
            str(w.root / "nosplits"),
            "--labeled",
            str(w.tmp("l")),
            "--out",
            str(w.tmp("o")),
        ],
        "nosplits",
    ),
    (
        "build-labeled-empty",
        lambda w: [
            "build",
            "--splits",
            str(w.splits),
            "--labeled",
            str(w.tmp("labeled")),
            "--out",
            str(w.tmp("o")),
        ],
        "labeled|explained",
    ),
    (
        "build-splits-empty",
        lambda w: [
            "build",
            "--splits",
            str(w.tmp("sp")),
            "--labeled",
            str(w.tmp("l")),
            "--out",
            str(w.tmp("o")),
        ],
        "split|sp",
    ),
    (
        "build-out-is-file",
        lambda w: [
            "build",
            "--splits",
            str(w.splits),
            "--labeled",
            str(w.tmp("l")),
            "--out",
            foreign_file(w, "f", "built"),
        ],
        "built|directory",
    ),
]

TRAIN: list[Case] = [
    ("recipe-missing", lambda w: ["train", "av", str(w.root / "none.yaml")], "none.yaml"),
    (
        "recipe-invalid-yaml",
        lambda w: ["train", "av", str(write_bytes(w.tmp("y") / "r.yaml", b"base_model: [\n"))],
        "r.yaml",
    ),
    (
        "recipe-not-mapping",
        lambda w: ["train", "av", str(write_bytes(w.tmp("y") / "r.yaml", b"- a\n- b\n"))],
        "r.yaml|mapping",
    ),
    (
        "recipe-binary",
        lambda w: ["train", "av", str(write_bytes(w.tmp("y") / "r.yaml", bytes(range(256))))],
        "r.yaml",
    ),
    ("recipe-unknown-key", lambda w: ["train", "av", recipe_with(w, "u", "flavour", "x")], "flavour"),
    ("recipe-lr-inf", lambda w: ["train", "av", recipe_with(w, "lr", "av.optim.lr", float("inf"))], "lr"),
    ("recipe-lr-nan", lambda w: ["train", "av", recipe_with(w, "lr", "av.optim.lr", float("nan"))], "lr"),
    ("recipe-lr-negative", lambda w: ["train", "av", recipe_with(w, "lr", "av.optim.lr", -0.1)], "lr"),
    ("recipe-lr-string", lambda w: ["train", "av", recipe_with(w, "lr", "av.optim.lr", "fast")], "lr"),
    ("recipe-steps-zero", lambda w: ["train", "av", recipe_with(w, "st", "av.steps", 0)], "steps"),
    (
        "recipe-micro-batch-zero",
        lambda w: ["train", "av", recipe_with(w, "mb", "av.micro_batch_size", 0)],
        "micro_batch_size",
    ),
    (
        "recipe-grad-accum-zero",
        lambda w: ["train", "ar", recipe_with(w, "ga", "ar.grad_accum", 0)],
        "grad_accum",
    ),
    (
        "recipe-max-grad-norm-negative",
        lambda w: ["train", "ar", recipe_with(w, "gn", "ar.optim.max_grad_norm", -1.0)],
        "max_grad_norm",
    ),
    (
        "recipe-warmup-negative",
        lambda w: ["train", "ar", recipe_with(w, "wu", "ar.optim.warmup_steps", -5)],
        "warmup",
    ),
    (
        "recipe-dtype-float8",
        lambda w: ["train", "av", recipe_with(w, "dt", "dtype", "float8")],
        "float8|dtype",
    ),
    (
        "recipe-base-missing",
        lambda w: ["train", "av", recipe_with(w, "bm", "base_model", str(w.root / "gone-base"))],
        "gone-base",
    ),
    (
        "recipe-data-missing",
        lambda w: ["train", "av", recipe_with(w, "dm", "av.data", str(w.root / "gone.parquet"))],
        "gone.parquet",
    ),
    ("recipe-layer-99", lambda w: ["train", "ar", recipe_with(w, "l99", "layer", 99)], "layer"),
    (
        "recipe-scheme-unknown",
        lambda w: ["train", "av", recipe_with(w, "sc", "nla.injection_scheme", "teleport")],
        "teleport",
    ),
    (
        "recipe-lora-r-zero",
        lambda w: ["train", "av", recipe_with(w, "r0", "av.adapter", {"kind": "lora", "r": 0})],
        "\\br\\b|adapter",
    ),
    ("train-steps-flag-zero", lambda w: ["train", "av", str(w.recipe), "--steps", "0"], "steps"),
    ("train-device-cuda", lambda w: ["train", "av", str(w.recipe), "--device", "cuda"], "cuda"),
    (
        "train-check-lr-inf",
        lambda w: ["train", "check", recipe_with(w, "lr", "ar.optim.lr", float("inf"))],
        "lr",
    ),
]

EVAL: list[Case] = [
    (
        "eval-table-missing",
        lambda w: [
            "eval",
            "--av",
            str(w.av),
            "--ar",
            str(w.ar),
            "--table",
            str(w.root / "t.parquet"),
            "--out",
            str(w.tmp("o")),
        ],
        "t.parquet",
    ),
    (
        "eval-table-no-vector",
        lambda w: [
            "eval",
            "--av",
            str(w.av),
            "--ar",
            str(w.ar),
            "--table",
            parquet_without(w, "v", "vector"),
            "--out",
            str(w.tmp("o")),
        ],
        "vector",
    ),
    (
        "eval-av-missing",
        lambda w: [
            "eval",
            "--av",
            str(w.root / "gone-av"),
            "--ar",
            str(w.ar),
            "--table",
            str(w.acts),
            "--out",
            str(w.tmp("o")),
        ],
        "gone-av",
    ),
    (
        "eval-n-boot-zero",
        lambda w: [
            "eval",
            "--av",
            str(w.av),
            "--ar",
            str(w.ar),
            "--table",
            str(w.acts),
            "--out",
            str(w.tmp("o")),
            "--n-boot",
            "0",
        ],
        "n-boot",
    ),
    (
        "eval-rows-zero",
        lambda w: [
            "eval",
            "--av",
            str(w.av),
            "--ar",
            str(w.ar),
            "--table",
            str(w.acts),
            "--out",
            str(w.tmp("o")),
            "--rows",
            "0",
        ],
        "rows",
    ),
    (
        "eval-out-is-file",
        lambda w: [
            "eval",
            "--av",
            str(w.av),
            "--ar",
            str(w.ar),
            "--table",
            str(w.acts),
            "--out",
            foreign_file(w, "f", "evalout"),
        ],
        "evalout|directory",
    ),
    (
        "eval-top-p-out-of-range",
        lambda w: [
            "eval",
            "--av",
            str(w.av),
            "--ar",
            str(w.ar),
            "--table",
            str(w.acts),
            "--out",
            str(w.tmp("o")),
            "--top-p",
            "1.5",
        ],
        "top-p",
    ),
]

OTHER: list[Case] = [
    (
        "release-unknown-name",
        lambda w: ["release", "nope-release", "--releases-dir", str(w.tmp("rel"))],
        "nope-release",
    ),
    (
        "release-spec-invalid-yaml",
        lambda w: [
            "release",
            "bad",
            "--releases-dir",
            str(write_bytes(w.tmp("rel") / "bad.yaml", b"name: [\n").parent),
        ],
        "bad.yaml",
    ),
    (
        "release-spec-not-mapping",
        lambda w: [
            "release",
            "bad",
            "--releases-dir",
            str(write_bytes(w.tmp("rel") / "bad.yaml", b"- 1\n").parent),
        ],
        "bad.yaml",
    ),
    ("models-prepare-unknown", lambda w: ["models", "prepare", "no-such-model"], "no-such-model"),
    (
        "demo-unknown-model",
        lambda w: ["demo", "--model", "no-such-model", "--out", str(w.tmp("demo"))],
        "no-such-model",
    ),
    ("demo-rows-zero", lambda w: ["demo", "--rows", "0", "--out", str(w.tmp("demo"))], "rows"),
    (
        "demo-out-is-file",
        lambda w: ["demo", "--quick", "--out", foreign_file(w, "f", "demo-out")],
        "demo-out|directory",
    ),
    ("unknown-command", lambda w: ["frobnicate"], "frobnicate"),
    ("unknown-option", lambda w: ["explain", "--colour", "red"], "colour"),
]


# -- what a fresh campaign found: wrong results, tracebacks and hangs, each now one line -----------------
def unhashed(ws: Workspace, which: str, file: str, damage: Callable[[Path], None]) -> str:
    """A damaged copy without its hash record (an older or foreign checkpoint): the loaders' own checks."""
    from hubkit import constants as C

    folder = ws.copy(getattr(ws, which), which)
    (folder / C.CHECKPOINT_HASHES_FILE).unlink()
    damage(folder / file)
    return str(folder)


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def edit_tensors(edit: Callable[[dict], dict]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        from safetensors.torch import load_file, save_file

        save_file(edit(load_file(str(path))), str(path))

    return apply


def _first_nan(t: dict) -> dict:
    key = sorted(t)[0]
    t[key][0, 0] = float("nan")
    return t


_RELEASE: dict[str, Path] = {}


def pair_eval(ws: Workspace) -> Path:
    """eval.json of the workspace pair, made once by the real `hubkit eval`."""
    if "eval" not in _RELEASE:
        out = ws.root / "eval-pair"
        args = ["eval", "--av", str(ws.av), "--ar", str(ws.ar), "--table", str(ws.acts), "--out", str(out)]
        args += ["--max-new-tokens", "4", "--n-boot", "50", "--no-plots"]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        _RELEASE["eval"] = out
    return _RELEASE["eval"]


def release_args(
    ws: Workspace, name: str, eval_edit: Callable[[dict], None] | None = None, **fields
) -> list[str]:
    """`hubkit release r` over the workspace pair: the spec (fields override) in a fresh case folder."""
    case = ws.tmp(name)
    ev = pair_eval(ws) / "eval.json"
    if eval_edit is not None:
        shutil.copytree(ev.parent, case / "eval")
        ev = case / "eval" / "eval.json"
        edit_json(ev, eval_edit)
    spec = {
        "kind": "pair",
        "tag": "v0.1",
        "license": "apache-2.0",
        "repos": {"av": "org/tiny-av", "ar": "org/tiny-ar"},
        "checkpoints": {"av": str(ws.av), "ar": str(ws.ar)},
        "eval": str(ev),
        "card": {
            "base_model": "hubkit-test/tiny-llama",
            "intended_use": "tests",
            "limitations": "a random tiny model",
            "citation": "@misc{t, title={t}}",
        },
        **fields,
    }
    (case / "releases").mkdir()
    (case / "releases" / "r.yaml").write_text(yaml.safe_dump(spec))
    return ["release", "r", "--releases-dir", str(case / "releases"), "--out", str(case / "bundle")]


def stray_bundle(ws: Workspace) -> list[str]:
    args = release_args(ws, "stray")
    out = Path(args[-1])
    out.mkdir()
    (out / "release.json").write_text("{}")
    (out / "my-notes.txt").write_text("a user's file")
    return args


def user_cards(ws: Workspace, body: str) -> list[str]:
    cards = ws.tmp("cards")
    (cards / "model.md.j2").write_text(body)
    return [*release_args(ws, "tpl"), "--cards", str(cards)]


def step_without_meta(ws: Workspace) -> str:
    run = ws.tmp("run") / "av"
    shutil.copytree(ws.av, run / "step_000001")
    (run / "step_000001" / "nla_meta.yaml").unlink()
    return str(run)


def fifo(ws: Workspace) -> str:
    path = ws.tmp("fifo") / "corpus.txt"
    os.mkfifo(path)
    return str(path)


def labeled_input(ws: Workspace, name: str, edit: Callable) -> str:
    import pyarrow.parquet as pq

    path = ws.tmp(name) / "acts.parquet"
    pq.write_table(edit(pq.read_table(str(ws.acts))), str(path))
    for sidecar in ws.acts.parent.glob(ws.acts.name + ".*"):
        shutil.copy2(sidecar, path.parent / sidecar.name)
    return str(path)


def null_prefix(table):
    import pyarrow as pa

    prefixes = table.column("prefix").to_pylist()
    prefixes[1] = None
    return table.set_column(table.column_names.index("prefix"), "prefix", pa.array(prefixes, pa.string()))


def truncated_split(ws: Workspace) -> str:
    splits = ws.copy(ws.splits, "splits")
    truncate(next(iter(sorted(splits.glob("*.parquet")))))
    return str(splits)


def truncated_labeled(ws: Workspace) -> list[str]:
    """`build` over the workspace splits and a labeled folder whose av_sft table is cut in half."""
    labeled = ws.tmp("labeled")
    for f in [*ws.splits.glob("av_sft.parquet*"), *ws.splits.glob("ar_sft.parquet*")]:
        shutil.copy2(f, labeled / f.name)
    truncate(labeled / "av_sft.parquet")
    return ["build", "--splits", str(ws.splits), "--labeled", str(labeled), "--out", str(ws.tmp("o"))]


def unverified_run(ws: Workspace) -> list[str]:
    """`train av --resume` on a copy of a real 2-step run whose last step lost its hash record."""
    from hubkit import constants as C

    if "run" not in _RELEASE:
        run = ws.root / "trained" / "av"
        result = CliRunner().invoke(main, ["train", "av", str(ws.recipe), "--out", str(run), "-q"])
        assert result.exit_code == 0, result.output
        _RELEASE["run"] = run
    run = ws.copy(_RELEASE["run"], "run")
    (sorted(run.glob("step_*"))[-1] / C.CHECKPOINT_HASHES_FILE).unlink()
    return ["train", "av", str(ws.recipe), "--out", str(run), "--resume", "-q"]


def ar_meta_json(ws: Workspace, body: str) -> str:
    folder = ws.copy(ws.ar, "ar")
    (folder / "nla_meta.yaml").unlink()
    (folder / "ar_meta.json").write_text(body)
    return str(folder)


def recon(folder: str | Path, texts: str | Path, w: Workspace) -> list[str]:
    return ["reconstruct", str(folder), "--texts", str(texts), "--out", str(w.tmp("o") / "v.safetensors")]


def explain_cmd(w: Workspace, folder: str | Path, *extra: str) -> list[str]:
    return ["explain", str(folder), V, str(w.vectors), *extra]


def eval_cmd(
    w: Workspace, *extra: str, av: str | Path | None = None, ar: str | Path | None = None
) -> list[str]:
    return [
        "eval",
        "--av",
        str(av or w.av),
        "--ar",
        str(ar or w.ar),
        "--table",
        str(w.acts),
        "--out",
        str(w.tmp("o")),
        *extra,
    ]


def label_cmd(w: Workspace, source: str | Path, *extra: str) -> list[str]:
    return [
        "label",
        "--in",
        str(source),
        "--out",
        str(w.tmp("o") / "l.parquet"),
        "--model",
        str(w.base),
        *extra,
    ]


def config_edit(**changes) -> Callable[[Path], None]:
    return lambda p: edit_json(p, lambda c: c.update(changes))


def head_filled(value: float) -> Callable[[Path], None]:
    return edit_tensors(lambda t: {"weight": torch.full_like(t["weight"], value)})


RENAMED = edit_tensors(lambda t: {k.replace("lora_A", "lora_X"): v for k, v in t.items()})
HUGE_B = edit_tensors(lambda t: {k: torch.full_like(v, 3e38) if "lora_B" in k else v for k, v in t.items()})
ADAPTER, HEAD, CONFIG, META = (
    "adapter_model.safetensors",
    "value_head.safetensors",
    "adapter_config.json",
    "nla_meta.yaml",
)

# One row per line: the table reads as a table.
# fmt: off
FOUND: list[Case] = [
    # weights that would load, or compute, silently wrong
    ("av-adapter-one-byte-flipped", lambda w: explain_cmd(w, damaged(w, "av", ADAPTER, flip)), "adapter_model.safetensors.*sha256"),
    ("av-adapter-keys-renamed", lambda w: explain_cmd(w, unhashed(w, "av", ADAPTER, RENAMED)), "adapter_model.*not loaded"),
    ("av-adapter-ia3", lambda w: explain_cmd(w, unhashed(w, "av", CONFIG, config_edit(peft_type="IA3"))), "peft_type"),
    ("av-adapter-nan", lambda w: explain_cmd(w, unhashed(w, "av", ADAPTER, edit_tensors(_first_nan))), "adapter_model.*NaN"),
    ("av-lora-alpha-1e30", lambda w: explain_cmd(w, unhashed(w, "av", CONFIG, config_edit(lora_alpha=1e30))), "lora_alpha"),
    ("av-adapter-huge-finite-weights", lambda w: explain_cmd(w, unhashed(w, "av", ADAPTER, HUGE_B)), "adapter_model.*NaN/inf logits"),
    ("ar-lora-alpha-1e30", lambda w: recon(unhashed(w, "ar", CONFIG, config_edit(lora_alpha=1e30)), w.texts, w), "lora_alpha"),
    ("ar-head-3e38", lambda w: recon(unhashed(w, "ar", HEAD, head_filled(3e38)), w.texts, w), "value_head.*NaN/inf"),
    ("ar-head-int32", lambda w: recon(unhashed(w, "ar", HEAD, edit_tensors(lambda t: {"weight": t["weight"].to(torch.int32)})), w.texts, w), "value_head.*int32"),
    ("ar-head-nan-unhashed", lambda w: recon(unhashed(w, "ar", HEAD, nan_head), w.texts, w), "value_head.*NaN"),
    ("rt-head-3e38", lambda w: ["round-trip", "--av", str(w.av), "--ar", unhashed(w, "ar", HEAD, head_filled(3e38)), V, str(w.vectors), "--max-new-tokens", "3"], "value_head"),
    ("eval-head-3e38", lambda w: eval_cmd(w, "--rows", "10", "--max-new-tokens", "2", ar=unhashed(w, "ar", HEAD, head_filled(3e38))), "value_head.*NaN/inf"),
    ("train-resume-from-an-unverifiable-step", unverified_run, "hubkit_sha256.json.*--resume-unverified"),
    ("ar-meta-hubkit-record-stripped", lambda w: recon(top_level_edit(w, "ar", lambda d: d.pop("hubkit")), w.texts, w), "hubkit_record_needed|`hubkit:` record"),
    # tracebacks
    ("av-meta-utf16", lambda w: explain_cmd(w, damaged(w, "av", META, lambda p: p.write_text(p.read_text(), encoding="utf-16"))), "nla_meta.yaml.*UTF-8"),
    ("av-meta-latin1", lambda w: explain_cmd(w, damaged(w, "av", META, lambda p: p.write_bytes(p.read_bytes() + b"# caf\xe9\n"))), "nla_meta.yaml.*UTF-8"),
    ("ar-meta-json-corrupt", lambda w: recon(ar_meta_json(w, "{oops"), w.texts, w), "ar_meta.json"),
    ("ar-meta-json-list", lambda w: recon(ar_meta_json(w, "[1, 2]"), w.texts, w), "ar_meta.json"),
    ("label-cache-corrupt", lambda w: label_cmd(w, w.acts, "--cache", str(write_bytes(w.tmp("c") / "c.sqlite", b"no database" * 90))), "c.sqlite"),
    ("label-prefix-nulls", lambda w: label_cmd(w, labeled_input(w, "np", null_prefix), "--no-cache"), "prefix.*null"),
    ("build-split-truncated", lambda w: ["build", "--splits", truncated_split(w), "--labeled", str(w.tmp("l")), "--out", str(w.tmp("o"))], "parquet"),
    ("build-labeled-truncated", truncated_labeled, "av_sft.parquet"),
    ("recipe-target-modules-match-nothing", lambda w: ["train", "av", recipe_with(w, "tm", "av.adapter", {"kind": "lora", "r": 4, "target_modules": ["no_such_proj"]})], "target_modules"),
    ("eval-trajectory-step-without-meta", lambda w: ["eval", "--trajectory", step_without_meta(w), "--ar", str(w.ar), "--table", str(w.acts), "--out", str(w.tmp("o"))], "step_000001"),
    ("release-card-template-syntax", lambda w: user_cards(w, "{% if %}broken"), "model.md.j2"),
    ("hub-serve-port-70000", lambda w: ["hub", "serve", "--root", str(w.tmp("h") / "r"), "--port", "70000"], "port"),
    ("hub-serve-port-negative", lambda w: ["hub", "serve", "--root", str(w.tmp("h") / "r"), "--port", "-1"], "port"),
    # hangs
    ("texts-one-2mb-line", lambda w: recon(w.ar, write_bytes(w.tmp("l") / "t.txt", b"short\n" + b"word " * 400_000 + b"\n"), w), "t.txt.*row"),
    ("eval-n-boot-huge", lambda w: eval_cmd(w, "--n-boot", "1000000000"), "n-boot"),
    ("explain-max-new-beyond-context", lambda w: explain_cmd(w, w.av, "--max-new-tokens", "100000"), "max-new-tokens"),
    # silent accepts
    ("recipe-max-length-1", lambda w: ["train", "av", recipe_with(w, "ml", "av.max_length", 1)], "max_length"),
    ("train-check-sft-table-as-grpo-data", lambda w: ["train", "check", recipe_with(w, "gd", "grpo", {"data": str(w.root / "sft.parquet")})], "grpo.data"),
    ("release-unknown-licence", lambda w: release_args(w, "lic", license="apache2"), "license.*apache-2.0"),
    ("release-eval-without-provenance", lambda w: release_args(w, "prov", eval_edit=lambda e: e.pop("provenance")), "provenance"),
    # published wrong
    ("release-out-stray-manifest", stray_bundle, "not a release bundle"),
    ("release-repos-av-is-ar", lambda w: release_args(w, "same", repos={"av": "org/one", "ar": "org/one"}), "repos.av|repos.ar"),
    ("release-eval-nan-figure", lambda w: release_args(w, "nan", eval_edit=lambda e: e["figures"]["round_trip"]["all"]["cos"].update(mean=float("nan"))), "eval.json.*figures.round_trip.all.cos.mean.*non-finite"),
    # smaller
    ("extract-corpus-fifo", lambda w: extract(w, corpus=fifo(w)), "corpus.txt.*(FIFO|not a regular file)"),
    ("explain-injection-scale-nan", lambda w: explain_cmd(w, w.av, "--injection-scale", "nan"), "--injection-scale"),
]
# fmt: on

TABLE: list[Case] = (
    EXPLAIN
    + RECONSTRUCT
    + ROUND_TRIP
    + CHECK
    + EXTRACT
    + SPLIT
    + LABEL
    + BUILD
    + TRAIN
    + EVAL
    + OTHER
    + FOUND
)


def test_the_table_is_large_and_its_ids_unique():
    ids = [case[0] for case in TABLE]
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and "cache" not in p.relative_to(root).parts[:1]
    }


PROGRESS = re.compile(r"it/s\]|s/it\]|%\|")


@pytest.mark.parametrize("case", TABLE, ids=[case[0] for case in TABLE])
def test_bad_input_is_one_clear_line_and_writes_nothing(ws, case):
    _, build, names = case
    args = build(ws)
    before = snapshot(ws.root)
    result = CliRunner().invoke(main, args)
    after = snapshot(ws.root)
    text = result.output
    assert "Traceback" not in text, text
    assert result.exit_code not in (0, None), f"exit 0 for {args}: {text}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in text.splitlines() if line.strip() and not PROGRESS.search(line)]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors == lines[-1:], text
    # an option may be named as --max-length or as its field max_length
    assert re.search(names.replace("_", "-"), errors[0].replace("_", "-"), flags=re.IGNORECASE), (
        f"{errors[0]!r} does not name /{names}/"
    )
    assert after == before, sorted(set(after.items()) ^ set(before.items()))


def test_a_port_in_use_and_a_root_under_a_file_are_one_line(tmp_path):
    sock, port = used_port()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    try:
        for args, names in (
            (["hub", "serve", "--root", str(tmp_path / "r"), "--port", str(port)], str(port)),
            (["hub", "serve", "--root", str(blocker / "root"), "--port", "0"], "file|directory"),
        ):
            result = CliRunner().invoke(main, args)
            lines = [line for line in result.output.splitlines() if line.strip()]
            assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error:"), result.output
            assert re.search(names, lines[0]), lines[0]
    finally:
        sock.close()


def test_json_texts_file_reports_the_line(ws):
    path = ws.tmp("jl") / "t.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + "{oops\n")
    result = CliRunner().invoke(
        main, ["reconstruct", str(ws.ar), "--texts", str(path), "--out", str(ws.tmp("o") / "v.safetensors")]
    )
    assert result.exit_code != 0 and re.search(r"(line |:)2\b", result.output), result.output


# -- the property: no command exits 0 having written a non-finite number --------------------------------
def non_finite_in(path: Path) -> str | None:
    """Where `path` (json, jsonl, yaml, safetensors or parquet) holds NaN or inf, or None."""
    import math

    import pyarrow.parquet as pq
    from safetensors.torch import load_file

    def walk(value, where: str) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return where
        items = (
            value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        )
        return next((w for k, v in items if (w := walk(v, f"{where}.{k}"))), None)

    suffix = path.suffix
    if suffix == ".json":
        return walk(json.loads(path.read_text()), path.name)
    if suffix == ".jsonl":
        return next(
            (
                w
                for i, line in enumerate(path.read_text().splitlines())
                if line.strip() and (w := walk(json.loads(line), f"{path.name}:{i + 1}"))
            ),
            None,
        )
    if suffix in (".yaml", ".yml"):
        return walk(yaml.safe_load(path.read_text()), path.name)
    if suffix == ".safetensors":
        return next(
            (
                f"{path.name}:{k}"
                for k, t in load_file(str(path)).items()
                if t.is_floating_point() and not torch.isfinite(t).all()
            ),
            None,
        )
    if suffix == ".parquet":
        table = pq.read_table(str(path))
        for name, column in zip(table.column_names, table.columns):
            values = _floats(column.combine_chunks())
            if values is not None and not np.isfinite(values).all():
                return f"{path.name}:{name}"
    return None


def _floats(arr) -> np.ndarray | None:
    """The float values of an arrow column (lists flattened), or None for other types."""
    import pyarrow as pa

    if pa.types.is_floating(arr.type):
        return arr.to_numpy(zero_copy_only=False)
    if (
        pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
    ):
        return _floats(arr.flatten())
    return None


def written_since(root: Path, before: dict) -> list[Path]:
    return [root / rel for rel, stamp in snapshot(root).items() if before.get(rel) != stamp]


def test_the_non_finite_scanner_finds_what_it_looks_for(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.torch import save_file

    (tmp_path / "a.json").write_text('{"x": {"y": [1.0, NaN]}}')
    (tmp_path / "b.jsonl").write_text('{"cos": 0.5}\n{"cos": Infinity}\n')
    (tmp_path / "c.yaml").write_text("a: .nan\n")
    save_file({"v": torch.tensor([1.0, float("inf")])}, str(tmp_path / "d.safetensors"))
    vec = pa.FixedSizeListArray.from_arrays(pa.array([1.0, float("nan")], pa.float32()), 2)
    pq.write_table(pa.table({"vector": vec}), str(tmp_path / "e.parquet"))
    found = {p.name: non_finite_in(p) for p in sorted(tmp_path.iterdir())}
    assert found == {
        "a.json": "a.json.x.y.1",
        "b.jsonl": "b.jsonl:2.cos",
        "c.yaml": "c.yaml.a",
        "d.safetensors": "d.safetensors:v",
        "e.parquet": "e.parquet:vector",
    }
    save_file({"v": torch.ones(2)}, str(tmp_path / "d.safetensors"))
    assert non_finite_in(tmp_path / "d.safetensors") is None


def _run_and_scan(ws: Workspace, args: list[str]) -> tuple[int, list[str]]:
    before = snapshot(ws.root)
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output, result.output
    bad = [w for p in written_since(ws.root, before) if (w := non_finite_in(p))]
    return result.exit_code, bad


@pytest.mark.parametrize("scale_exp", [-40, -20, 0, 3, 18, 30])
def test_no_command_exits_0_with_a_non_finite_number_in_what_it_wrote(ws, scale_exp):
    """Vectors of every magnitude float32 holds (and some whose norm it cannot) through every command
    that computes numbers: either a clean exit with finite files, or an error line and nothing non-finite."""
    scale = 10.0**scale_exp
    vectors = vec_file(
        ws,
        f"s{scale_exp}",
        {"vectors": torch.randn(2, D, generator=torch.Generator().manual_seed(0)) * scale},
    )
    outs = ws.tmp(f"out{scale_exp}")
    commands = [
        ["explain", str(ws.av), V, vectors, "--max-new-tokens", "3", "--out", str(outs / "e.jsonl")],
        [
            "round-trip",
            "--av",
            str(ws.av),
            "--ar",
            str(ws.ar),
            V,
            vectors,
            "--max-new-tokens",
            "3",
            "--out",
            str(outs / "r.jsonl"),
        ],
        ["reconstruct", str(ws.ar), "--texts", str(ws.texts), "--out", str(outs / "v.safetensors")],
    ]
    for args in commands:
        code, bad = _run_and_scan(ws, args)
        assert not bad, (args, bad)
        assert code == 0 or abs(scale_exp) >= 30, args  # ordinary magnitudes run; the property is not vacuous
    # and the eval written once for the release rows: every figure finite
    ev = pair_eval(ws)
    assert not [w for p in sorted(ev.rglob("*")) if p.is_file() and (w := non_finite_in(p))]
