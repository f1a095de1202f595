"""The licence side of a model release: its base family, licence id, legal files and stanza.

`plan_legal` runs before anything is written (a missing required file refuses the release);
`copy_legal` puts the files at the root of a repo folder and returns their provenance records.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hubkit.meta import NLAMeta
from hubkit.provenance import sha256_file
from hubkit.release import families
from hubkit.release.errors import ReleaseError
from hubkit.release.spec import LoadedSpec

log = logging.getLogger(__name__)


@dataclass
class LegalPlan:
    """What a release inherits from its base: family, licence id, files to ship."""

    family: families.Family
    license: str
    files: dict[str, Path] = field(default_factory=dict)
    model_type: str | None = None
    snapshot: Path | None = None

    def context(self) -> dict:
        """The card's `legal` section."""
        fam = self.family
        return {
            "family": fam.key,
            "display": fam.display,
            "license": self.license,
            "banner": fam.banner,
            "name_prefix": fam.name_prefix,
            "license_url": fam.license_url,
            "use_policy_url": fam.use_policy_url,
            "stanza": fam.stanza_text(self.license),
            "files": sorted(self.files),
        }

    def check_card(self, card: str, template: str) -> None:
        """A card must print the family's banner (the Llama licences ask for it to be displayed)."""
        if self.family.banner and self.family.banner not in card:
            raise ReleaseError(
                f"card template {template} does not print {self.family.banner!r}, which the {self.family.display} "
                "licence asks every derivative to display; add `{{ legal.banner }}` to the template"
            )

    def record(self) -> dict:
        """What provenance.json records of the licence."""
        return {"family": self.family.key, "license": self.license, "files": sorted(self.files)}

    def card_header(self) -> dict:
        """``license`` (and ``license_name``/``license_link`` for an ``other`` licence) for ModelCardData."""
        out = {"license": self.license}
        if self.family.license == "other":
            out.update(license_name=self.family.license_name, license_link=self.family.license_link)
        return out


def plan_legal(ls: LoadedSpec, meta: NLAMeta, base_id: str, checkpoint: Path) -> LegalPlan:
    """Match the base family, settle the licence id and find every legal file (refused when missing)."""
    spec = ls.spec
    snapshot = families.local_snapshot([ls.base_model, meta.base_model], base_id)
    model_type = families.config_model_type(checkpoint, snapshot)
    family = families.match_family(base_id, model_type)
    families.check_model_type(family, model_type, base_id, ls.path)
    license = families.release_license(family, spec.license, ls.path, base_id)
    named = {name: ls.existing(p, f"legal_files.{name}", "file") for name, p in spec.legal_files.items()}
    files = families.legal_files(family, snapshot, named, ls.path)
    if family.name_prefix:
        for role in spec.pushed_roles:
            repo_name = spec.repos[role].split("/")[-1]
            if not repo_name.lower().startswith(family.name_prefix.lower().replace(" ", "-")):
                log.warning(
                    "%s: repo %s: the %s licence asks that a model built from it has %r at the beginning "
                    "of its name",
                    ls.path,
                    spec.repos[role],
                    family.display,
                    family.name_prefix,
                )
    return LegalPlan(family, license, files, model_type, snapshot)


def copy_legal(plan: LegalPlan, dest: Path) -> dict[str, dict]:
    """Copy the legal files to the root of `dest`; ``{name: {from, sha256, how}}`` for provenance."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, src in plan.files.items():
        shutil.copyfile(src, dest / name)
        out[name] = {
            "from": str(src),
            "sha256": sha256_file(src),
            "how": f"legal file ({plan.family.display})",
        }
    return out
