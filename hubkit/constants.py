"""File names and fixed strings shared across hubkit (one place, no literals elsewhere)."""

from __future__ import annotations

SCHEMA_VERSION = "hubkit.nla/1"
DATASET_SCHEMA_VERSION = "hubkit.dataset/1"

META_FILE = "nla_meta.yaml"
AR_META_JSON = "ar_meta.json"  # consumer-GPU AR sidecar

# AR head files, by published layout
VALUE_HEAD_FILE = "value_head.safetensors"  # reference: Linear(d, d, bias=False), key "weight"
LINEAR_HEAD_PT_FILE = "linear_head.pt"  # residual-add variant: torch state_dict, bias=True
AR_LORA_HEAD_FILE = "ar_lora_value_head.safetensors"  # consumer-GPU: LoRA + head, normalised input
HEAD_FILES = {  # `ar.head_format` → its file, in the order a folder is searched for one
    "value_head": VALUE_HEAD_FILE,
    "ar_lora_value_head": AR_LORA_HEAD_FILE,
    "linear_head_pt": LINEAR_HEAD_PT_FILE,
}

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
MODEL_CONFIG_FILE = "config.json"
MODEL_MARKER_FILE = "hubkit_model.json"  # what made a cached offline model folder (its registry entry)

PROVENANCE_FILE = "provenance.json"
EVAL_FILE = "eval.json"
CARD_FILE = "README.md"

EXPLANATION_OPEN = "<explanation>"
EXPLANATION_CLOSE = "</explanation>"

# A scale further than this factor from the model's median token-embedding norm is out of distribution.
OOD_SCALE_FACTOR = 50.0

ENV_CACHE = "HUBKIT_CACHE"

# sha256 and size of every file of a checkpoint folder hubkit wrote (hidden: releases do not ship it)
CHECKPOINT_HASHES_FILE = ".hubkit_sha256.json"

# Files inside run, eval, release and chunk folders
PLOTS_DIR = "plots"  # eval outputs and release bundles
METRICS_FILE = "metrics.jsonl"  # per-step training log in a run folder
RECIPE_COPY = "recipe.yaml"  # the recipe copy a training run keeps in its folder
RELEASE_MANIFEST_FILE = "release.json"
CHUNKS_MANIFEST_FILE = "manifest.json"  # resumable stage outputs

# Schema ids of hubkit's own files
MODELS_REGISTRY_SCHEMA = "hubkit.models/1"
FAMILIES_SCHEMA = "hubkit.families/1"
RELEASE_SPEC_SCHEMA = "hubkit.release/1"
PROVENANCE_SCHEMA = "hubkit.provenance/1"
BUNDLE_SCHEMA = "hubkit.bundle/1"
CHUNKS_SCHEMA = "hubkit.chunks/1"

# Written beside the reference keys when they alone would be read into other settings than hubkit's record
# (listing those fields): a copy of the file without its `hubkit:` record is then refused, never misread.
RECORD_NEEDED_KEY = "hubkit_record_needed"
# Where a saved nla_meta.yaml keeps hubkit's own record, beside the reference keys.
HUBKIT_KEY = "hubkit"
