"""Base families: a release per family carries the licence id, legal files, stanza and banner of its base."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from hubkit.release.bundle import build_bundle
from hubkit.release.errors import ReleaseError
from hubkit.release.families import load_families, match_family

from .conftest import CARD, family_project

COMMON = {
    "README.md",
    "provenance.json",
    "eval.json",
    "nla_meta.yaml",
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}


def _spec(proj: dict, base_id: str, repo_prefix: str, name: str = "rel", **fields) -> Path:
    spec = {
        "kind": "pair",
        "tag": "v0.1",
        "repos": {"av": f"hubkit-org/{repo_prefix}-nla-av", "ar": f"hubkit-org/{repo_prefix}-nla-ar"},
        "checkpoints": {"av": "av", "ar": "ar"},
        "eval": "eval/eval.json",
        "base_model": "base",
        "card": {**CARD, "base_model": base_id},
        **fields,
    }
    path = proj["root"] / "releases" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _split(card: ModelCard) -> tuple[str, str]:
    """(text before the first section, the License section) of a card body."""
    body = card.text
    return body.split("\n## ", 1)[0], body.split("\n## License\n", 1)[1]


def test_llama_release_ships_license_use_policy_notice_and_the_banner(tmp_path, family_worlds):
    proj = family_project(tmp_path, family_worlds("llama"))
    texts = {"LICENSE": "LLAMA 3.3 COMMUNITY LICENSE AGREEMENT\n", "USE_POLICY.md": "# Acceptable use\n"}
    for name, text in texts.items():
        (proj["base"] / name).write_text(text)
    notice = proj["root"] / "NOTICE.txt"  # written by the releaser, named in the spec
    notice.write_text("Llama 3.3 is licensed under the Llama 3.3 Community License.\n")
    spec = _spec(
        proj, "meta-llama/Llama-3.3-70B-Instruct", "Llama-3.3-tiny", legal_files={"NOTICE": "NOTICE.txt"}
    )
    bundle = build_bundle(spec, proj["root"] / "out")
    for role in ("av", "ar"):
        folder = bundle.root / role
        assert {"LICENSE", "USE_POLICY.md", "NOTICE"} <= _files(folder)
        assert _sha(folder / "LICENSE") == _sha(proj["base"] / "LICENSE")
        assert _sha(folder / "USE_POLICY.md") == _sha(proj["base"] / "USE_POLICY.md")
        assert _sha(folder / "NOTICE") == _sha(notice)
        card = ModelCard.load(folder / "README.md")
        assert card.data.license == "llama3.3"  # the spec named no licence: the family's
        top, stanza = _split(card)
        assert "**Built with Llama**" in top
        assert "Llama 3.3 Community" in stanza
        assert "https://www.llama.com/llama3_3/use-policy/" in stanza
        assert "`LICENSE`, `NOTICE`, `USE_POLICY.md`" in stanza


def test_gemma_release_ships_notice_from_the_base_folder(tmp_path, family_worlds):
    proj = family_project(tmp_path, family_worlds("gemma"))
    (proj["base"] / "licenses").mkdir()  # where `hubkit models prepare` puts a registry model's files
    (proj["base"] / "licenses" / "NOTICE.md").write_text("Gemma is provided under the Gemma Terms of Use.\n")
    bundle = build_bundle(_spec(proj, "google/gemma-3-12b-it", "gemma-3-tiny"), proj["root"] / "out")
    for role in ("av", "ar"):
        folder = bundle.root / role
        assert _files(folder) - COMMON - {"value_head.safetensors"} == {"NOTICE"}
        assert _sha(folder / "NOTICE") == _sha(proj["base"] / "licenses" / "NOTICE.md")
        card = ModelCard.load(folder / "README.md")
        assert card.data.license == "gemma"
        top, stanza = _split(card)
        assert "Built with" not in top
        assert "[Gemma Terms of Use](https://ai.google.dev/gemma/terms)" in stanza
        assert "https://ai.google.dev/gemma/prohibited_use_policy" in stanza


def test_qwen_release_ships_license_named_in_the_spec(tmp_path, family_worlds):
    proj = family_project(tmp_path, family_worlds("qwen"))
    lic = proj["root"] / "qwen-LICENSE.txt"
    lic.write_text("Apache License, Version 2.0\n")
    spec = _spec(
        proj, "Qwen/Qwen2.5-7B-Instruct", "qwen2.5-tiny", legal_files={"LICENSE": "qwen-LICENSE.txt"}
    )
    bundle = build_bundle(spec, proj["root"] / "out")
    for role in ("av", "ar"):
        folder = bundle.root / role
        assert _files(folder) - COMMON - {"value_head.safetensors", "chat_template.jinja"} == {"LICENSE"}
        assert _sha(folder / "LICENSE") == _sha(lic)
        card = ModelCard.load(folder / "README.md")
        assert card.data.license == "apache-2.0"
        top, stanza = _split(card)
        assert "Built with" not in top and "Apache License 2.0" in stanza and "`LICENSE`" in stanza


def test_smollm_release_needs_no_legal_file(tmp_path, family_worlds):
    proj = family_project(tmp_path, family_worlds("smollm"))
    spec = _spec(proj, "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-tiny", license="apache-2.0")
    bundle = build_bundle(spec, proj["root"] / "out")
    assert _files(bundle.root / "av") == COMMON | {"chat_template.jinja"}
    card = ModelCard.load(bundle.root / "av" / "README.md")
    assert card.data.license == "apache-2.0"
    top, stanza = _split(card)
    assert "Built with" not in top and "derivative of SmolLM" in stanza and "Legal files" not in stanza


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_a_family_file_that_is_absent_is_refused_naming_it(tmp_path, family_worlds):
    proj = family_project(tmp_path, family_worlds("gemma"))
    out = proj["root"] / "out"
    with pytest.raises(ReleaseError) as exc:
        build_bundle(_spec(proj, "google/gemma-3-12b-it", "gemma-3-tiny"), out)
    msg = _one_line(exc)
    assert "must ship `NOTICE`" in msg and "Gemma repos ship it" in msg and "legal_files" in msg
    assert not out.exists()


def test_a_legal_file_the_spec_names_must_exist(tmp_path, family_worlds):
    proj = family_project(tmp_path, family_worlds("qwen"))
    spec = _spec(proj, "Qwen/Qwen2.5-7B-Instruct", "q", legal_files={"LICENSE": "nowhere/LICENSE"})
    with pytest.raises(ReleaseError) as exc:
        build_bundle(spec, proj["root"] / "out")
    assert "field `legal_files.LICENSE`: no such file" in _one_line(exc)


def test_a_licence_contradicting_the_family_is_refused(tmp_path, family_worlds):
    proj = family_project(tmp_path, family_worlds("llama"))
    spec = _spec(proj, "meta-llama/Llama-3.3-70B-Instruct", "Llama-x", license="apache-2.0")
    with pytest.raises(ReleaseError) as exc:
        build_bundle(spec, proj["root"] / "out")
    assert "field `license` is 'apache-2.0'" in _one_line(exc) and "llama3.3" in str(exc.value)


def test_a_base_named_as_another_architecture_is_refused(tmp_path, family_worlds):
    proj = family_project(tmp_path, family_worlds("smollm"))  # llama-architecture weights
    (proj["base"] / "NOTICE").write_text("x\n")
    with pytest.raises(ReleaseError) as exc:
        build_bundle(_spec(proj, "google/gemma-3-12b-it", "g"), proj["root"] / "out")
    assert "model_type 'llama'" in _one_line(exc)


@pytest.mark.parametrize(
    "repo_id, model_type, key",
    [
        ("meta-llama/Llama-3.3-70B-Instruct", "llama", "llama3.3"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama", "llama3.1"),
        ("meta-llama/Llama-3.2-1B", None, "llama3.2"),
        ("meta-llama/Meta-Llama-3-8B", None, "llama3"),
        ("google/gemma-3-27b-it", None, "gemma"),
        ("my-org/finetuned", "gemma3_text", "gemma"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2", "qwen"),
        ("my-org/finetuned", "qwen3", "qwen"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral", "mistral"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", "smollm"),
        ("TinyLlama/TinyLlama-1.1B", "llama", "default"),  # a llama architecture is not a Meta Llama
        (None, None, "default"),
    ],
)
def test_family_matching(repo_id, model_type, key):
    assert match_family(repo_id, model_type).key == key


def test_the_packaged_table_is_valid():
    table = load_families()
    assert table[-1].default and sum(f.default for f in table) == 1
    for fam in table:
        assert fam.stanza_text("x").strip()
        assert fam.license in (None, "other") or "/" not in fam.license
        if fam.license == "other":
            assert fam.license_name and fam.license_link


def test_a_custom_card_without_the_banner_is_refused(tmp_path, family_worlds):
    proj = family_project(tmp_path, family_worlds("llama"))
    for name in ("LICENSE", "USE_POLICY.md", "NOTICE"):
        (proj["base"] / name).write_text(f"{name}\n")
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "model.md.j2").write_text("# {{ repo_id }}\n\n{{ legal.stanza }}\n")
    spec = _spec(proj, "meta-llama/Llama-3.3-70B-Instruct", "Llama-3.3-tiny")
    with pytest.raises(ReleaseError) as exc:
        build_bundle(spec, proj["root"] / "out", cards_dir=cards)
    assert "does not print 'Built with Llama'" in _one_line(exc)
    (cards / "model.md.j2").write_text("# {{ repo_id }}\n\n{{ legal.banner }}\n")
    body = ModelCard.load(
        build_bundle(spec, proj["root"] / "out", cards_dir=cards).root / "av" / "README.md"
    ).text
    assert "Built with Llama" in body


def test_a_trajectory_ships_the_legal_files_at_its_root(project):
    from .conftest import trajectory_spec

    legal = project["root"] / "legal"
    legal.mkdir()
    for name in ("LICENSE", "USE_POLICY.md", "NOTICE"):
        (legal / name).write_text(f"{name} of Llama 3.1\n")
    spec = trajectory_spec(
        project,
        repos={"trajectory": "hubkit-org/Llama-3.1-tiny-av-trajectory", "ar": "hubkit-org/Llama-3.1-tiny-ar"},
        license=None,
        card={**CARD, "base_model": "meta-llama/Llama-3.1-8B-Instruct"},
        legal_files={name: f"legal/{name}" for name in ("LICENSE", "USE_POLICY.md", "NOTICE")},
    )
    folder = build_bundle(spec, project["root"] / "out").root / "trajectory"
    for name in ("LICENSE", "USE_POLICY.md", "NOTICE"):
        assert _sha(folder / name) == _sha(legal / name)
        assert not (folder / "step_000001" / name).exists()
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "llama3.1"
    top, stanza = _split(card)
    assert "**Built with Llama**" in top and "https://llama.meta.com/llama3_1/use-policy/" in stanza


def test_a_family_table_with_a_typo_or_no_default_is_refused(tmp_path):
    good = (
        "schema: hubkit.families/1\nfamilies:\n"
        "  - {key: x, display: X, license: mit, stanza: s, repos: ['^x/'], required: [{name: LICENSE, from: x}]}\n"
        "  - {key: d, display: D, license: null, stanza: s, default: true}\n"
    )
    path = tmp_path / "families.yaml"
    path.write_text(good)
    table = load_families(path)
    assert [f.key for f in table] == ["x", "d"] and table[0].required[0].source == "x"
    assert match_family("x/model", None, table).key == "x" and match_family("y/model", None, table).key == "d"
    path.write_text(good.replace("stanza: s, repos", "stanza: s, repo"))
    with pytest.raises(ReleaseError, match=r"families\[0\]\.repo"):
        load_families.__wrapped__(path)
    path.write_text(good.replace(", default: true", ""))
    with pytest.raises(ReleaseError, match="default: true"):
        load_families.__wrapped__(path)
