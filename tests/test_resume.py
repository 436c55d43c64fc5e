"""An interrupted stage: Ctrl-C is one line and keeps the last checkpoint; the next run says it
resumes, ends where an uninterrupted run ends, and reports the whole stage's loss and wall time."""

import json
import time

import pytest
from conftest import tiny_recipe, write_recipe

from pipelines.cli import main
from pipelines.trainer import ULMFiTTrainer, whole_run_loss


def test_whole_run_loss_weights_each_logged_interval_by_its_steps():
    history = [{"loss": 4.0, "step": 2}, {"loss": 2.0, "step": 6}, {"loss": 9.0, "step": 8}]
    # steps 1-2 at 4.0, 3-6 at 2.0 before the checkpoint at 6; 4 resumed steps at a mean of 1.0
    assert whole_run_loss(history, 1.0, resumed_at=6, global_step=10) == pytest.approx((8 + 8 + 4) / 10)


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
