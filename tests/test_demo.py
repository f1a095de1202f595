"""`hubkit demo --quick` end to end on a tiny random model, checked against what it pushed to the local Hub.

One run (module fixture, ~20-30 s on a shared 2-core machine) is inspected from the outside: the
Hub is served again from the run's folder and read with the real huggingface_hub client.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from click.testing import CliRunner
from huggingface_hub import HfApi

from hubkit.cli.demo import demo as demo_command
from hubkit.demo import DemoError, demo_settings, headline_figures, run_demo
from hubkit.demo.summary import summary_text
from hubkit.localhub import LocalHub, use_endpoint

TOKEN = "hf_demo_test"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    lines: list[str] = []
    result = run_demo(out, quick=True, keep=False, progress=False, echo=lines.append)
    return result, lines


@pytest.fixture
def hub(demo, tmp_path, monkeypatch):
    """The demo's Hub storage served again, with a fresh download cache."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    result, _ = demo
    with LocalHub(result.hub_root) as server, use_endpoint(server.endpoint, token=TOKEN):
        yield HfApi(endpoint=server.endpoint, token=TOKEN)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_stage_ran_once_and_reported_its_time(demo):
    result, lines = demo
    stage_lines = [ln for ln in lines if re.match(r"\[\s*\d+/12\]", ln)]
    assert len(stage_lines) == 12
    assert set(result.stage_seconds) == {
        "base", "extract", "split", "label", "build", "train_ar", "train_av", "grpo", "eval", "release", "push",
        "reload",
    }  # fmt: skip
    assert all(s >= 0 for s in result.stage_seconds.values())
    state = json.loads((result.out_dir / "demo.json").read_text())
    assert state["settings"] == demo_settings(quick=True).to_dict()


def test_pushed_card_states_the_numbers_of_this_run(demo, hub):
    result, _ = demo
    ev = json.loads(result.eval_json.read_text())
    # the eval's headline must itself agree with its per-row file
    rows = pq.read_table(result.eval_json.parent / "rows.parquet").to_pydict()
    cos = ev["figures"]["round_trip"]["all"]["cos"]
    assert cos["mean"] == pytest.approx(float(np.mean(rows["cos"])), abs=1e-9)
    card = Path(hub.hf_hub_download(result.repos["av"], "README.md", revision=result.tag)).read_text()
    assert f"**{cos['mean']:.3f}** [{cos['ci_low']:.3f}, {cos['ci_high']:.3f}]" in card
    fl = ev["figures"]["noise_floor"]
    assert f"{fl['p95']:.3f}" in card
    assert ev["inputs"]["table"]["sha256"][:12] in card
    # the card's weight hashes are those eval.json recorded for the AV it measured
    for rel, sha in ev["inputs"]["checkpoints"]["av"]["files"].items():
        if rel == "adapter_model.safetensors":
            assert sha in card
    pushed_eval = json.loads(
        Path(hub.hf_hub_download(result.repos["av"], "eval.json", revision=result.tag)).read_text()
    )
    assert pushed_eval["figures"]["round_trip"]["all"]["cos"] == cos
    # the summary quotes the same figures
    fig = headline_figures(ev)
    text = summary_text(result)
    assert (
        f"mean cosine {fig['cos_mean']:.3f}, 95% CI [{fig['cos_ci'][0]:.3f}, {fig['cos_ci'][1]:.3f}]" in text
    )
    assert f"top-1 {fig['top1']:.3f}" in text and f"chance {fig['top1_chance']:.3f}" in text
    assert str(result.cards["av"]) in text


def test_pair_from_the_hub_reconstructs_like_the_local_checkpoints(demo, hub):
    from hubkit import NLAPair
    from hubkit.eval.table import EvalTable

    result, _ = demo
    v = EvalTable.read(result.out_dir / "data" / "built" / "eval.parquet").vectors[:6]
    remote = NLAPair.from_pretrained(av=result.repos["av"], ar=result.repos["ar"], revision=result.tag)
    local = NLAPair.from_pretrained(av=result.checkpoints["av"], ar=result.checkpoints["ar"])
    a = local.round_trip(v, max_new_tokens=result.settings.eval_tokens)
    b = remote.round_trip(v, max_new_tokens=result.settings.eval_tokens)
    assert a.explanations == b.explanations
    torch.testing.assert_close(b.reconstructions, a.reconstructions)
    # the demo's own reload agrees with the eval's rows
    rows = pq.read_table(result.eval_json.parent / "rows.parquet").to_pydict()
    k = len(result.reload.cos)
    assert result.reload.explanations == rows["explanation"][:k]
    np.testing.assert_allclose(result.reload.cos, rows["cos"][:k], atol=1e-5)


def test_trajectory_repo_holds_every_evaluated_grpo_step_with_its_ar(demo, hub):
    result, _ = demo
    files = hub.list_repo_files(result.repos["trajectory"], revision=result.tag)
    run = result.out_dir / "run" / "grpo"
    local_steps = sorted(p.name for p in run.glob("step_*"))
    assert len(local_steps) == result.settings.grpo_steps == 1
    traj = json.loads(result.trajectory_eval_json.read_text())
    points = traj["figures"]["trajectory"]["checkpoints"]
    assert [p["name"] for p in points] == local_steps
    sft_ar = result.out_dir / "run" / "ar" / "step_000004"
    assert traj["inputs"]["checkpoints"]["frozen_ar"]["path"] == str(sft_ar)
    for step, point in zip(local_steps, points):
        assert {"cos", "fve", "top1", "real_minus_empty"} <= set(point["fixed_ar"])
        for rel in ("adapter_model.safetensors", "ar/adapter_model.safetensors", "ar/value_head.safetensors"):
            assert f"{step}/{rel}" in files
            remote = hub.hf_hub_download(result.repos["trajectory"], f"{step}/{rel}", revision=result.tag)
            assert _sha256(Path(remote)) == _sha256(run / step / rel)
    assert not any("trainer_state" in f for f in files)


def test_the_released_pair_is_the_rl_av_with_its_co_trained_ar_read_by_the_frozen_one_too(demo):
    from hubkit.meta import NLAMeta

    result, _ = demo
    assert result.checkpoints["ar"] == result.checkpoints["av"] / "ar"
    assert NLAMeta.load(result.checkpoints["ar"]).training.stage == "grpo"
    ev = json.loads(result.eval_json.read_text())
    fixed = ev["figures"]["fixed_ar"]
    assert fixed["ar"] == "ar/step_000004" and fixed["evaluated_ar_co_trained"] is True
    assert fixed["round_trip"]["n"] == ev["figures"]["round_trip"]["all"]["n"]
    sft = json.loads((result.eval_json.parents[1] / "sft_pair" / "eval.json").read_text())
    assert result.sft_figures["cos_mean"] == sft["figures"]["round_trip"]["all"]["cos"]["mean"]
    text = summary_text(result)
    rl = next(line for line in text.splitlines() if line.strip().startswith("cosine "))
    assert f"{result.sft_figures['cos_mean']:.3f} → {result.figures['cos_mean']:.3f} (co-trained AR)" in rl
    assert f"frozen SFT AR {fixed['round_trip']['cos']['mean']:.3f}" in rl
    card = result.cards["av"].read_text()
    assert "read by the frozen SFT AR `ar/step_000004`" in card and "trained alongside its AV in RL" in card


def test_dataset_repo_holds_the_built_tables(demo, hub):
    result, _ = demo
    files = hub.list_repo_files(result.repos["dataset"], repo_type="dataset", revision=result.tag)
    built = result.out_dir / "data" / "built"
    for name in ("av_sft", "ar_sft", "rl", "eval"):
        assert f"data/{name}.parquet" in files
        remote = Path(
            hub.hf_hub_download(
                result.repos["dataset"], f"data/{name}.parquet", repo_type="dataset", revision=result.tag
            )
        )
        assert _sha256(remote) == _sha256(built / f"{name}.parquet")
        assert pq.read_metadata(remote).num_rows == pq.read_metadata(built / f"{name}.parquet").num_rows > 0
    card = Path(
        hub.hf_hub_download(result.repos["dataset"], "README.md", repo_type="dataset", revision=result.tag)
    )
    header = yaml.safe_load(card.read_text().split("---")[1])
    assert header["license"] == "apache-2.0"


def test_keep_reuses_the_run_and_the_cli_prints_its_summary(demo):
    result, _ = demo
    res = CliRunner().invoke(demo_command, ["--quick", "--out", str(result.out_dir), "--keep"])
    assert res.exit_code == 0, res.output
    assert res.output.count("done in an earlier run") == 12
    assert summary_text(result).strip() in res.output


def test_a_folder_with_other_settings_is_refused(demo):
    result, _ = demo
    with pytest.raises(DemoError, match="other settings"):
        run_demo(result.out_dir, quick=True, steps=6, progress=False, echo=lambda m: None)


def test_a_state_file_with_a_setting_the_demo_no_longer_has_is_refused(tmp_path):
    from hubkit.demo.settings import STATE_FILE
    from hubkit.demo.state import RunState

    settings = demo_settings(quick=True)
    RunState.open(tmp_path, settings, keep=True)  # a new run writes its state
    state = json.loads((tmp_path / STATE_FILE).read_text())
    state["settings"]["retired_option"] = 3
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(DemoError, match=r"other settings \(\{'retired_option': \(3, None\)\}"):
        RunState.open(tmp_path, settings, keep=True)


def test_a_folder_that_is_not_a_demo_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    for keep in (True, False):
        with pytest.raises(DemoError, match="not a demo folder"):
            run_demo(tmp_path, quick=True, keep=keep, progress=False, echo=lambda m: None)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(quick=True, model="smollm2-135m"), "tiny random model"),
        (dict(quick=True, rows=4), "--rows must be at least"),
        (dict(quick=True, eval_rows=5), "at least 10 held-out rows"),
        (dict(quick=True, steps=-1), "`steps` must be >= 1"),
        (dict(rows=2000), "bundled corpus has"),
        (dict(quick=True, labeler="nope"), "unknown backend"),
        (dict(quick=True, labeler="context:0"), "between 1 and"),
        (
            dict(quick=True, injection="embed"),
            "--injection 'embed': choose one of resid_layer, resid_block1, embed_embnorm, embed_actnorm",
        ),
    ],
)
def test_bad_sizes_are_refused_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(DemoError, match=match):
        run_demo(tmp_path / "x", progress=False, echo=lambda m: None, **kwargs)
    assert not (tmp_path / "x" / "data").exists()


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_release_spec_and_card_template_build_on_the_demo_outputs(demo, tmp_path):
    """examples/release-spec.yaml points at the default demo folder and sizes; here it is pointed at the
    quick run (same layout, other step names) and built with the custom card of examples/cards/."""
    from hubkit.release.bundle import build_bundle
    from hubkit.release.spec import load_spec

    result, _ = demo
    text = (EXAMPLES / "release-spec.yaml").read_text()
    assert "~/.cache/hubkit/demo/run/grpo/step_000008\n" in text and "run/grpo/step_000008/ar\n" in text
    text = text.replace("~/.cache/hubkit/demo", str(result.out_dir))
    text = text.replace(
        "grpo/step_000008/ar", result.checkpoints["ar"].relative_to(result.out_dir / "run").as_posix()
    )
    text = text.replace(
        "grpo/step_000008", result.checkpoints["av"].relative_to(result.out_dir / "run").as_posix()
    )
    # the tiny base is a local folder: the card header needs a Hub id for it (the demo pushed one)
    text = text.replace("\ncard:\n", "\ncard:\n  base_model: hubkit-demo/tiny-llama-random\n")
    spec = tmp_path / "release-spec.yaml"
    spec.write_text(text)
    bundle = build_bundle(load_spec(spec), tmp_path / "bundle", cards_dir=EXAMPLES / "cards")
    card = (bundle.root / "av" / "README.md").read_text()
    ev = json.loads(result.eval_json.read_text())
    cos = ev["figures"]["round_trip"]["all"]["cos"]
    assert "## Lab notes" in card
    assert f"| {cos['n']} | {cos['mean']:.3f} [{cos['ci_low']:.3f}, {cos['ci_high']:.3f}] |" in card
    assert f"{ev['figures']['noise_floor']['mean']:.3f}" in card
    assert 'av="my-lab/smollm2-135m-L20-nla-av"' in card


def test_round_trip_example_reads_the_pushed_pair(demo, tmp_path, monkeypatch, capsys):
    import runpy

    import huggingface_hub.constants as hc

    result, _ = demo
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    argv = ["round_trip.py", "--hub-root", str(result.hub_root), "--av", result.repos["av"], "--ar"]
    argv += [
        result.repos["ar"],
        "--revision",
        result.tag,
        "--last",
        "2",
        "--max-new-tokens",
        "4",
        "One two three",
    ]
    monkeypatch.setattr("sys.argv", argv)
    runpy.run_path(str(EXAMPLES / "round_trip.py"), run_name="__main__")
    out = capsys.readouterr().out
    layer = json.loads(result.eval_json.read_text())["nla"]["layer"]
    assert f"layer {layer}, d_model" in out
    assert out.count("cosine(v, v̂) = ") == 2


def test_stages_leave_typed_results_in_the_state_file(demo):
    from hubkit.data.sidecar import read_sidecar
    from hubkit.demo.results import Built, Labeled, Trained

    result, _ = demo
    stages = json.loads((result.out_dir / "demo.json").read_text())["stages"]
    built = Built.from_dict(stages["build"]["result"])
    for name, rows in built.rows.items():
        assert read_sidecar(built.table(name)).rows == rows > 0
    labeled = Labeled.from_dict(stages["label"]["result"])
    assert labeled.labeler == "context:10"
    for name in ("av_sft", "ar_sft", "eval"):
        table = pq.read_table(result.out_dir / "data" / "labeled" / f"{name}.parquet")
        assert set(table.column("labeler").to_pylist()) == {"context:10"}
        assert set(table.column("auditor").to_pylist()) == {"none"}
        # each label quotes its own prefix: its last word, with the current token in brackets
        for prefix, text in zip(table.column("prefix").to_pylist(), table.column("explanation").to_pylist()):
            head = 'The text ends with: "'
            assert text.startswith(head) and text.endswith('"')
            assert text[len(head) : -1].replace("[", "").replace("]", "").split()[-1] == prefix.split()[-1]
    ar = Trained.from_dict(stages["train_ar"]["result"])
    assert (
        Path(ar.checkpoint) == result.out_dir / "run" / "ar" / "step_000004"
    )  # the SFT AR GRPO started from


def test_release_specs_written_from_spec_objects_load_back_the_same(demo):
    from hubkit.demo.publish import spec_yaml
    from hubkit.release.spec import load_spec

    result, _ = demo
    for name in ("demo-pair", "demo-trajectory", "demo-dataset"):
        path = result.out_dir / "releases" / f"{name}.yaml"
        loaded = load_spec(path, root=result.out_dir)
        assert spec_yaml(loaded.spec) == yaml.safe_load(path.read_text())
    pair = load_spec(result.out_dir / "releases" / "demo-pair.yaml").spec
    assert pair.checkpoints == {k: str(v) for k, v in result.checkpoints.items()}
    assert pair.repos == {"av": result.repos["av"], "ar": result.repos["ar"]}


def test_summary_and_cards_say_the_explanations_are_quotes_of_context(demo):
    result, _ = demo
    text = summary_text(result)
    assert "quotes of context, not interpretations" in text and "`context:10`" in text
    assert "--labeler transformers" in text
    card = result.cards["av"].read_text()
    assert "quotes of context, not interpretations" in card
    a = result.ar_only
    assert a is not None and a["n"] == result.figures["n"]
    assert f"AR alone on the true labels: top-1 {a['top1']:.3f}" in text


def test_embedding_replacement_at_the_activation_norm(tmp_path):
    """The default injection (`embed_actnorm`): the AV replaces the marker's embedding at the median residual norm of
    the base at the NLA's layer on the bundled corpus (recomputed here with a plain forward per text)."""
    import torch

    from hubkit import loading
    from hubkit.meta import NLAMeta
    from hubkit.scale_lint import LINT_TEXTS, bundled_texts

    result = run_demo(
        tmp_path / "run", quick=True, injection="embed_actnorm", progress=False, echo=lambda m: None
    )
    meta = NLAMeta.load(result.checkpoints["av"])
    assert meta.injection.scheme == "embedding_replace"
    model = loading.load_causal_lm(str(result.out_dir / "base"))
    tok = loading.load_tokenizer(result.out_dir / "base", str(result.out_dir / "base"))
    norms = []
    grab = []  # the output of block `layer` (hidden_states[-1] would be after the final norm)
    block = model.model.layers[meta.layer]
    handle = block.register_forward_hook(lambda m, i, o: grab.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        for text in bundled_texts(LINT_TEXTS):
            ids = tok(text, truncation=True, max_length=128, return_tensors="pt")["input_ids"]
            model(input_ids=ids)
            norms.append(grab.pop()[0].float().norm(dim=-1))
    handle.remove()
    expected = float(torch.cat(norms).median())
    assert meta.injection.scale == pytest.approx(expected, rel=2e-2)  # measured in the training dtype
    assert (result.out_dir / "eval" / "pair" / "eval.json").is_file()
