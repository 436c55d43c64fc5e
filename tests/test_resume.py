"""An interrupted stage: Ctrl-C is one line and keeps the last checkpoint; the next run says it
resumes, ends where an uninterrupted run ends, and reports the whole stage's loss and wall time."""

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import tiny_recipe, write_recipe

from pipelines.cli import main
from pipelines.trainer import ULMFiTTrainer, last_complete_checkpoint, whole_run_loss


def test_whole_run_loss_weights_each_logged_interval_by_its_steps():
    history = [{"loss": 4.0, "step": 2}, {"loss": 2.0, "step": 6}, {"loss": 9.0, "step": 8}]
    # steps 1-2 at 4.0, 3-6 at 2.0 before the checkpoint at 6; 4 resumed steps at a mean of 1.0
    assert whole_run_loss(history, 1.0, resumed_at=6, global_step=10) == pytest.approx((8 + 8 + 4) / 10)


def test_a_checkpoint_killed_while_being_saved_is_passed_over(tmp_path):
    for step, whole in ((4, True), (12, True), (16, False)):  # (checkpoint-16: killed before trainer_state.json)
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_text("")
        if whole:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-12")
    (tmp_path / "checkpoint-12" / "trainer_state.json").unlink()
    (tmp_path / "checkpoint-4" / "trainer_state.json").unlink()
    assert last_complete_checkpoint(tmp_path) is None
    assert last_complete_checkpoint(tmp_path / "absent") is None


def test_ctrl_c_keeps_the_checkpoint_and_the_next_run_resumes_it(tmp_path, topic_data, capsys, monkeypatch):
    recipe = tiny_recipe(topic_data, tmp_path / "run")
    recipe["run"]["stages"] = ["tokenizer", "pretrain"]
    recipe["pretrain"]["training"].update(max_steps=12, save_strategy="steps", save_steps=5, logging_steps=1)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["run", str(path), "run.output_dir=" + str(tmp_path / "straight")]) == 0
    straight = json.loads((tmp_path / "straight" / "pretrain" / "metrics.json").read_text())

    step = ULMFiTTrainer.training_step

    def interrupt_at_step_8(self, *args, **kwargs):
        if self.state.global_step == 7:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(ULMFiTTrainer, "training_step", interrupt_at_step_8)
    assert main(["run", str(path)]) == 130
    assert "interrupted: " in capsys.readouterr().err.strip().splitlines()[-1]
    work = tmp_path / "run" / "pretrain.work"
    assert (work / "checkpoint-5").is_dir() and not (tmp_path / "run" / "pretrain").exists()
    assert float((work / "elapsed_seconds").read_text()) > 0
    (work / "elapsed_seconds").write_text("1000.0")  # (a known amount, to find in the total)

    monkeypatch.setattr(ULMFiTTrainer, "training_step", step)
    started = time.time()
    assert main(["run", str(path)]) == 0
    resumed_seconds = time.time() - started
    assert f"[pretrain] resuming from {work / 'checkpoint-5'} (step 5" in capsys.readouterr().out
    resumed = json.loads((tmp_path / "run" / "pretrain" / "metrics.json").read_text())
    # the same 12 steps as the uninterrupted run: the same weights' loss, and a mean over all 12 steps
    assert resumed["eval_loss"] == pytest.approx(straight["eval_loss"], rel=1e-5)
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-4)
    assert 1000 < resumed["stage_wall_seconds"] < 1000 + resumed_seconds
    assert not work.exists()


KILLED_RUN = """
import sys, time
import pipelines.runner
from pipelines.cli import main
from pipelines.trainer import ULMFiTTrainer
pipelines.runner.KEEP_TIME_EVERY = 0.2
step = ULMFiTTrainer.training_step
def slow_step(self, *args, **kwargs):
    time.sleep(0.3)  # (time for the test to see a checkpoint and kill the run mid-stage)
    return step(self, *args, **kwargs)
ULMFiTTrainer.training_step = slow_step
main(["run", sys.argv[1]])
"""


def test_a_killed_run_resumes_with_its_time_counted_and_one_eval_point_a_step(tmp_path, topic_data, capsys):
    recipe = tiny_recipe(topic_data, tmp_path / "run")
    recipe["run"]["stages"] = ["tokenizer", "pretrain"]
    recipe["pretrain"]["training"].update(max_steps=40, save_strategy="steps", save_steps=4, logging_steps=1,
                                          eval_strategy="steps", eval_steps=4)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    work = tmp_path / "run" / "pretrain.work"
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(path)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (last_complete_checkpoint(work) and (work / "elapsed_seconds").exists()
                   and float((work / "elapsed_seconds").read_text()) > 1.0):
            assert run.poll() is None and time.time() < deadline, "the run ended before it could be killed"
            time.sleep(0.2)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    killed_seconds = float((work / "elapsed_seconds").read_text())
    started = time.time()
    assert main(["run", str(path)]) == 0
    assert "[pretrain] resuming from" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "pretrain" / "metrics.json").read_text())
    assert killed_seconds < metrics["stage_wall_seconds"] < killed_seconds + time.time() - started + 1
    steps = [point["step"] for point in metrics["eval_curve"]]
    assert steps == sorted(set(steps)) and steps[-1] == 40


def test_a_stage_that_caches_its_tokens_in_its_work_folder_runs(tmp_path, topic_data, monkeypatch):
    """Data held in memory (the packaged corpus) has its token files cached in <output_dir>.work."""
    from pathlib import Path

    import pipelines.stages.lm

    monkeypatch.setattr(pipelines.stages.lm, "token_cache", lambda texts, work_dir: Path(work_dir) / "tokens")
    recipe = tiny_recipe(topic_data, tmp_path / "run")
    recipe["run"]["stages"] = ["tokenizer", "pretrain"]
    recipe["pretrain"]["training"].update(max_steps=2)
    assert main(["run", str(write_recipe(tmp_path / "r.yaml", recipe))]) == 0
    assert (tmp_path / "run" / "pretrain" / "model.safetensors").exists()
