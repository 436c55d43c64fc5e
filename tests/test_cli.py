"""The command's start-up: --help and a recipe's mistakes are answered without torch or transformers,
while `import pipelines` still registers the model classes for transformers' Auto classes."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_recipe, write_recipe

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "accelerate")

# Runs the command as its console script does (through lm_transfer_cli) and reports which heavy
# modules the process imported.
PROBE = """
import sys, lm_transfer_cli
try:
    code = lm_transfer_cli.main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print("IMPORTED", *[m for m in {heavy!r} if m in sys.modules])
sys.exit(code)
"""


def _command(*argv, cwd=ROOT):
    return subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, topic_data):
    root = tmp_path_factory.mktemp("cli")
    return write_recipe(root / "recipe.yaml", tiny_recipe(topic_data, root / "run"))


@pytest.mark.parametrize("argv,code,says", [
    (["--help"], 0, "usage: lm-transfer"),
    (["run", "--help"], 0, "--stage"),
    (["embed", "--help"], 0, "--pooling {concat,last,mean}"),
    (["run", "{recipe}", "classify.training.learning_rat=1"], 2, "did you mean learning_rate?"),
    (["run", "{recipe}", "classify.training.learning_rate=-1"], 2, "learning_rate: must be at least 0"),
    (["sweep", "{recipe}", "classify.pooling=maxx"], 2, "classify.pooling: 'maxx' is not one of"),
    (["validate", "{recipe}", "--set", "data.path=./no/such/data"], 2, "does not exist"),
    (["run", "{recipe}", "run.stages=tokenizer"], 2, "run.stages: must be a list"),
    (["run", "no-such-recipe.yaml"], 2, "recipe file not found"),
    (["run", "{recipe}", "pretrain.output_dir={users_folder}"], 2, "exists and lm-transfer did not write it"),
    (["train", "--help"], 0, "data.path=my_labels.csv"),
    (["train", "recipes/few_labels.yaml"], 2, "classify.data.path: required"),
    (["train", "{recipe}"], 2, "no train section (see recipes/few_labels.yaml"),
    (["train", "recipes/few_labels.yaml", "data.path={recipe}", "train.output_dir={users_folder}"], 2,
     "exists and lm-transfer did not write it"),
])
def test_help_and_recipe_mistakes_are_answered_without_torch(recipe, argv, code, says, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    done = _command(*[a.format(recipe=recipe, users_folder=tmp_path / "mine") for a in argv])
    assert done.returncode == code, done.stderr
    assert says in done.stdout + done.stderr
    imported = next(line for line in done.stdout.splitlines() if line.startswith("IMPORTED")).split()[1:]
    assert imported == []
    assert (tmp_path / "mine" / "notes.txt").read_text() == "a user's file"


def test_a_recipe_mistake_is_one_line(recipe):
    done = _command("run", recipe, "classify.training.learning_rat=1")
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error: ")


def test_importing_the_package_registers_its_models_for_the_auto_classes():
    code = ("import pipelines\nfrom transformers import AutoConfig, AutoModelForSequenceClassification as A\n"
            "print(type(AutoConfig.for_model('awd_lstm')).__name__, "
            "A.from_config(AutoConfig.for_model('lm_transfer_classifier', num_labels=2)).__class__.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["AwdLstmConfig", "TransferClassifier"], done.stderr
