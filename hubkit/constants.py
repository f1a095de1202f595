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

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
MODEL_CONFIG_FILE = "config.json"

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
