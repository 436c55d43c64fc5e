"""Publish a trained model's folder to the Hugging Face Hub: the folder (weights, config,
tokenizer, metrics.json, recipe.yaml, the card README.md) becomes the repo's content.

Steps: check the folder is a finished lm-transfer stage -> point its card at the repo (the loading
example names it; with --base-model, the card's base_model and its mentions of the local folder it
was fine-tuned from name that repo instead) -> (dry run: list files and card metadata, stop) ->
refuse offline mode and a missing token -> create the repo (and the branch) when missing -> make the
repo's content the folder, with that card, in one commit (uploads and deletions) whose message
names the recipe and stage. The folder itself is left as its stage wrote it.
The token comes from HF_TOKEN or the cached login (`hf auth login`); it is passed to
huggingface_hub and never printed, logged or written by this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from huggingface_hub import HfApi, ModelCard, constants, get_token, is_offline_mode
from huggingface_hub.errors import HfHubHTTPError

from .cards import CARD, initial_weights
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


_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def card_for_repo(folder: Path, stage: str, repo_id: str, base_model: str | None = None) -> ModelCard:
    """The folder's card as it reads on the Hub under `repo_id`: the loading example names the repo,
    and with `base_model` (the Hub repo where the model this stage started from was published) so
    do the card's base_model metadata and the text that named the local folder."""
    card = ModelCard.load(folder / CARD)
    card.text = re.sub(r'from_pretrained\("[^"]*"\)', f'from_pretrained("{repo_id}")', card.text)
    if base_model:
        if not _REPO_ID.match(base_model) or Path(base_model).exists():  # (a local folder is not a repo)
            raise PublishError(f"--base-model {base_model!r}: give the Hub repo id (user/name) "
                               "the base model was published to")
        started_from = initial_weights(yaml.safe_load((folder / "recipe.yaml").read_text())[stage])
        if not started_from:
            raise PublishError(f"--base-model: {folder} was trained from random weights (its {stage} stage "
                               "has no init_from)")
        card.text = card.text.replace(f"`{started_from}`", f"[`{base_model}`](https://huggingface.co/{base_model})")
        card.data.base_model = base_model
    return card


def publish(folder: str | Path, repo_id: str, private: bool = False, dry_run: bool = False,
            base_model: str | None = None, revision: str | None = None) -> str:
    """Uploads `folder` to the model repo `repo_id` (on branch `revision` when given); returns the
    commit URL (or, for a dry run, the listing that would go up). `base_model`: the Hub repo the
    stage's init_from folder was published to, for the card's lineage."""
    folder = Path(folder)
    record = stage_record(folder)
    if not _REPO_ID.match(repo_id):
        raise PublishError(f"--repo-id {repo_id!r}: give user/name (or organization/name)")
    card = card_for_repo(folder, record["stage"], repo_id, base_model)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    where = f"{repo_id}{f' (branch {revision})' if revision else ''}"
    if dry_run:
        sizes = {p: len(str(card).encode()) if p.name == CARD else p.stat().st_size for p in files}
        lines = [f"would upload to {where}, {'private' if private else 'public'}, "
                 f"{len(files)} files, {sum(sizes.values()):,} bytes:"]
        lines += [f"  {p.relative_to(folder)}  {size:,} bytes" for p, size in sizes.items()]
        lines += ["card metadata:", yaml.safe_dump(card.data.to_dict(), sort_keys=False).rstrip()]
        return "\n".join(lines)
    if is_offline_mode():
        raise PublishError("offline mode (HF_HUB_OFFLINE=1): publishing needs the Hub; unset it (or use --dry-run)")
    token = get_token()
    if token is None:
        raise PublishError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login` "
                           "(a token with write access)")
    api = HfApi(token=token)
    message = f"lm-transfer: {record['stage']} stage of {record['recipe']}"
    try:
        try:  # the Hub's own check of the card's metadata, before the repo is created
            card.validate()
        except ValueError as err:
            raise PublishError(f"the Hub refused the card's metadata ({CARD}): {' '.join(str(err).split())}") from None
        api.create_repo(repo_id, private=private, exist_ok=True)
        if private and not api.repo_info(repo_id).private:  # (create_repo leaves an existing repo as it is)
            raise PublishError(f"--private: {repo_id} exists and is public; make it private on the Hub first, "
                               "or publish without --private")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        # delete_patterns: the repo (branch) ends up exactly the folder: files of an earlier upload,
        # or of main that a new branch started from, do not linger (.gitattributes is kept).
        with _staged(folder, files, card) as staging:
            commit = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=message,
                                       revision=revision, delete_patterns="*")
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        hint = {401: "the token was refused", 403: "the token may not write to this namespace"}.get(status, "")
        raise PublishError(f"publishing to {where} failed: HTTP {status}"
                           f"{f' ({hint})' if hint else ''}: {err.server_message or 'no message'}") from None
    except Exception as err:
        # No connection at all: huggingface_hub lets its HTTP client's error through (httpx in 1.x,
        # httpx2 in 2.x), which would otherwise end the command in a traceback.
        if type(err).__module__.split(".")[0] not in ("httpx", "httpx2"):
            raise
        raise PublishError(f"cannot reach the Hub at {constants.ENDPOINT}: {err}") from None
    return commit.commit_url


@contextmanager
def _staged(folder: Path, files: list[Path], card: ModelCard) -> Iterator[Path]:
    """The folder as it goes up: its files hard-linked (copied across file systems) beside the
    card for the repo, so the stage's own folder, card included, stays as the stage wrote it."""
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}.publish-", dir=folder.parent) as staging:
        for path in files:
            target = Path(staging) / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path == folder / CARD:
                card.save(target)
                continue
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
        yield Path(staging)
