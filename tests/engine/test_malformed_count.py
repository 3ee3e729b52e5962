"""The evaluator's ``malformed_generations`` total (the coupled baseline's answers that did not parse, scored as
misses; the results page quotes it) is the sum over every rank's predictions, whatever the number of ranks. A stub
model marks sentences malformed by a rule, so the expected total is known; 2 ranks run as spawned gloo processes."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bridge_stg.data.dataset import make_sample
from bridge_stg.data.frames import FrameBudget
from bridge_stg.engine.distributed import DistContext
from bridge_stg.engine.evaluate import predict_split
from bridge_stg.engine.specs import DataSpec, EvalSpec, LoggingSpec, OptimSpec, RunSpec, TrainSpec
from bridge_stg.eval.simulate import simulate_vidstg
from bridge_stg.loss.criterion import CriterionConfig
from bridge_stg.model.config import BridgeSTGConfig

NUM_SENTENCES, BATCH = 7, 2  # odd, so the ranks get uneven batches and a short one


def is_malformed(sentence_id: int) -> bool:
    return sentence_id % 2 == 0  # sentences 0, 2, 4, 6: two on each rank at 2 ranks


class StubDataset:
    """Samples of simulated VidSTG records with blank frames (what predict_split reads: ids, frames, size)."""

    def __init__(self):
        self.records = simulate_vidstg((NUM_SENTENCES + 1) // 2, seed=5)[:NUM_SENTENCES]
        self.budget = FrameBudget(fps=1.0, max_frames=4)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        rec = self.records[i]
        return make_sample(rec, lambda ids: np.zeros((len(ids), rec.height, rec.width, 3), np.uint8), self.budget,
                           "stub", f"stub:{rec.sentence_id}")


class StubBatch:
    def __init__(self, samples):
        self.samples = samples

    def to(self, device):
        return self


class StubModel:
    """What the coupled baseline's predict returns: a span, one box, and whether the generation parsed."""

    def predict(self, batch):
        return [{"span_idx": (0, 1), "decoded_frames": np.zeros(1, np.int64),
                 "boxes_cxcywh01": np.array([[0.5, 0.5, 0.2, 0.2]], np.float32),
                 "malformed": is_malformed(s.sentence_id)} for s in batch.samples]


def spec() -> RunSpec:
    return RunSpec(run_dir=".", model=BridgeSTGConfig(), loss=CriterionConfig(), data=DataSpec(num_workers=0),
                   optim=OptimSpec(), train=TrainSpec(), eval=EvalSpec(batch_size=BATCH), logging=LoggingSpec())


def predict(rank: int, world: int) -> tuple[dict, list[int] | None]:
    counts: dict = {}
    tubes = predict_split(StubModel(), StubDataset(), StubBatch, spec(), DistContext(rank, world, 0,
                                                                                     torch.device("cpu")), counts)
    return counts, None if tubes is None else [t.sentence_id for t in tubes]


def _worker(rank: int, world: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results[rank] = predict(rank, world)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world", [1, 2])
def test_malformed_total_is_summed_over_every_rank(world):
    records = StubDataset().records
    # batches [0, 1] [2, 3] [4, 5] [6]: rank 0 predicts 0, 1, 4, 5 and rank 1 predicts 2, 3, 6 at 2 ranks, so each
    # rank has malformed sentences and a total taken from rank 0 alone would be wrong
    assert [r.sentence_id for r in records] == list(range(NUM_SENTENCES))
    expected = sum(is_malformed(r.sentence_id) for r in records)
    if world == 1:
        results = {0: predict(0, 1)}
    else:
        with mp.Manager() as manager:
            shared = manager.dict()
            mp.spawn(_worker, args=(world, free_port(), shared), nprocs=world)
            results = dict(shared)
    counts, ids = results[0]
    assert counts == {"malformed_generations": expected}
    assert ids == sorted(r.sentence_id for r in StubDataset().records)  # every sentence once, on rank 0
    for rank in range(1, world):
        assert results[rank] == ({}, None)
