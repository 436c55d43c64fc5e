"""`lm-transfer publish` against a loopback HTTP server standing in for the Hub (tests/hub_server.py):
the Hub API calls and the files sent are recorded; nothing leaves the machine."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from hub_server import FakeHub
from huggingface_hub import ModelCard, constants

from pipelines.cli import main
from pipelines.outputs import MARK

TOKEN = "hf_loopbackTestToken123"
# The length of a real user access token (hf_ + 34 characters): what publish must never send.
REAL_LENGTH_TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"


def _files(folder):
    """Every file under a folder by its path relative to it (as the Hub names them)."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def online(monkeypatch):
    """A user's HF_HUB_OFFLINE=1 would turn every publish test into the offline refusal: the tests talk
    to a loopback server, so offline mode is off for them. huggingface_hub reads the variable once,
    at import, into constants.HF_HUB_OFFLINE (is_offline_mode() and its HTTP hook read that)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # (for anything that reads them later)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(online, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-cached-token"))
    with FakeHub() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.endpoint)
        yield fake


@pytest.fixture
def run_copy(awd_run, tmp_path):
    """The shared run's stage folders, copied: tests add files to them."""
    shutil.copytree(awd_run[0] / "run", tmp_path / "run")
    return tmp_path / "run"


def _named(text: str, paths: list) -> str:
    """`text` with each of these absolute paths replaced by its last component (longest first)."""
    for path in sorted(paths, key=lambda p: -len(str(p))):
        text = text.replace(str(path), path.name)
    return text


def test_publish_creates_the_repo_and_uploads_the_folder_as_it_is(awd_run, run_copy, topic_data, hub,
                                                                  monkeypatch, capsys):
    monkeypatch.chdir(run_copy)  # (a working directory that holds none of the paths the files name)
    folder = run_copy / "classifier"
    assert main(["publish", str(folder), "--repo-id", "someone/topics-ulmfit", "--private"]) == 0
    repo = hub.repos["someone/topics-ulmfit"]
    assert repo["private"]
    sent, local = repo["files"], {name: p.read_bytes() for name, p in _files(folder).items() if p.name != MARK}
    assert sent.keys() == local.keys()  # every file (but lm-transfer's own mark) and nothing else
    # What differs from the folder: the card names the repo in its loading example, and the text
    # files that name this machine's absolute paths (the run's folders, its recipe, the data) name
    # them by their last component. The weights and the tokenizer go up byte for byte.
    built_in = awd_run[0] / "run"  # (run_copy's origin, which its files name)
    card = local["README.md"].decode()
    assert card.count(f'from_pretrained("{built_in / "classifier"}")') == 2
    local["README.md"] = card.replace(f'from_pretrained("{built_in / "classifier"}")',
                                      'from_pretrained("someone/topics-ulmfit")').encode()
    absolute = [built_in, *built_in.iterdir(), awd_run[1], topic_data]
    differ = {"README.md", "recipe.yaml", "metrics.json", "config.json"}  # (config.json: the LM's _name_or_path)
    assert {k: v for k, v in sent.items() if k not in differ} == {k: v for k, v in local.items() if k not in differ}
    for name in differ:
        assert _named(local[name].decode(), absolute) != local[name].decode(), name
        assert sent[name].decode() == _named(local[name].decode(), absolute), name
    assert not [p for p in folder.parent.iterdir() if ".publish-" in p.name]  # the staging folder is gone
    assert repo["commits"] == [f"lm-transfer: classify stage of {awd_run[1].name}"]
    # (huggingface_hub may also GET informational endpoints; the writes are these, in order)
    assert [r["path"].split("?")[0] for r in hub.requests if r["method"] == "POST"] == [
        "/api/validate-yaml", "/api/repos/create", "/api/validate-yaml", "/api/models/someone/topics-ulmfit/preupload/main",
        "/api/models/someone/topics-ulmfit/commit/main"]
    writes = [r for r in hub.requests if r["method"] == "POST" and r["path"] != "/api/validate-yaml"]
    assert {r["authorization"] for r in writes} == {f"Bearer {TOKEN}"}  # (the card check needs no token)
    out = capsys.readouterr()
    assert out.out.strip().endswith(f"/someone/topics-ulmfit/commit/{'0' * 40}")
    assert TOKEN not in out.out + out.err

    # publishing again to the existing repo adds a commit (the Hub answers 409 to create), and the
    # repo becomes that folder: the classifier's files that the LM folder lacks are deleted
    (folder / "stale.txt").write_text("only in the classifier's upload")
    assert main(["publish", str(folder), "--repo-id", "someone/topics-ulmfit"]) == 0
    assert "stale.txt" in repo["files"]
    assert main(["publish", str(run_copy / "lm_finetune"), "--repo-id", "someone/topics-ulmfit"]) == 0
    assert len(repo["commits"]) == 3 and "lm_finetune stage" in repo["commits"][2]
    assert repo["files"].keys() == _files(run_copy / "lm_finetune").keys()


def test_dry_run_lists_files_and_card_metadata_and_sends_nothing(awd_run, topic_data, hub, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")  # a dry run needs no token
    folder = awd_run[0] / "run" / "classifier"
    assert main(["publish", str(folder), "--repo-id", "someone/x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert hub.requests == []
    assert len([line for line in out.splitlines() if line.endswith(" bytes")]) == len(_files(folder))
    for path in (p for p in _files(folder).values() if p.name != MARK):  # text files as they would go up (the card names the repo, no local paths)
        same = path.suffix == ".safetensors" or path.name.startswith("tokenizer")
        assert (f"  {path.name}  {path.stat().st_size:,} bytes" if same else f"  {path.name}  ") in out
    assert 'from_pretrained("someone/x")' not in (folder / "README.md").read_text()  # nothing written
    assert "pipeline_tag: text-classification" in out and "model-index:" in out and "license: mit" in out
    assert "name: topics" in out and str(topic_data) not in out  # the card's metadata as it would go up


def test_publish_sends_no_absolute_local_path(awd_run, run_copy, topic_data, hub, monkeypatch):
    """A path under the working directory goes up relative to it; any other absolute path (the data,
    one under ~) as its last component; URLs as they are. The folder stays as its stage wrote it."""
    monkeypatch.chdir(awd_run[0])  # the run's folders lie under it, the data does not
    folder = run_copy / "classifier"
    (folder / "notes.txt").write_text("copied from ~/data/mydata.csv, see https://huggingface.co/datasets/x/y\n")
    (folder / "NOTES").write_text(f"trained from {topic_data}/train.jsonl\n")  # text, whatever its name
    before = {name: p.read_bytes() for name, p in _files(folder).items()}
    assert str(awd_run[0]).encode() in before["recipe.yaml"] and str(topic_data).encode() in before["README.md"]
    assert main(["publish", str(folder), "--repo-id", "someone/x"]) == 0
    assert {name: p.read_bytes() for name, p in _files(folder).items()} == before
    sent = hub.repos["someone/x"]["files"]
    assert sent.keys() == before.keys() - {MARK}
    for name, data in sent.items():
        assert str(awd_run[0]).encode() not in data and str(topic_data.parent).encode() not in data, name
    recipe = yaml.safe_load(sent["recipe.yaml"])
    assert (recipe["run"]["output_dir"], recipe["classify"]["output_dir"]) == ("run", "run/classifier")
    assert recipe["classify"]["init_from"] == "run/lm_finetune" and recipe["classify"]["data"]["path"] == "topics"
    assert json.loads(sent["config.json"])["backbone"]["_name_or_path"] == "run/lm_finetune"
    assert json.loads(sent["metrics.json"])["lm_transfer"]["recipe"] == "recipe.yaml"
    assert sent["notes.txt"].decode() == "copied from mydata.csv, see https://huggingface.co/datasets/x/y\n"
    assert sent["NOTES"].decode() == "trained from train.jsonl\n"
    card = ModelCard(sent["README.md"].decode())
    assert {r.dataset_name for r in card.data.eval_results} == {"topics"}
    assert "| pretrain | `run/pretrain` | topics |" in card.text
    assert hub.repos["someone/x"]["commits"] == ["lm-transfer: classify stage of recipe.yaml"]


SECRETS = {"hf": REAL_LENGTH_TOKEN, "hf-org": "api_org_" + REAL_LENGTH_TOKEN[3:],
           "github": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "aws": "AKIA" + "IOSFODNN7EXAMPLE",
           "openai": "sk-proj-" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3"}


@pytest.mark.parametrize("name,secret", [("metrics.json", "hf"), ("README.md", "hf-org"), (".env", "hf"),
                                         ("secrets.ENV", "github"), ("train.log", "aws"), ("run.py", "openai"),
                                         ("NOTES", "hf"), ("logs/events.out", "hf"), ("weights.BIN", "hf")])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_secret_in_any_file_that_would_go_up_is_refused_and_never_shown(run_copy, hub, capsys, name, secret,
                                                                           dry_run):
    folder, token = run_copy / "classifier", SECRETS[secret]
    (folder / name).parent.mkdir(exist_ok=True)
    if name == "metrics.json":
        metrics = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps({**metrics, "note": f"pushed with {token}"}))
    elif name == "weights.BIN":  # a binary file: its bytes are searched as they are
        (folder / name).write_bytes(bytes(range(256)) * 4 + token.encode() + b"\0\1")
    else:
        (folder / name).write_text(((folder / name).read_text() if (folder / name).exists() else "") +
                                   f"\nTOKEN={token}\n")
    assert main(["publish", str(folder), "--repo-id", "someone/x", *(["--dry-run"] if dry_run else [])]) == 2
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {folder / name}: holds what looks like a secret")
    assert token not in out.out + out.err and token[8:] not in out.out + out.err
    assert hub.requests == [] and hub.repos == {}


def test_a_binary_file_holding_a_local_path_is_refused(run_copy, hub, monkeypatch, capsys):
    monkeypatch.chdir(run_copy)
    folder = run_copy / "classifier"
    (folder / "training_args.bin").write_bytes(b"\x80\x04\x95" + str(run_copy / "classifier.work").encode() + b"\0")
    assert main(["publish", str(folder), "--repo-id", "someone/x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "training_args.bin: a binary file that holds a local path" in err and hub.repos == {}


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
    assert done.stderr.strip().splitlines()[-1] == ("error: offline mode (HF_HUB_OFFLINE=1): publishing needs "
                                                    "the Hub; unset it (or use --dry-run)")
    assert "Traceback" not in done.stderr


def test_base_model_names_the_published_lm_in_metadata_and_text(awd_run, run_copy, hub, capsys):
    """A classifier whose LM was published first: the card's lineage points at that repo."""
    folder = run_copy / "classifier"
    init_from = yaml.safe_load((folder / "recipe.yaml").read_text())["classify"]["init_from"]
    assert f"`{init_from}`" in (folder / "README.md").read_text()  # the local LM folder, before
    assert main(["publish", str(run_copy / "lm_finetune"), "--repo-id", "someone/topics-lm"]) == 0
    assert main(["publish", str(folder), "--repo-id", "someone/topics-clf", "--base-model", "someone/topics-lm"]) == 0
    sent = hub.repos["someone/topics-clf"]["files"]["README.md"].decode()
    assert f"`{init_from}`" in (folder / "README.md").read_text()  # the folder's own card is left alone
    card = ModelCard(sent)
    assert card.data.base_model == "someone/topics-lm"
    assert f"`{init_from}`" not in sent
    assert "fine-tuned from the language model [`someone/topics-lm`](https://huggingface.co/someone/topics-lm)" in sent
    assert main(["publish", str(folder), "--repo-id", "someone/topics-clf", "--base-model", "other/lm", "--dry-run"]) == 0
    assert "base_model: other/lm" in capsys.readouterr().out


def test_base_model_on_a_model_trained_from_scratch_and_bad_repo_ids_are_refused(run_copy, hub, capsys):
    pretrain = str(run_copy / "pretrain")
    assert main(["publish", pretrain, "--repo-id", "someone/x", "--base-model", "someone/y"]) == 2
    assert "was trained from random weights (its pretrain stage has no init_from)" in capsys.readouterr().err
    assert main(["publish", pretrain, "--repo-id", "no-namespace"]) == 2
    assert "--repo-id 'no-namespace': give user/name" in capsys.readouterr().err
    assert main(["publish", str(run_copy / "classifier"), "--repo-id", "someone/x", "--base-model", str(run_copy / "lm_finetune")]) == 2
    assert "give the Hub repo id (user/name)" in capsys.readouterr().err
    assert hub.requests == []


def test_revision_uploads_to_a_branch_created_when_missing(run_copy, hub):
    """e.g. a sweep's LM stages as branches of one repo, the classifier on main."""
    assert main(["publish", str(run_copy / "classifier"), "--repo-id", "someone/topics"]) == 0
    assert main(["publish", str(run_copy / "pretrain"), "--repo-id", "someone/topics", "--revision", "pretrain"]) == 0
    assert main(["publish", str(run_copy / "lm_finetune"), "--repo-id", "someone/topics", "--revision", "lm-finetune"]) == 0
    assert main(["publish", str(run_copy / "lm_finetune"), "--repo-id", "someone/topics", "--revision", "lm-finetune"]) == 0
    repo = hub.repos["someone/topics"]
    assert repo["commits"] == [repo["commits"][0]] and "classify stage" in repo["commits"][0]  # main: the classifier only
    assert set(repo["branches"]) == {"pretrain", "lm-finetune"}
    assert repo["branches"]["lm-finetune"]["commits"] == ["lm-transfer: lm_finetune stage of " + repo["commits"][0].split(" of ")[1]] * 2
    assert repo["branches"]["pretrain"]["files"].keys() == _files(run_copy / "pretrain").keys()
    pretrained_card = ModelCard(repo["branches"]["pretrain"]["files"]["README.md"].decode())
    assert pretrained_card.data.pipeline_tag == "text-generation"
    assert repo["branches"]["pretrain"]["files"]["model.safetensors"] == (run_copy / "pretrain" / "model.safetensors").read_bytes()


def test_a_card_the_hub_refuses_stops_before_the_repo_is_created(run_copy, hub, capsys):
    hub.card_errors = ['"license" must be one of [apache-2.0, mit, ...]']
    assert main(["publish", str(run_copy / "classifier"), "--repo-id", "someone/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the Hub refused the card's metadata (README.md): ")
    assert '"license" must be one of' in err[0]
    assert hub.repos == {}


def test_private_is_refused_for_an_existing_public_repo(run_copy, hub, capsys):
    assert main(["publish", str(run_copy / "classifier"), "--repo-id", "someone/x"]) == 0
    assert main(["publish", str(run_copy / "classifier"), "--repo-id", "someone/x", "--private"]) == 2
    assert "--private: someone/x exists and is public" in capsys.readouterr().err
    assert len(hub.repos["someone/x"]["commits"]) == 1  # nothing uploaded the second time


def test_no_connection_to_the_hub_is_one_clear_error(run_copy, online, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub() as closed:  # a port that was just served and is now closed: connection refused
        endpoint = closed.endpoint
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    assert main(["publish", str(run_copy / "classifier"), "--repo-id", "someone/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot reach the Hub at {endpoint}: ")


# Loads a downloaded repo as a Hub user without lm-transfer would: `import pipelines` fails (a
# meta-path finder ahead of the installed package refuses it), so only the repo's own code can serve.
_LOAD_WITHOUT_LM_TRANSFER = """
import json, sys

class NoLmTransfer:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pipelines":
            raise ImportError("lm-transfer is not installed here")

sys.meta_path.insert(0, NoLmTransfer())
try:
    import pipelines
    sys.exit("import pipelines worked: the test would prove nothing")
except ImportError:
    pass
import torch
import transformers

folder, auto_class, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True)
tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
with torch.no_grad():
    logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits
from sentence_transformers import SentenceTransformer  # (its files: what `lm-transfer embed` makes)
vectors = SentenceTransformer(folder, device="cpu", trust_remote_code=True).encode(texts)
print(json.dumps({"logits": logits.tolist(), "class": f"{type(model).__module__}.{type(model).__name__}",
                  "vectors": vectors.tolist(),
                  "pipelines": sorted(m for m in sys.modules if m.split(".")[0] == "pipelines")}))
"""
TEXTS = ["The striker scored a late goal and the fans cheered.", "Garlic butter sauce for the bread."]
AUTO_MAPS = {
    "classifier": {"AutoConfig": "modeling_lm_transfer.TransferClassifierConfig",
                   "AutoModel": "modeling_lm_transfer.TransferEncoder",
                   "AutoModelForSequenceClassification": "modeling_lm_transfer.TransferClassifier"},
    "lm_finetune": {"AutoConfig": "modeling_lm_transfer.AwdLstmConfig",
                    "AutoModel": "modeling_lm_transfer.AwdLstmModel",
                    "AutoModelForCausalLM": "modeling_lm_transfer.AwdLstmForCausalLM"},
}


@pytest.mark.parametrize("stage,auto_class,model_class", [
    ("classifier", "AutoModelForSequenceClassification", "TransferClassifier"),
    ("lm_finetune", "AutoModelForCausalLM", "AwdLstmForCausalLM")])
def test_with_code_the_repo_loads_where_lm_transfer_is_not_installed(run_copy, hub, tmp_path, stage, auto_class,
                                                                     model_class):
    import torch
    import transformers

    folder = run_copy / stage
    before = {name: p.read_bytes() for name, p in _files(folder).items()}
    assert main(["publish", str(folder), "--repo-id", "someone/x", "--with-code"]) == 0
    assert {name: p.read_bytes() for name, p in _files(folder).items()} == before  # the folder stays as the stage wrote it
    sent = hub.repos["someone/x"]["files"]
    assert sent.keys() == before.keys() | {"modeling_lm_transfer.py"}
    assert json.loads(sent["config.json"])["auto_map"] == AUTO_MAPS[stage]
    download = tmp_path / "download"
    download.mkdir()
    for name, data in sent.items():
        (download / name).parent.mkdir(exist_ok=True)
        (download / name).write_bytes(data)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_LM_TRANSFER, str(download), auto_class,
                           json.dumps(TEXTS)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["pipelines"] == []
    assert loaded["class"].startswith("transformers_modules.") and loaded["class"].endswith(
        f".modeling_lm_transfer.{model_class}")  # the repo's own code
    # the same numbers as the stage's folder loaded the usual way, with the package
    model = getattr(transformers, auto_class).from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        expected = model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits
    assert torch.equal(torch.tensor(loaded["logits"]), expected)
    from pipelines.embed import load_encoder

    torch.testing.assert_close(torch.tensor(loaded["vectors"]), torch.tensor(load_encoder(str(folder)).encode(
        TEXTS, progress=False)), atol=1e-5, rtol=1e-5)


def test_the_modeling_file_is_the_packages_sources_and_imports_no_lm_transfer(run_copy, hub):
    import ast
    import inspect

    from pipelines import ulmfit
    from pipelines.models import awd_lstm, classifier

    assert main(["publish", str(run_copy / "classifier"), "--repo-id", "someone/x", "--with-code"]) == 0
    source = hub.repos["someone/x"]["files"]["modeling_lm_transfer.py"].decode()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, ast.unparse(node)  # no package-relative import left
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    assert imported == {"__future__", "math", "dataclasses", "torch", "transformers", "huggingface_hub"}
    assert source.count("from __future__ import annotations") == 1
    assert ast.parse(source).body[1].module == "__future__"  # (after the docstring, before anything else)
    # generated from the package, not a copy kept by hand: its definitions are the package's, once each
    for definition in (ulmfit.concat_pool, ulmfit.encode_bpt3c, ulmfit.GradualUnfreezing, awd_lstm.AwdLstmConfig,
                       awd_lstm.WeightDropLstm, classifier.PoolingHead, classifier.TransferClassifier):
        assert source.count(inspect.getsource(definition)) == 1, definition.__name__
    for registration in ('AutoConfig.register("awd_lstm", AwdLstmConfig, exist_ok=True)',
                         "AutoModelForSequenceClassification.register(TransferClassifierConfig, TransferClassifier, "
                         "exist_ok=True)"):
        assert registration in source


def test_with_code_the_card_loads_from_the_repo_and_the_dry_run_lists_the_file(run_copy, hub, capsys):
    folder = run_copy / "classifier"
    assert main(["publish", str(folder), "--repo-id", "someone/x", "--with-code", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "  modeling_lm_transfer.py  " in listed and f", {len(_files(folder)) + 1} files," in listed
    assert hub.requests == []
    assert main(["publish", str(folder), "--repo-id", "someone/x", "--with-code"]) == 0
    card = hub.repos["someone/x"]["files"]["README.md"].decode()
    notice = card[card.index("> [!WARNING]"):card.index("<!-- /lm-transfer:code-notice -->")]
    notice = " ".join(notice.replace("> ", "").split())
    assert notice.startswith("[!WARNING] This model's code is not part of transformers. This repo carries it: "
                             "`modeling_lm_transfer.py`, generated from lm-transfer 0.1.0's sources. Read that file, "
                             "then load the model with `trust_remote_code=True`")
    assert notice.endswith("do not `pip install pipelines`.")
    how = card[card.index("## How to load"):card.index("## Citation")]
    assert "`trust_remote_code=True`\nruns that file on your machine: read it first." in how
    assert ('model = AutoModelForSequenceClassification.from_pretrained("someone/x", trust_remote_code=True)'
            in how)
    assert 'tokenizer = AutoTokenizer.from_pretrained("someone/x")' in how
    assert "import pipelines" not in card and "see the note at the top" not in card and "not on PyPI" not in card

    # without --with-code, the repo carries no code and its card says to install lm-transfer
    assert main(["publish", str(folder), "--repo-id", "someone/x"]) == 0
    files = hub.repos["someone/x"]["files"]
    assert "modeling_lm_transfer.py" not in files and "auto_map" not in json.loads(files["config.json"])
    card = files["README.md"].decode()
    assert "does not come with these files" in card and "trust_remote_code" not in card
    assert 'model = AutoModelForSequenceClassification.from_pretrained("someone/x")' in card


def test_with_code_is_refused_for_a_language_model_transformers_has(run_copy, hub, capsys):
    folder = run_copy / "pretrain"
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))  # (only its type is read)
    assert main(["publish", str(folder), "--repo-id", "someone/x", "--with-code", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --with-code: {folder} is a llama model, which transformers "
                                               "loads without lm-transfer's code; publish it without --with-code")
    assert hub.requests == []


def test_a_card_still_holding_the_recipes_install_template_is_not_published(run_copy, hub, capsys):
    from pipelines.cards import refresh_card

    folder = run_copy / "classifier"
    template = "lm-transfer @ git+https://github.com/YOUR-NAME/lm-transfer@v0.1.0"
    assert refresh_card(folder, {"license": "mit", "install": template})
    assert main(["publish", str(folder), "--repo-id", "someone/x", "--dry-run"]) == 0
    assert "note: the card's install line is the recipe's template" in capsys.readouterr().out
    assert main(["publish", str(folder), "--repo-id", "someone/x"]) == 2
    assert "put your lm-transfer repository in the recipe's card.install" in capsys.readouterr().err
    assert hub.repos == {}
    refresh_card(folder, {"license": "mit", "install": template.replace("YOUR-NAME", "alice")})
    assert main(["publish", str(folder), "--repo-id", "someone/x"]) == 0
    assert 'pip install "torch>=2.4" "transformers>=5,<6" "lm-transfer @ git+https://github.com/alice/' in \
        hub.repos["someone/x"]["files"]["README.md"].decode()
