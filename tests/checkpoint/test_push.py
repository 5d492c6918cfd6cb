"""``push_checkpoint``: what is staged and uploaded, and the refusals (the hub itself is faked)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from mmvgm.checkpoint.card import CARD_MARKER
from mmvgm.checkpoint.files import save_checkpoint
from mmvgm.checkpoint.push import push_checkpoint
from mmvgm.errors import CheckpointError, InputError
from tests.inference_helpers import make_checkpoint


class FakeApi:
    """Records the calls ``HfApi`` would get and keeps a copy of the uploaded folder."""

    def __init__(self, fail: Exception = None):
        self.calls, self.uploaded, self.fail = [], {}, fail

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, branch, exist_ok=False):
        self.calls.append(("create_branch", repo_id, branch))

    def upload_folder(self, repo_id, folder_path, revision=None, commit_message=None):
        if self.fail is not None:
            raise self.fail
        self.calls.append(("upload_folder", repo_id, revision, commit_message))
        self.uploaded = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        return type("CommitInfo", (), {"oid": "f" * 40})()


@pytest.fixture
def checkpoint(tmp_path):
    return make_checkpoint(tmp_path / "ck", "joint")


def test_uploads_the_checkpoint_its_card_and_metrics_but_not_training_state(tmp_path, checkpoint):
    (checkpoint / "train_state.json").write_text("{}")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"split": "test", "n": 3, "detect": {"auc": 0.75}}))
    api = FakeApi()
    result = push_checkpoint(checkpoint, "org/det", metrics=metrics, license="mit", private=True,
                             revision="v1", api=api)
    assert result.files == ["README.md", "metrics.json", "mmvgm.yaml", "model.safetensors"]
    assert result.url == "https://huggingface.co/org/det" and result.commit == "f" * 40
    assert api.calls[0] == ("create_repo", "org/det", True, True) and api.calls[1] == ("create_branch", "org/det", "v1")
    assert api.uploaded["model.safetensors"] == (checkpoint / "model.safetensors").read_bytes()
    card = ModelCard(api.uploaded["README.md"].decode())
    assert card.data.license == "mit" and "| detect.auc | 0.7500 |" in card.text and "org/det" in card.text
    assert sorted(p.name for p in checkpoint.iterdir()) == ["mmvgm.yaml", "model.safetensors", "train_state.json"]


def test_a_card_the_user_wrote_is_kept_and_ours_is_rebuilt(checkpoint):
    (checkpoint / "README.md").write_text("# my own words\n")
    api = FakeApi()
    push_checkpoint(checkpoint, "org/a", api=api)
    assert api.uploaded["README.md"] == b"# my own words\n"
    (checkpoint / "README.md").write_text(f"---\nlicense: mit\n---\n{CARD_MARKER}\n# org/name STALE\n")
    push_checkpoint(checkpoint, "org/b", api=api)
    assert b"org/b" in api.uploaded["README.md"] and b"STALE" not in api.uploaded["README.md"]


def test_refuses_what_would_not_load_back(tmp_path, checkpoint):
    (checkpoint / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="cannot read model.safetensors"):
        push_checkpoint(checkpoint, "org/x", api=FakeApi())
    with pytest.raises(CheckpointError, match="not found"):
        push_checkpoint(tmp_path / "nowhere", "org/x", api=FakeApi())


@pytest.mark.parametrize("repo", ["noslash", "org/name@v1", "hf://org/name", "a/b/c"])
def test_the_repo_must_be_org_name(checkpoint, repo):
    with pytest.raises(InputError, match="not a repo id"):
        push_checkpoint(checkpoint, repo, api=FakeApi())


def test_hub_errors_are_one_line(checkpoint):
    response = type("Response", (), {"status_code": 401})()
    error = RuntimeError("401 Client Error\nlong body")
    error.response = response
    with pytest.raises(CheckpointError) as err:
        push_checkpoint(checkpoint, "org/x", api=FakeApi(fail=error))
    assert "hf auth login" in str(err.value) and "\n" not in str(err.value)


def test_offline_says_so(checkpoint):
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):  # the suite runs offline
        push_checkpoint(checkpoint, "org/x")


def test_push_cli_is_one_line_offline(checkpoint):
    from click.testing import CliRunner

    from mmvgm.cli import cli

    result = CliRunner().invoke(cli, ["push", str(checkpoint), "org/x"])
    assert result.exit_code != 0 and "HF_HUB_OFFLINE" in result.output and "Traceback" not in result.output


def test_save_checkpoint_extra_files_land_atomically(tmp_path, checkpoint):
    from mmvgm.checkpoint.files import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    out = save_checkpoint(tmp_path / "with-card", model, meta, extra_files={"README.md": "# card\n"})
    assert (out / "README.md").read_text() == "# card\n"
