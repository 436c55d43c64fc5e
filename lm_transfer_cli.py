"""The `lm-transfer` command's entry point. It lives outside the `pipelines` package so that importing
it first tells the package not to import its models (torch, transformers) on import: `--help` and a
recipe's mistakes are answered in well under a second; pipelines.cli imports them when a command needs them."""


def main(argv: list[str] | None = None) -> int:
    from pipelines.cli import main as run_command

    return run_command(argv)
