"""Corpora larger than memory: tokenize + block gutenberg repeated 1x, 4x and 8x (8x is about WikiText-103's
100M tokens) through the LM stages' own path (`pipelines.lm_data`), each scale in a fresh process so its
peak RSS is its own. Time should grow linearly with the corpus and peak RSS stay flat.

  .venv/bin/python benchmarks/corpus_scale.py --tokenizer runs/imdb-small/tokenizer [--scales 1 4 8]

Modes: `arrow` (a `datasets` Dataset: tokenized by Arrow map in one process per core, then the token
file) and `streaming` (an IterableDataset read as it comes, tokenized in this process). Each run
starts from an empty cache (its own temporary HF_DATASETS_CACHE), so nothing is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPUS = "../shared/data/gutenberg"


class PeakAnonymous:
    """The largest anonymous memory of this process and its children together (the sum of their
    Pss_Anon: copy-on-write pages a forked child shares with its parent counted once), sampled every
    0.1 s. ru_maxrss also counts the resident pages of memory-mapped files (the Arrow tables, the
    token file), which the kernel reclaims under pressure, and counts a child's inherited pages again."""

    def __init__(self):
        import threading

        import psutil

        self.process, self.peak, self.stop = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self.stop.wait(0.1):
            total = 0
            for proc in [self.process, *self.process.children(recursive=True)]:
                try:
                    with open(f"/proc/{proc.pid}/smaps_rollup") as rollup:
                        total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss_Anon:")) * 1024
                except (OSError, StopIteration):  # a child that just ended
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def measure(scale: int, mode: str, tokenizer_path: str, cache: str) -> dict:
    from datasets import concatenate_datasets, load_dataset

    from pipelines.backbones import load_tokenizer
    from pipelines.lm_data import ShuffledBlocks, StreamBlocks, token_file

    tokenizer = load_tokenizer(tokenizer_path)
    train = load_dataset(CORPUS, split="train").select_columns(["text"])  # (converting the parquet once: not timed)
    with PeakAnonymous() as anonymous:
        started = time.perf_counter()
        texts = concatenate_datasets([train] * scale)
        if mode == "streaming":
            texts = texts.to_iterable_dataset(num_shards=scale)
        tokens = token_file(texts, tokenizer, "text", masked=False, cache_dir=cache, split="train",
                            identity=f"gutenberg x{scale}" if mode == "streaming" else None)
        tokenized = time.perf_counter() - started
        # Blocks are views into the memory-mapped file: building them and reading them all costs no memory.
        stream, shuffled = StreamBlocks(tokens, rows=64, bptt=70), ShuffledBlocks(tokens, 128)
        read = sum(len(stream[i]["input_ids"]) for i in range(0, len(stream), 97))
    return {"scale": scale, "mode": mode, "tokens": len(tokens), "tokenize_seconds": round(tokenized, 1),
            "total_seconds": round(time.perf_counter() - started, 1), "stream_blocks": len(stream),
            "shuffled_blocks": len(shuffled), "sampled_tokens_read": read,
            # (tokenizing processes are children: the largest of them, or this process, whichever is larger)
            "peak_rss_mib": round(max(resource.getrusage(who).ru_maxrss for who in
                                      (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024),
            "peak_anonymous_mib": round(anonymous.peak / 2**20)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a tokenizer folder (e.g. a run's tokenizer stage)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--modes", nargs="+", default=["arrow", "streaming"], choices=["arrow", "streaming"])
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--one", nargs=3, metavar=("SCALE", "MODE", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1], args.tokenizer, args.one[2])))
        return 0
    rows = []
    for mode in args.modes:
        for scale in args.scales:
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "HF_DATASETS_CACHE": cache}
                done = subprocess.run([sys.executable, __file__, "--tokenizer", args.tokenizer, "--one", str(scale), mode,
                                       cache], env=env, capture_output=True, text=True, check=True,
                                      cwd=Path(__file__).resolve().parents[1])
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    print("\n| mode | corpus | tokens | tokenize + blocks (s) | s per 10M tokens | peak RSS (MiB) | peak anonymous (MiB) |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | gutenberg x{r['scale']} | {r['tokens'] / 1e6:.1f}M | {r['total_seconds']:.0f} "
              f"| {10e6 * r['total_seconds'] / r['tokens']:.1f} | {r['peak_rss_mib']:,} | {r['peak_anonymous_mib']:,} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
