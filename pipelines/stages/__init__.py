"""One module per stage; each has `run(ctx) -> metrics` and writes into `ctx.partial_dir`."""
