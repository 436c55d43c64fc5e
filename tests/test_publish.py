"""`lm-transfer publish` against a loopback HTTP server standing in for the Hub (tests/hub_server.py):
the Hub API calls and the files sent are recorded; nothing leaves the machine."""

import os
import subprocess
import sys

import pytest
from hub_server import FakeHub
from huggingface_hub import constants

from pipelines.cli import main

TOKEN = "hf_loopbackTestToken123"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-cached-token"))
    with FakeHub() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.endpoint)
        yield fake


def test_publish_creates_the_repo_and_uploads_the_folder_as_it_is(awd_run, hub, capsys):
    folder = awd_run[0] / "run" / "classifier"
    assert main(["publish", str(folder), "--repo-id", "someone/topics-ulmfit", "--private"]) == 0
    repo = hub.repos["someone/topics-ulmfit"]
    assert repo["private"]
    sent, local = repo["files"], {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sent == local  # byte for byte, every file and nothing else
    assert repo["commits"] == [f"lm-transfer: classify stage of {awd_run[1]}"]
    # (huggingface_hub may also GET informational endpoints; the writes are these, in order)
    assert [r["path"].split("?")[0] for r in hub.requests if r["method"] == "POST"] == [
        "/api/repos/create", "/api/validate-yaml", "/api/models/someone/topics-ulmfit/preupload/main",
        "/api/models/someone/topics-ulmfit/commit/main"]
    assert {r["authorization"] for r in hub.requests if r["method"] == "POST"} == {f"Bearer {TOKEN}"}
    out = capsys.readouterr()
    assert out.out.strip().endswith(f"/someone/topics-ulmfit/commit/{'0' * 40}")
    assert TOKEN not in out.out + out.err

    # publishing again to the existing repo adds a commit (the Hub answers 409 to create)
    assert main(["publish", str(awd_run[0] / "run" / "lm_finetune"), "--repo-id", "someone/topics-ulmfit"]) == 0
    assert len(repo["commits"]) == 2 and "lm_finetune stage" in repo["commits"][1]


def test_dry_run_lists_files_and_card_metadata_and_sends_nothing(awd_run, hub, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")  # a dry run needs no token
    folder = awd_run[0] / "run" / "classifier"
    assert main(["publish", str(folder), "--repo-id", "someone/x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert hub.requests == []
    for path in folder.iterdir():
        assert f"  {path.name}  {path.stat().st_size:,} bytes" in out
    assert "pipeline_tag: text-classification" in out and "model-index:" in out and "license: mit" in out


def test_missing_token_or_refused_token_is_one_clear_error(awd_run, hub, monkeypatch, capsys):
    folder = str(awd_run[0] / "run" / "classifier")
    monkeypatch.delenv("HF_TOKEN")
    assert main(["publish", folder, "--repo-id", "someone/x"]) == 2
    assert capsys.readouterr().err.strip() == ("error: no Hugging Face token: set HF_TOKEN or log in with "
                                               "`hf auth login` (a token with write access)")
    assert hub.requests == []
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.reject_token = TOKEN
    assert main(["publish", folder, "--repo-id", "someone/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: publishing to someone/x failed: HTTP 401 (the token was refused)")
    assert TOKEN not in err[0]


def test_a_folder_that_is_not_a_model_is_refused(awd_run, hub, capsys):
    assert main(["publish", str(awd_run[0] / "run" / "tokenizer"), "--repo-id", "someone/x"]) == 2
    assert "no README.md (a tokenizer folder has no model card" in capsys.readouterr().err
    assert main(["publish", str(awd_run[0] / "missing"), "--repo-id", "someone/x"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert hub.requests == []


def test_offline_mode_is_one_clear_error_not_a_traceback(awd_run, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": TOKEN}
    done = subprocess.run([sys.executable, "-m", "pipelines", "publish", str(awd_run[0] / "run" / "classifier"),
                           "--repo-id", "someone/x"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == ("error: HF_HUB_OFFLINE=1: publishing needs the Hub; unset it "
                                                    "(or use --dry-run)")
    assert "Traceback" not in done.stderr
