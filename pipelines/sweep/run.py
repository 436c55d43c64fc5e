"""`lm-transfer sweep`: plan (every arm's recipe derived and validated, budgets and data checked: all
before any training) -> each arm's language-model stages, built once and shared by arms whose stages
are identical (the pipeline's own cache) -> the cells, appended to results.jsonl as they finish (a
re-run skips finished cells) -> label-efficiency metrics, summary.md and curve.png."""

from __future__ import annotations

import time

from accelerate import PartialState
from tqdm.auto import tqdm

from ..config import LoadedRecipe
from ..outputs import claim, remove_output
from ..preflight import check_sweep_arms
from ..runner import broadcast, locked_on_main, main_only, run_recipe, say_on_main
from .cells import CellRunner
from .plan import plan_sweep, sweep_data
from .report import write_sweep_report
from .results import RESULTS, append_result, cell_key, read_results, row_key


def run_sweep(recipe: LoadedRecipe, command: str | None = None) -> dict:
    """Runs every cell not already in results.jsonl, then writes the report. Returns the
    label-efficiency metrics."""
    import torch

    torch.set_flush_denormal(True)  # see runner.run_recipe: denormals slow CPU training 10x
    started = time.time()
    state = PartialState()
    plan = plan_sweep(recipe)
    sweep, out = recipe.config.sweep, plan.output_dir
    # 1. data, every budget checked against it, and every arm's inputs, before any training
    checked = main_only(state, lambda: (sweep_data(plan), check_sweep_arms(plan)))
    for line in checked[1] if checked else []:
        say_on_main(state, line)
    data, budgets = checked[0] if checked else sweep_data(plan)  # (others: now cached)
    cells = plan.cells(budgets)
    with locked_on_main(state, [out]):  # (a second sweep into the same folder stops here, naming this one)
        # 2. what is left to do
        if state.is_main_process:
            claim(out)
        state.wait_for_everyone()
        results_path = out / RESULTS
        planned = {cell_key(arm, plan.arms[arm].fingerprint, b, seed, len(data.test)): (b, seed, arm)
                   for b, seed, arm in cells}
        rows = broadcast(state, main_only(state, lambda: read_results(results_path)))
        done = {row_key(r) for r in rows} & set(planned)
        pending = [cell for key, cell in planned.items() if key not in done]
        say_on_main(state, f"sweep {recipe.config.run.name}: {len(plan.arms)} arms, budgets {budgets} per class, seeds "
                    f"{list(sweep.seeds)}: {len(cells)} cells, {len(done)} already in {results_path}, {len(pending)} to run")
        # 3. LM stages of the arms that still have cells (and of their self-training students and
        # ensemble members), each built once: identical stages share a folder
        for name in dict.fromkeys(arm for _, _, arm in pending):
            arm = plan.arms[name]
            for trains in [arm, *([arm.student] if arm.student else []), *arm.members]:
                if trains.recipe.config.run.stages:
                    say_on_main(state, f"[arm {trains.name}] language model: {' -> '.join(trains.recipe.config.run.stages)}")
                    run_recipe(trains.recipe, check=False)
        # 4. cells, written as they finish
        runners, methods, scored = {}, {}, {}
        bar = tqdm(total=len(pending), desc="sweep cells", unit="cell", disable=not state.is_main_process)

        def record(row: dict) -> None:
            append_result(results_path, row)
            bar.write(f"[{row['arm']}] {row['examples_per_class']}/class seed {row['seed']}: accuracy "
                      f"{100 * row['accuracy']:.1f} %, macro-F1 {100 * row['f1_macro']:.1f} % ({row['cell_seconds']:.0f} s)")

        for per_class, seed, name in pending:
            if name not in runners:
                runners[name] = CellRunner(plan.arms[name], data, state, out / "work", methods, scored)
            runner = runners[name]
            if runner.everywhere:  # Trainer uses every process
                row = runner.run(per_class, seed)
                main_only(state, lambda: record(row))
            else:  # scikit-learn: the main process alone
                main_only(state, lambda: record(runner.run(per_class, seed)))
            state.wait_for_everyone()
            bar.update(1)
        bar.close()

        # 5. report from every current cell (this run's and earlier runs')
        def report() -> dict:
            remove_output(out / "work")
            # The latest row of each planned cell (two runs at once could have written one twice).
            current = list({row_key(r): r for r in read_results(results_path) if row_key(r) in planned}.values())
            # A run that only re-reports has no wall time worth printing.
            efficiency = write_sweep_report(plan, current, budgets, len(data.label_names), command,
                                            time.time() - started if pending else None)
            say_on_main(state, f"sweep report: {out / 'summary.md'}, {out / 'curve.png'}")
            return efficiency

        efficiency = main_only(state, report) or {}
        state.wait_for_everyone()
        return efficiency
