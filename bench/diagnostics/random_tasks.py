"""The diagnostics' meta-batch: Omniglot 5-way 1-shot shapes (5 support and 75 query images a task), random
float64 pixels, seeded by the number of tasks so that every diagnostic sees the same batch."""
from __future__ import annotations

import torch

from metagrad.algorithms import Batch, TaskBatch


def meta_batch(tasks: int) -> TaskBatch:
    generator = torch.Generator().manual_seed(tasks)
    support = Batch(torch.rand(tasks, 5, 1, 28, 28, generator=generator, dtype=torch.float64),
                    torch.arange(5).repeat(tasks, 1))
    query = Batch(torch.rand(tasks, 75, 1, 28, 28, generator=generator, dtype=torch.float64),
                  torch.arange(5).repeat_interleave(15).repeat(tasks, 1))
    return TaskBatch(support, query)
