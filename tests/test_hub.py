"""Hub artefacts: the model card every saved GRADIEND carries, loading through the hub cache
offline, and ``push_to_hub`` (against a stand-in for the hub API: the tests never use the network).
"""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import he_she_trainer

from gradiend import GradiendModel, ModelWithGradiend
from gradiend.model import hub
from gradiend.trainer import PostPruneConfig, PrePruneConfig

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def run(planted, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hubrun")
    return he_she_trainer(
        planted["clm"],
        tmp,
        pre_prune_config=PrePruneConfig(n_samples=8, topk=0.5, source="diff"),
        post_prune_config=PostPruneConfig(topk=0.2),
    )


def test_saved_gradiend_carries_a_model_card(run):
    card = (run.model_dir / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: gradiend\n")
    assert "# GRADIEND: he vs she" in card
    assert "`he` (encodes to +1, `decoder(+1)`), `she` (−1, `decoder(−1)`)" in card
    model = GradiendModel.from_pretrained(run.model_dir)
    assert f"{model.input_dim:,} dimensions" in card
    assert "pre: top 0.5 by `label_signed_mean` of 8 `diff` gradients" in card
    assert model.resolve_part(None) == "snr"  # the default ranking (the run has neutral texts)
    assert "post: top 0.2 by `snr`" in card
    corr = run.get_training_stats()["best_score_checkpoint"]["correlation"]
    assert f"| validation correlation | {corr:.3f}" in card
    assert "| converged | True" in card
    assert "ModelWithGradiend.from_pretrained(" in card
    assert 'mwg.steer(target_class="she"' in card
    # the per-tensor table adds up to the GRADIEND's dimensions
    kept = [
        int(line.split("|")[3].split(" of ")[0].replace(",", ""))
        for line in card.splitlines()
        if line.startswith("| `model.")
    ]
    assert sum(kept) == model.input_dim
    # a base model given as an object is no hub id: no base_model in the front matter
    assert "base_model:" not in card.split("---")[1]


def _populate_cache(cache, repo_id: str, folder) -> None:
    """The layout huggingface_hub's cache uses: refs/main → snapshots/<commit>/<files>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(folder, repo / "snapshots" / COMMIT)


def test_from_pretrained_hub_id_offline_from_the_cache(run, planted, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub"
    _populate_cache(cache, "org/he-she-gradiend", run.model_dir)
    loaded = GradiendModel.from_pretrained("org/he-she-gradiend", cache_dir=cache)
    original = GradiendModel.from_pretrained(run.model_dir)
    for k, v in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert torch.equal(loaded.global_indices(), original.global_indices())
    assert loaded.metadata["target_classes"] == ["he", "she"]
    mwg = ModelWithGradiend.from_pretrained(
        "org/he-she-gradiend", base_model=planted["clm"], cache_dir=cache
    )
    assert mwg.target_classes == ["he", "she"]
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        GradiendModel.from_pretrained("org/not-there", cache_dir=cache)


class _FakeApi:
    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=None, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))

    def upload_folder(self, repo_id, folder_path, commit_message=None, revision=None):
        files = {
            p.name: p.read_bytes()
            for p in sorted(__import__("pathlib").Path(folder_path).iterdir())
        }
        self.calls.append(("upload_folder", repo_id, commit_message, files))
        return type("Info", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()


def test_push_to_hub_uploads_weights_config_card_and_training_record(run, monkeypatch):
    import huggingface_hub

    _FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    mwg = ModelWithGradiend(run.get_model().lm, GradiendModel.from_pretrained(run.model_dir))
    url = mwg.push_to_hub("org/he-she", private=True)
    assert url.endswith("org/he-she/commit/1")
    assert _FakeApi.calls[0] == ("create_repo", "org/he-she", True, True)
    _, repo, message, files = _FakeApi.calls[1]
    assert repo == "org/he-she" and message == "Upload GRADIEND"
    assert {"config.json", "model.safetensors", "README.md", "training.json"} <= set(files)
    assert "mapping_indices.safetensors" in files  # pruned
    card = files["README.md"].decode()
    assert 'GradiendModel.from_pretrained("org/he-she")' in card
    assert "| validation correlation |" in card


def test_repo_ids_and_local_paths_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.is_repo_id("org/name")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not hub.is_repo_id("org/name")  # an existing folder wins
    assert not hub.is_repo_id("/abs/path/model")
    assert not hub.is_repo_id("runs/x/he_she/model")
