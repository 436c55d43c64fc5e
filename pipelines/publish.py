"""Publish a trained model's folder to the Hugging Face Hub: the folder (weights, config,
tokenizer, metrics.json, recipe.yaml, the card README.md) becomes the repo's content.

Steps: check the folder is a finished lm-transfer stage -> point its card at the repo (the loading
example names it; with --base-model, the card's base_model and its mentions of the local folder it
was fine-tuned from name that repo instead; with --with-code, it loads the model with
trust_remote_code=True) -> rewrite the user's absolute paths in the text files that go up
(public_text; a text file is told by its content, whatever its name) -> with --with-code, add the
modeling file generated from the package's sources and config.json's auto_map -> refuse any file
that holds a secret, or a binary one that holds a local path -> (dry run: list files and card
metadata, stop) -> refuse offline mode and a missing token -> create the repo (and the branch) when
missing -> make the repo's content the folder, with that card, in one commit (uploads and
deletions) whose message names the recipe and stage. The folder itself is left as its stage wrote it.
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

from .cards import CARD, initial_weights, with_modeling_code
from .ensemble import is_ensemble, member_folders
from .errors import LmTransferError
from .record import METRICS, read_provenance, read_recipe
from .remote_code import MODELING_FILE, auto_map, modeling_source


class PublishError(LmTransferError):
    pass


def stage_record(folder: Path) -> dict:
    """metrics.json's provenance of a finished stage folder, or a clear error."""
    if not folder.is_dir():
        raise PublishError(f"{folder}: no such folder (give a stage's output folder, e.g. runs/demo-bbc/classifier)")
    if is_ensemble(folder):
        raise PublishError(f"{folder}: an ensemble's folder holds no weights, only the names of its members' folders "
                           f"({', '.join(str(m) for m in member_folders(folder))}): publish each member")
    record = read_provenance(folder)
    if record is None:
        raise PublishError(f"{folder}: not a finished lm-transfer stage (no {METRICS} written by a run)")
    if not (folder / CARD).exists():
        raise PublishError(f"{folder}: no {CARD} (a tokenizer folder has no model card; publish a model's folder)")
    return record


_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# An absolute local path (or a ~ one) of two components or more, as cards, recipes and JSON files
# write it: at the start or after a space, quote, bracket, "=", "," or ">", so never inside a URL
# ("https://...") or a closing HTML tag ("</details>"). One component ("/tmp") names nothing of the user's.
_SEGMENT = r"/[^\s\"'`()\[\]{}<>,;:|/]+"
_LOCAL_PATH = re.compile(rf"""(?<![^\s"'`(\[{{=,>])(?:~|{_SEGMENT})(?:{_SEGMENT})+""")
# A tokenizer's vocabulary is learned text, not paths: rewriting a token ("/usr/lib") would break
# it. It is still scanned for tokens.
_VOCABULARIES = {"tokenizer.json", "vocab.json", "vocab.txt", "merges.txt"}
# Secrets of the kinds a training folder picks up (a recipe, a log, an .env file, a script): Hugging
# Face user and organization tokens, GitHub, OpenAI/Anthropic-style, AWS, Slack and Google API keys,
# and private keys.
_TOKEN = re.compile(rb"(?<![A-Za-z0-9])(?:hf_|api_org_)[A-Za-z0-9]{30,}"
                    rb"|(?<![A-Za-z0-9])(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,}"
                    rb"|(?<![A-Za-z0-9-])sk-(?:[A-Za-z0-9_-]{3,}-)?[A-Za-z0-9_-]{32,}"
                    rb"|(?<![A-Z0-9])AKIA[0-9A-Z]{16}(?![A-Z0-9])|xox[abprs]-[A-Za-z0-9-]{10,}"
                    rb"|AIza[0-9A-Za-z_-]{35}|-----BEGIN [A-Z ]*PRIVATE KEY-----", re.IGNORECASE)
# The placeholder of the shipped recipes' card.install, which a published card must not carry.
_INSTALL_TEMPLATE = "git+https://github.com/YOUR-NAME/"
# Files lm-transfer keeps for itself in an output folder; they mean nothing on the Hub.
_NOT_SENT = {".lm-transfer"}


def public_text(text: str) -> str:
    """`text` without the user's machine in it: an absolute local path becomes relative to the
    working directory when it lies under it, else its last component (the folder or file name)."""
    cwd = Path.cwd()

    def public(match: re.Match) -> str:
        path = Path(os.path.expanduser(match.group()))
        return path.relative_to(cwd).as_posix() if path.is_relative_to(cwd) else path.name

    return _LOCAL_PATH.sub(public, text)


def card_for_repo(folder: Path, stage: str, repo_id: str, base_model: str | None = None,
                  with_code: bool = False) -> ModelCard:
    """The folder's card as it reads on the Hub under `repo_id`: the loading example names the repo,
    and with `base_model` (the Hub repo where the model this stage started from was published) so
    do the card's base_model metadata and the text that named the local folder. `with_code`: the
    repo carries the model's code, and the card loads it from there."""
    card = ModelCard.load(folder / CARD)
    if with_code:
        card.text = with_modeling_code(card.text, folder)
    card.text = re.sub(r'(?<=from_pretrained\()"[^"]*"', f'"{repo_id}"', card.text)
    if base_model:
        if not _REPO_ID.match(base_model) or Path(base_model).exists():  # (a local folder is not a repo)
            raise PublishError(f"--base-model {base_model!r}: give the Hub repo id (user/name) "
                               "the base model was published to")
        started_from = initial_weights(read_recipe(folder)[stage])
        if not started_from:
            raise PublishError(f"--base-model: {folder} was trained from random weights (its {stage} stage "
                               "has no init_from)")
        card.text = card.text.replace(f"`{started_from}`", f"[`{base_model}`](https://huggingface.co/{base_model})")
        card.data.base_model = base_model
    return ModelCard(public_text(str(card)))


def publish(folder: str | Path, repo_id: str, private: bool = False, dry_run: bool = False,
            base_model: str | None = None, revision: str | None = None, with_code: bool = False) -> str:
    """Uploads `folder` to the model repo `repo_id` (on branch `revision` when given); returns the
    commit URL (or, for a dry run, the listing that would go up). `base_model`: the Hub repo the
    stage's init_from folder was published to, for the card's lineage. `with_code`: the upload also
    carries the model's code (remote_code.MODELING_FILE), so it loads with trust_remote_code=True."""
    folder = Path(folder)
    record = stage_record(folder)
    if not _REPO_ID.match(repo_id):
        raise PublishError(f"--repo-id {repo_id!r}: give user/name (or organization/name)")
    mapping = _auto_map(folder) if with_code else None
    card = card_for_repo(folder, record["stage"], repo_id, base_model, with_code)
    uploads = _uploads(folder, card)
    if mapping:
        uploads.update(_modeling_code(uploads, mapping))
    _refuse_tokens(folder, uploads)
    where = f"{repo_id}{f' (branch {revision})' if revision else ''}"
    template = _INSTALL_TEMPLATE in str(card)
    if template and not dry_run:
        raise PublishError(f"{folder / CARD}: its install line is still the recipe's template ({_INSTALL_TEMPLATE}...): "
                           "put your lm-transfer repository in the recipe's card.install and run the recipe again "
                           "(it re-renders the card, training nothing), or remove card.install")
    if dry_run:
        sizes = {name: (folder / name).stat().st_size if text is None else len(text) for name, text in uploads.items()}
        lines = [f"would upload to {where}, {'private' if private else 'public'}, "
                 f"{len(uploads)} files, {sum(sizes.values()):,} bytes:"]
        lines += [f"  {name}  {size:,} bytes" for name, size in sizes.items()]
        lines += ["card metadata:", yaml.safe_dump(card.data.to_dict(), sort_keys=False).rstrip()]
        if template:
            lines.append(f"note: the card's install line is the recipe's template ({_INSTALL_TEMPLATE}...): "
                         "publishing refuses it until card.install names your repository")
        return "\n".join(lines)
    if is_offline_mode():
        raise PublishError("offline mode (HF_HUB_OFFLINE=1): publishing needs the Hub; unset it (or use --dry-run)")
    token = get_token()
    if token is None:
        raise PublishError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login` "
                           "(a token with write access)")
    api = HfApi(token=token)
    message = public_text(f"lm-transfer: {record['stage']} stage of {record['recipe']}")
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
        with _staged(folder, uploads) as staging:
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


def _uploads(folder: Path, card: ModelCard) -> dict[Path, bytes | None]:
    """Every file of the folder (its path in the folder) -> what goes up in its place: the card for
    the repo, a text file's public_text (any name or extension: told by its content), or None for a
    binary file sent as it is."""
    uploads = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _NOT_SENT):
        if path == folder / CARD:
            uploads[path.relative_to(folder)] = str(card).encode()
        elif path.name not in _VOCABULARIES and _is_text(path):
            # (surrogateescape: a file that is not UTF-8 goes up byte for byte, paths aside)
            text = path.read_bytes().decode(errors="surrogateescape")
            uploads[path.relative_to(folder)] = public_text(text).encode(errors="surrogateescape")
        else:
            uploads[path.relative_to(folder)] = None
    return uploads


def _is_text(path: Path) -> bool:
    """No NUL byte in its first 8 KiB (what git and file(1) go by); weights and pickles have them."""
    with open(path, "rb") as handle:
        return b"\0" not in handle.read(8192)


def _auto_map(folder: Path) -> dict[str, str]:
    """config.json's auto_map for --with-code; a model that transformers has itself (a transformer
    language model) needs no code, and the flag is refused rather than ignored."""
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    mapping = auto_map(model_type)
    if mapping is None:
        raise PublishError(f"--with-code: {folder} is a {model_type} model, which transformers loads without "
                           "lm-transfer's code; publish it without --with-code")
    return mapping


def _modeling_code(uploads: dict[Path, bytes | None], mapping: dict[str, str]) -> dict[Path, bytes]:
    """The uploads --with-code adds or replaces: the generated modeling file, and config.json (as it
    goes up, paths rewritten) with the auto_map that points the Auto classes at that file."""
    config = json.loads(uploads[Path("config.json")])
    config_text = json.dumps({**config, "auto_map": mapping}, indent=2, sort_keys=True) + "\n"
    return {Path("config.json"): config_text.encode(), Path(MODELING_FILE): modeling_source().encode()}


def _refuse_tokens(folder: Path, uploads: dict[Path, bytes | None]) -> None:
    """Stop before anything is sent (a dry run included) when a file that would go up holds a secret
    (every file, text or binary: a binary file's bytes are searched as they are), or a binary file holds
    a path of the user's machine that could not be rewritten (its home or working folder). The secret
    itself is never shown."""
    own = {os.fsencode(p) for p in (Path.home(), Path.cwd()) if len(Path(p).parts) > 2}
    for name, text in uploads.items():
        content = (folder / name).read_bytes() if text is None else text
        if _TOKEN.search(content):
            raise PublishError(f"{folder / name}: holds what looks like a secret (a Hugging Face, GitHub, cloud or "
                               "API token, or a private key); nothing was sent: remove it from the folder (and "
                               "revoke it if it was shared)")
        if text is None and (path := next((p for p in own if p in content), None)):
            raise PublishError(f"{folder / name}: a binary file that holds a local path ({os.fsdecode(path)}), "
                               "which cannot be rewritten in it; nothing was sent: remove the file from the folder")


@contextmanager
def _staged(folder: Path, uploads: dict[Path, bytes | None]) -> Iterator[Path]:
    """The folder as it goes up: the text of `uploads` written, the other files hard-linked (copied
    across file systems), so the stage's own folder, card included, stays as the stage wrote it."""
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}.publish-", dir=folder.parent) as staging:
        for name, text in uploads.items():
            target = Path(staging) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if text is not None:
                target.write_bytes(text)
                continue
            try:
                os.link(folder / name, target)
            except OSError:
                shutil.copy2(folder / name, target)
        yield Path(staging)
