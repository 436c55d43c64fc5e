"""Stage 5 (optional): a dataset's texts as vectors from a trained folder or a checkpoint, written
for `lm-transfer search` (pipelines/embed.py does the work; this is the recipe's way to it)."""

from __future__ import annotations

from ..embed import embed


def run(ctx) -> dict:
    cfg = ctx.config
    if not ctx.state.is_main_process:
        return {}  # one process embeds and writes; the runner holds the others
    meta = embed(cfg.init_from, cfg.data, ctx.partial_dir, split=cfg.split_to_read(), pooling=cfg.pooling,
                 max_length=cfg.max_length, bptt=cfg.bptt, batch_size=cfg.batch_size, max_examples=cfg.max_examples,
                 seed=ctx.seed, choose=f"{ctx.recipe.path}: {ctx.name}.split", normalize=cfg.normalize)
    return {"embedded_texts": meta["texts"], "dim": meta["dim"], "pooling": meta["pooling"],
            "texts_per_second": meta["texts_per_second"]}
