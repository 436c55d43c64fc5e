"""Publish a trained model's folder to the Hugging Face Hub as it is: the folder (weights, config,
tokenizer, metrics.json, recipe.yaml, the card README.md) is the repo's content.

Steps: check the folder is a finished lm-transfer stage -> (dry run: list files and card metadata,
stop) -> refuse offline mode and a missing token -> create the repo when missing -> upload the
folder in one commit whose message names the recipe and stage.
The token comes from HF_TOKEN or the cached login (`hf auth login`); it is passed to
huggingface_hub and never printed, logged or written by this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from huggingface_hub import HfApi, ModelCard, get_token, is_offline_mode
from huggingface_hub.errors import HfHubHTTPError

from .cards import CARD
from .errors import LmTransferError


class PublishError(LmTransferError):
    pass


def stage_record(folder: Path) -> dict:
    """metrics.json's provenance of a finished stage folder, or a clear error."""
    if not folder.is_dir():
        raise PublishError(f"{folder}: no such folder (give a stage's output folder, e.g. runs/demo-bbc/classifier)")
    metrics = folder / "metrics.json"
    record = json.loads(metrics.read_text()).get("lm_transfer") if metrics.exists() else None
    if record is None:
        raise PublishError(f"{folder}: not a finished lm-transfer stage (no metrics.json written by a run)")
    if not (folder / CARD).exists():
        raise PublishError(f"{folder}: no {CARD} (a tokenizer folder has no model card; publish a model's folder)")
    return record


def publish(folder: str | Path, repo_id: str, private: bool = False, dry_run: bool = False,
            endpoint: str | None = None) -> str:
    """Uploads `folder` to the model repo `repo_id`; returns the commit URL (or, for a dry run, the
    listing that would go up)."""
    folder = Path(folder)
    record = stage_record(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if dry_run:
        metadata = ModelCard.load(folder / CARD).data.to_dict()
        lines = [f"would upload to {repo_id} ({'private' if private else 'public'}), "
                 f"{len(files)} files, {sum(p.stat().st_size for p in files):,} bytes:"]
        lines += [f"  {p.relative_to(folder)}  {p.stat().st_size:,} bytes" for p in files]
        lines += ["card metadata:", yaml.safe_dump(metadata, sort_keys=False).rstrip()]
        return "\n".join(lines)
    if is_offline_mode():
        raise PublishError("HF_HUB_OFFLINE=1: publishing needs the Hub; unset it (or use --dry-run)")
    token = get_token()
    if token is None:
        raise PublishError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login` "
                           "(a token with write access)")
    api = HfApi(endpoint=endpoint, token=token)
    message = f"lm-transfer: {record['stage']} stage of {record['recipe']}"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message)
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        hint = {401: "the token was refused", 403: "the token may not write to this namespace"}.get(status, "")
        raise PublishError(f"publishing to {repo_id} failed: HTTP {status}"
                           f"{f' ({hint})' if hint else ''}: {err.server_message or 'no message'}") from None
    return commit.commit_url
