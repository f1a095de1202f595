"""`NLAMeta`: one half of an NLA described completely; load any dialect, save hubkit's own.

A saved ``nla_meta.yaml`` carries the reference implementation's schema_version-2 keys at the
top level (so its inference client and critic read it) and hubkit's full record under
``hubkit:``, which hubkit prefers when reading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.sections import (
    ROLE_ALIASES,
    Adapter,
    ARSpec,
    AVSpec,
    Injection,
    Retraction,
    Role,
    Scale,
    Training,
    check_scale,
    resolve_scale,
)
from hubkit.schema import to_dict

log = logging.getLogger("hubkit.meta")

HUBKIT_KEY = "hubkit"  # where a saved file keeps hubkit's own record, beside the reference keys


@dataclass
class NLAMeta:
    """One half of an NLA, described completely. Load any dialect; save hubkit's own.

    ``layer`` may be ``None`` only on an AV (trainer-written actor sidecars record none): the
    pair takes it from its AR (`check_compatible`). ``mse_scale: None`` is the reference's
    raw-MSE mode (kept as null when saved). ``folder`` is where the meta was loaded from; it is
    never saved.
    """

    role: Role
    base_model: str
    d_model: int
    layer: int | None = None
    injection: Injection | None = None
    av: AVSpec | None = None
    ar: ARSpec | None = None
    mse_scale: Scale | None = "sqrt_d_model"
    base_revision: str | None = None
    adapter: Adapter = field(default_factory=Adapter)
    training: Training = field(default_factory=Training)
    retracted: Retraction | None = None
    converted_from: str | None = None
    legacy: dict[str, Any] = field(default_factory=dict)
    schema: str = C.SCHEMA_VERSION
    folder: Path | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.role = ROLE_ALIASES.get(self.role, self.role)  # type: ignore[assignment]
        if self.schema != C.SCHEMA_VERSION:
            raise ValueError(f"`schema` must be {C.SCHEMA_VERSION!r}, got {self.schema!r}")
        if self.d_model < 1:
            raise ValueError(f"`d_model` must be >= 1, got {self.d_model}")
        if self.layer is not None and self.layer < 0:
            raise ValueError(f"`layer` must be >= 0, got {self.layer}")
        if self.role == "av" and (self.injection is None or self.av is None):
            raise ValueError("an AV meta needs both `injection` and `av` sections")
        if self.role == "av" and self.injection.needs_scale and self.injection.scale is None:
            raise ValueError(
                f"`injection.scale` is required for {self.injection.scheme} on an AV "
                "(a number, sqrt_d_model or raw)"
            )
        if self.role == "ar":
            if self.ar is None:
                raise ValueError("an AR meta needs an `ar` section")
            if self.layer is None or self.ar.num_layers is None:
                raise ValueError("an AR meta needs `layer` and `ar.num_layers` (the K+1 kept blocks)")
        check_scale(self.mse_scale, "mse_scale")

    # -- resolved numbers -------------------------------------------------------------------
    def mse_scale_value(self) -> float:
        """The norm both vectors are scaled to before the MSE; 1.0 for raw/null (raw-MSE mode)."""
        return resolve_scale(self.mse_scale, self.d_model) or 1.0

    def injection_scale_value(self) -> float | None:
        """The embedding-replacement norm, or ``None`` for raw vectors / norm-matched schemes."""
        if self.injection is None or not self.injection.needs_scale:
            return None
        return resolve_scale(self.injection.scale, self.d_model)

    # -- io -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """hubkit's own record (what goes under ``hubkit:`` in a saved file)."""
        data = to_dict(self)
        data.pop("folder", None)
        if not self.legacy:
            data.pop("legacy", None)
        if self.mse_scale is None:
            data["mse_scale"] = None  # raw-MSE mode is a value, not an absent field
        return {"schema": data.pop("schema"), **data}

    def to_file_dict(self) -> dict[str, Any]:
        """The reference schema_version-2 keys, then hubkit's record under ``hubkit:``."""
        from hubkit.meta.reference_keys import reference_keys

        return {**reference_keys(self), HUBKIT_KEY: self.to_dict()}

    def save(self, path: str | Path, tokenizer: Any = None) -> Path:
        """Write ``nla_meta.yaml`` (atomically). With a `tokenizer`, `ar.suffix_ids` is filled first."""
        path = Path(path)
        if path.is_dir() or path.suffix == "":
            path = path / C.META_FILE
        meta = self
        if tokenizer is not None:
            from hubkit.meta.reference_keys import fill_suffix_ids

            try:
                meta = fill_suffix_ids(self, tokenizer)
            except MetaError as exc:  # a one-token suffix: the reference keys go without the ids
                log.warning("%s: tokens.critic_suffix_ids not written: %s", path, exc)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(meta.to_file_dict(), sort_keys=False, allow_unicode=True))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], where: str = "<dict>", injection_scale: Scale | str | None = None
    ) -> NLAMeta:
        """Read any dialect from a parsed mapping (no file inspection); see `load` for `injection_scale`."""
        from hubkit.meta.registry import read

        return read(data, where, folder=None, injection_scale=injection_scale)

    @classmethod
    def load(
        cls, path: str | Path, injection_scale: Scale | str | None = None, check_depth: bool = True
    ) -> NLAMeta:
        """Read `path` (an ``nla_meta.yaml`` or a checkpoint folder) in any known dialect.

        `injection_scale` overrides the file's AV injection scale (a number, ``"sqrt_d_model"`` or
        ``"raw"``; numeric strings are accepted for the CLI). It is required when an AV's file
        records none: a null scale is ambiguous and is never guessed. With `check_depth`, a layer
        (or AR depth) beyond the blocks of the model it runs on is refused when that depth can be
        read here (the checkpoint's or a local base's config.json, or the offline registry).
        """
        from hubkit.meta.registry import read

        path = Path(path)
        folder = path if path.is_dir() else path.parent
        meta_file = path / C.META_FILE if path.is_dir() else path
        data = None
        if meta_file.exists():
            try:
                data = yaml.safe_load(meta_file.read_text(encoding="utf-8"))
            except UnicodeDecodeError as exc:
                raise MetaError(
                    f"{meta_file}: not UTF-8 text ({exc.reason} at byte {exc.start}); an nla_meta.yaml is "
                    "UTF-8 YAML: re-save it as UTF-8, or point at the checkpoint's own meta"
                ) from exc
            except OSError as exc:
                raise MetaError(f"{meta_file}: cannot be read ({exc.strerror or exc})") from exc
            except yaml.YAMLError as exc:
                raise MetaError(f"{meta_file}: not valid YAML ({_one_line(exc)})") from exc
        lora_ar = (folder / C.AR_META_JSON).exists() and (
            data is None or (isinstance(data, dict) and data.get("kind") == "nla_dataset")
        )
        if lora_ar:  # the LoRA-AR layout; a dataset sidecar beside it is the run's, copied by its writer
            meta = read(
                {"__ar_meta_json__": True, "__sidecar__": data},
                str(folder / C.AR_META_JSON),
                folder,
                injection_scale=injection_scale,
            )
        elif data is not None:
            meta = read(data, str(meta_file), folder, injection_scale=injection_scale)
        else:
            raise MetaError(
                f"{path}: no {C.META_FILE} (nor {C.AR_META_JSON}) found; point at an NLA checkpoint folder "
                "or its nla_meta.yaml"
            )
        meta.folder = folder
        if check_depth:
            from hubkit.meta.depth import base_blocks, depth_problem

            found = base_blocks(folder, meta.base_model)
            problem = depth_problem(meta, *found) if found else None
            if problem:
                raise MetaError(f"{meta_file if meta_file.exists() else folder}: {problem}")
        return meta

    def with_updates(self, **changes: Any) -> NLAMeta:
        out = replace(self, **changes)
        out.folder = self.folder
        return out


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
