"""Deterministic sharding: ``--shard i/N`` gives worker ``i`` of ``N`` one contiguous block.

Every step of the instruction pipeline (building, teacher synthesis, reading the released set)
takes ``--shard i/N`` and works on block ``i`` of its ordered inputs only, so a SLURM array
(``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``) or any scheduler fans it out with no
code change. Blocks are contiguous and in order, so the JSON-lines outputs of shards
``0..N-1`` concatenated are byte for byte the single-machine output.

>>> parse_shard("1/4"), shard_range(10, (1, 4)), shard_range(10, (3, 4))
((1, 4), range(2, 5), range(7, 10))
>>> [len(shard_range(10, (i, 4))) for i in range(4)]
[2, 3, 2, 3]
"""

from __future__ import annotations

import argparse


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``; ``None`` -> ``(0, 1)`` (everything)."""
    if not text:
        return (0, 1)
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like 0/4, not {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= i < N")
    return (index, count)


def shard_range(total: int, shard: tuple[int, int]) -> range:
    """Indices ``0..total-1`` of block ``i`` of ``N`` (block sizes differ by at most one)."""
    index, count = shard
    return range(total * index // count, total * (index + 1) // count)


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="i/N",
                        help="work on block i of N of the inputs (0-based; SLURM: "
                             "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); the JSON-lines "
                             "outputs of shards 0..N-1 concatenate to the unsharded output")
