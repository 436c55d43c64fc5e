"""Runs a recipe's stages in order: skip what is already built from the same config, write each
stage's output atomically (a crashed stage leaves no output folder), print the summary table."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import set_seed

from .cards import refresh_card, write_card
from .config import LoadedRecipe
from .data_content import changed_files, data_content
from .errors import LmTransferError, RecipeError
from .outputs import MARK, claim, hold_output_locks, remove_output
from .preflight import check_inputs
from .record import describe_hardware, is_current, provenance, read_metrics, read_provenance, write_atomically, write_record
from .trainer import checkpoint_step, last_complete_checkpoint


# The stages whose folder holds a model (and gets a model card); the others hold a tokenizer or vectors.
MODEL_STAGES = ("pretrain", "lm_finetune", "classify")


@dataclass
class StageContext:
    recipe: LoadedRecipe
    name: str
    fingerprint: str
    state: PartialState

    @property
    def config(self):
        return self.recipe.stage(self.name)

    @property
    def seed(self) -> int:
        return self.recipe.config.run.seed

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def partial_dir(self) -> Path:
        """Where the stage writes its output; renamed to output_dir only when it succeeded."""
        return self.output_dir.with_name(self.output_dir.name + ".partial")

    @property
    def work_dir(self) -> Path:
        """Trainer checkpoints, kept until the stage succeeds so a crashed run resumes."""
        return self.output_dir.with_name(self.output_dir.name + ".work")

    def resume_checkpoint(self) -> str | None:
        """The last checkpoint in work_dir when it was written by this same config, else None (and
        a stale work_dir is cleared)."""
        found = last_complete_checkpoint(self.work_dir) if self._work_is_ours() else None
        self.state.wait_for_everyone()
        if self.state.is_main_process and found is None:
            remove_output(self.work_dir)
            claim(self.work_dir)
            (self.work_dir / "fingerprint").write_text(self.fingerprint)
        if found is not None:
            say_on_main(self.state, f"[{self.name}] resuming from {found} (step {checkpoint_step(found)}, saved by an "
                                    "earlier run of this same config)")
        self.state.wait_for_everyone()
        return found

    def _work_is_ours(self) -> bool:
        stamp = self.work_dir / "fingerprint"
        return stamp.exists() and stamp.read_text() == self.fingerprint

    def data_content(self) -> dict:
        return data_content(self.recipe.resolved[self.name]["data"])

    def earlier_seconds(self) -> float:
        """Wall time that interrupted runs of this stage (same config) spent before this one."""
        spent = self.work_dir / "elapsed_seconds"
        # (without a checkpoint the stage starts over: the earlier runs' time bought nothing it keeps)
        resumable = self._work_is_ours() and last_complete_checkpoint(self.work_dir) is not None
        return float(spent.read_text()) if resumable and spent.exists() else 0.0

    def record_interrupted(self, seconds: float) -> None:
        """Keeps an interrupted run's wall time beside its checkpoints, for the stage's total."""
        if self.state.is_main_process and self._work_is_ours():
            with contextlib.suppress(OSError):  # (the folder may be going: the stage just finished)
                write_atomically(self.work_dir / "elapsed_seconds", lambda temp: temp.write_text(f"{seconds:.1f}"))


def _stage_module(name: str):
    from .stages import classify, embed, lm, tokenizer

    return {"tokenizer": tokenizer, "pretrain": lm, "lm_finetune": lm, "classify": classify, "embed": embed}[name]


def run_recipe(recipe: LoadedRecipe, only: str | None = None, force: bool = False,
               check: bool = True) -> dict[str, dict]:
    """Runs the stages not already built from the same config (or `only` that one); `check=False`
    when the caller checked the inputs already (a sweep checks every arm first)."""
    # Denormal floats (values below ~1e-38 that appear as training goes on) are up to 10x slower on
    # x86 CPUs: measured here, a classifier step grew from 0.3 s to 3 s without this.
    torch.set_flush_denormal(True)
    state = PartialState()
    stages = recipe.config.run.stages
    if only is not None and only not in stages:
        raise RecipeError(f"{recipe.path}: --stage {only}: not in run.stages ({', '.join(stages)})")
    fingerprints = recipe.fingerprints()
    if check:  # everything that can fail on the user's input fails now, before any stage trains
        pending = [name for name in stages if (only is None or name == only)
                   and (force or not is_current(Path(recipe.stage(name).output_dir), fingerprints[name]))]
        # (on the main process: the others would read the same data at once, and fail the same way)
        for line in main_only(state, lambda: check_inputs(recipe, pending)) or []:
            say_on_main(state, line)
    with locked_on_main(state, [recipe.stage(name).output_dir for name in stages]):
        return _run_stages(recipe, state, fingerprints, only, force)


def _run_stages(recipe: LoadedRecipe, state: PartialState, fingerprints: dict[str, str], only: str | None,
                force: bool) -> dict[str, dict]:
    stages, results = recipe.config.run.stages, {}
    for name in stages:
        ctx = StageContext(recipe, name, fingerprints[name], state)
        if only is not None and name != only:
            before_only = stages.index(name) < stages.index(only)
            if before_only and not is_current(ctx.output_dir, ctx.fingerprint):
                raise RecipeError(f"{recipe.path}: --stage {only} needs stage '{name}' built from this config "
                                  f"first ({ctx.output_dir} is missing or stale); run without --stage")
            continue
        if not force and is_current(ctx.output_dir, ctx.fingerprint):
            say_on_main(state, f"[{name}] up to date in {ctx.output_dir} (config {ctx.fingerprint}); skipped")
            if name in MODEL_STAGES and state.is_main_process and refresh_card(ctx.output_dir,
                                                                              recipe.resolved.get("card", {})):
                print(f"[{name}] model card updated (the recipe's card section or the templates changed)",
                      flush=True)
            results[name] = read_metrics(ctx.output_dir)
            continue
        say_on_main(state, f"[{name}] running -> {ctx.output_dir}{_why_again(ctx)}")
        results[name] = _run_stage(ctx)
    return results


KEEP_TIME_EVERY = 10.0  # seconds


def _keep_time(ctx: StageContext, started: float, stop: threading.Event) -> None:
    """Writes the stage's wall time so far beside its checkpoints every KEEP_TIME_EVERY seconds, so that
    a run killed outright (SIGKILL, a lost machine) still counts in the resumed stage's total."""
    while not stop.wait(KEEP_TIME_EVERY):
        ctx.record_interrupted(time.time() - started)


def _why_again(ctx: StageContext) -> str:
    """Why a stage built before is built again (its data changed, or its config), for the line that says so."""
    built = read_provenance(ctx.output_dir)
    if built is None:
        return ""
    if built.get("config_fingerprint") == ctx.fingerprint:
        return " (--force)"
    if "data" in built and built["data"] != (now := ctx.data_content()):
        return f" (its data changed since it was built: {', '.join(changed_files(built['data'], now))})"
    return " (its config, or a stage it builds on, changed since it was built)"


def _run_stage(ctx: StageContext) -> dict:
    state = ctx.state
    set_seed(ctx.seed)
    if state.is_main_process:
        remove_output(ctx.partial_dir)
        claim(ctx.partial_dir)
        claim(ctx.work_dir)  # (a stage may cache its tokens there before it looks for a checkpoint)
    state.wait_for_everyone()
    started = time.time() - ctx.earlier_seconds()  # a resumed stage's time includes the runs before it
    clock = threading.Event()
    if state.is_main_process:  # (a run killed outright can say nothing at the end: its time is kept as it goes)
        threading.Thread(target=_keep_time, args=(ctx, started, clock), daemon=True).start()
    try:
        metrics = _stage_module(ctx.name).run(ctx)
    except BaseException:
        if state.is_main_process:  # nothing half-written
            remove_output(ctx.partial_dir)
        ctx.record_interrupted(time.time() - started)
        raise
    finally:
        clock.set()
    metrics["stage_wall_seconds"] = round(time.time() - started, 1)
    metrics["hardware"] = describe_hardware(state)
    # Provenance, and what tells a later run this folder is current (the folder holds nothing that
    # would not go to the Hub, so no separate stamp file).
    metrics["lm_transfer"] = provenance(ctx.name, ctx.fingerprint, ctx.recipe.path, data=ctx.data_content())
    if state.is_main_process:
        write_record(ctx.partial_dir, metrics, ctx.recipe.resolved)
        if ctx.name in MODEL_STAGES:  # a model: its folder gets the card the Hub shows
            write_card(ctx.partial_dir, ctx.name, ctx.recipe.path, ctx.recipe.resolved, metrics)
        remove_output(ctx.output_dir)
        # (a finished folder is told as lm-transfer's by its metrics.json: it holds nothing the Hub would not get)
        (ctx.partial_dir / MARK).unlink()
        ctx.partial_dir.rename(ctx.output_dir)
        remove_output(ctx.work_dir)
    state.wait_for_everyone()
    return metrics


def say_on_main(state: PartialState, message: str) -> None:
    if state.is_main_process:
        print(message, flush=True)


def summary_table(recipe: LoadedRecipe, results: dict[str, dict]) -> str:
    rows = [("stage", "metric", "value")]
    for name, metrics in results.items():
        if metrics.get("eval_perplexity_before_training"):
            rows.append((name, "validation perplexity before", f"{metrics['eval_perplexity_before_training']:.1f}"))
        if "eval_perplexity" in metrics:
            rows.append((name, "validation perplexity", f"{metrics['eval_perplexity']:.1f}"))
        if "train_tokens_per_second" in metrics:
            rows.append((name, "train tokens/s", f"{metrics['train_tokens_per_second']:.0f}"))
        if "test_accuracy" in metrics:
            for arm, values in [("transferred", metrics), ("from scratch", metrics.get("scratch"))]:
                if values:
                    rows.append((name, f"test accuracy ({arm})", f"{100 * values['test_accuracy']:.1f} %"))
                    rows.append((name, f"test macro-F1 ({arm})", f"{100 * values['test_f1_macro']:.1f} %"))
            rows.append((name, "labeled train / test examples",
                         f"{metrics['train_examples']} / {metrics['test_examples']}"))
        if "embedded_texts" in metrics:
            rows.append((name, "texts embedded", f"{metrics['embedded_texts']:,} x {metrics['dim']} ({metrics['pooling']} pooling)"))
        rows.append((name, "output folder", str(recipe.stage(name).output_dir)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main_only(state: PartialState, work):
    """`work()` on the main process (None elsewhere). If it raises, every process raises the same
    error (a user's mistake stays one line): the others would otherwise wait at the next barrier
    until the collective timeout."""
    result, error = None, None
    if state.is_main_process:
        try:
            result = work()
        except Exception as err:  # re-raised below, on every process
            if state.num_processes == 1:
                raise
            error = err if isinstance(err, LmTransferError) else RuntimeError(f"the main process failed: {err!r}")
    if state.num_processes > 1:
        error = broadcast(state, error)
        if error is not None:
            raise error
    return result


@contextlib.contextmanager
def locked_on_main(state: PartialState, folders: list):
    """The main process holds the output folders' locks (outputs.hold_output_locks) for the duration; a
    second run on one of them stops here, with the same one-line error on every process (main_only)."""
    with contextlib.ExitStack() as locks:
        main_only(state, lambda: locks.enter_context(hold_output_locks(folders)))
        yield


def broadcast(state: PartialState, value):
    """The main process's `value` on every process."""
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]
