"""Learner micro-benchmarks; prints one JSON object.

    python bench/learner.py [--device cpu|cuda] [--threads N]

Keys: vtrace_20x128_us, batch_collation_ratio_vs_pyg (PyG Batch.from_data_list
time / ours, 256 host-sim graphs), ppo_minibatch_update_ms (minibatch 32 of
host-sim graphs, forward + backward + Adam step), impala_step_ms (a 128 x 20
batch, batching included).  The data are real host-sim unrolls (random controller).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch_geometric.data import Batch, HeteroData

from tamiyo.contracts.env_schemas import env_schema
from tamiyo.contracts.graph import PackedGraphs
from tamiyo.learner.impala import ImpalaConfig, ImpalaLearner
from tamiyo.learner.ppo import PPOConfig, PPOLearner
from tamiyo.learner.vtrace import vtrace
from tamiyo.policy.batching import collate
from tamiyo.policy.model import TamiyoGNN
from tamiyo.producers.sample_unrolls import host_sim_unrolls


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2, sync: bool = False) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bench_vtrace(device: torch.device, sync: bool) -> float:
    g = torch.Generator().manual_seed(0)
    t, b = 20, 128
    args = [torch.randn(t, b, generator=g).to(device) for _ in range(5)]
    boot = torch.randn(b, generator=g).to(device)
    behaviour, target, rewards, discounts, values = args
    discounts = discounts.sigmoid()
    return timed(lambda: vtrace(behaviour, target, rewards, discounts, values, boot), 200, 20, sync) * 1e6


def bench_collation(device: torch.device) -> dict[str, float]:
    graphs = PackedGraphs.concat([u.graphs for u in host_sim_unrolls(13, length=20)])
    packed = graphs.select(np.arange(256))
    data_list = []
    for i in range(256):
        one = packed.select(np.array([i]))
        d = HeteroData()
        for k, x in one.node_features.items():
            d[k].x = torch.from_numpy(x)
        for k, e in one.edge_index.items():
            d[k].edge_index = torch.from_numpy(e.astype(np.int64))
        data_list.append(d)
    pyg = timed(lambda: Batch.from_data_list(data_list), 10)
    ours = timed(lambda: collate(packed), 50)
    return {"pyg_ms": pyg * 1e3, "ours_ms": ours * 1e3, "ratio": pyg / ours}


def bench_ppo(device: torch.device) -> dict[str, float]:
    schema = env_schema("host-sim")
    unrolls = host_sim_unrolls(16, length=32)  # 512 samples = 16 minibatches of 32
    torch.manual_seed(0)
    learner = PPOLearner(TamiyoGNN(schema), PPOConfig(update_epochs=1, target_kl=None), device)
    seconds = timed(lambda: learner.update(unrolls), 3, 1)
    return {"update_ms": seconds * 1e3, "minibatch_ms": seconds * 1e3 / 16}


def bench_impala(device: torch.device) -> float:
    schema = env_schema("host-sim")
    unrolls = host_sim_unrolls(128, length=20)
    torch.manual_seed(0)
    learner = ImpalaLearner(TamiyoGNN(schema), ImpalaConfig(), device)
    return timed(lambda: learner.step(unrolls), 5, 1) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = device.type == "cuda"
    collation = bench_collation(device)
    ppo = bench_ppo(device)
    result = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "vtrace_20x128_us": round(bench_vtrace(device, sync), 1),
        "batch_collation_ratio_vs_pyg": round(collation["ratio"], 1),
        "batch_collation_ours_ms": round(collation["ours_ms"], 3),
        "batch_collation_pyg_ms": round(collation["pyg_ms"], 2),
        "ppo_minibatch_update_ms": round(ppo["minibatch_ms"], 2),
        "ppo_update_512_samples_ms": round(ppo["update_ms"], 1),
        "impala_step_ms": round(bench_impala(device), 1),
        "graphs": "host-sim (random controller): 1 global, 4 layers, 3 slots, 3 blueprints, 14 relations",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
