"""Fast collation: `PackedGraphs` (columnar, local edge indices) -> one batched heterogeneous graph.

Everything is offset arithmetic on whole arrays; there is no per-graph Python
object.  The result holds the same tensors PyG's ``Batch.from_data_list``
builds from one ``HeteroData`` per graph (``x``, ``batch``, ``ptr`` per node
type, global ``edge_index`` per relation), which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tamiyo.contracts.graph import PackedGraphs, RelationKey


@dataclass
class GraphBatch:
    """G graphs as one disjoint-union graph, ready for message passing."""

    x: dict[str, torch.Tensor]  # type -> float32 [N_t, F_t]
    batch: dict[str, torch.Tensor]  # type -> int64 [N_t], graph id of every node
    ptr: dict[str, torch.Tensor]  # type -> int64 [G + 1], node offsets per graph
    edge_index: dict[RelationKey, torch.Tensor]  # relation -> int64 [2, E], global indices
    num_graphs: int

    def to(self, device: torch.device | str) -> GraphBatch:
        return GraphBatch(
            x={k: v.to(device, non_blocking=True) for k, v in self.x.items()},
            batch={k: v.to(device, non_blocking=True) for k, v in self.batch.items()},
            ptr={k: v.to(device, non_blocking=True) for k, v in self.ptr.items()},
            edge_index={k: v.to(device, non_blocking=True) for k, v in self.edge_index.items()},
            num_graphs=self.num_graphs,
        )


def _offsets(counts: np.ndarray) -> np.ndarray:
    """int64 [G + 1]: start of every graph's rows, plus the total."""
    ptr = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr


def collate(packed: PackedGraphs, device: torch.device | str = "cpu") -> GraphBatch:
    """Batch the G graphs of ``packed`` into one graph on ``device``."""
    g = packed.num_graphs
    graph_ids = np.arange(g, dtype=np.int64)
    ptrs = {k: _offsets(c) for k, c in packed.node_counts.items()}
    x: dict[str, torch.Tensor] = {}
    batch: dict[str, torch.Tensor] = {}
    ptr: dict[str, torch.Tensor] = {}
    for k, feats in packed.node_features.items():
        # Decoded graphs are read-only views of the message bytes; torch needs writable memory.
        x[k] = torch.from_numpy(np.require(feats, np.float32, ["C_CONTIGUOUS", "WRITEABLE"]))
        batch[k] = torch.from_numpy(np.repeat(graph_ids, packed.node_counts[k]))
        ptr[k] = torch.from_numpy(ptrs[k])
    edge_index: dict[RelationKey, torch.Tensor] = {}
    for rel, local in packed.edge_index.items():
        src, _, dst = rel
        # Each edge is shifted by where its graph's nodes start in the stacked arrays.
        owner = np.repeat(graph_ids, packed.edge_counts[rel])
        shift = np.stack([ptrs[src][:-1][owner], ptrs[dst][:-1][owner]])
        edge_index[rel] = torch.from_numpy(local.astype(np.int64) + shift)
    out = GraphBatch(x=x, batch=batch, ptr=ptr, edge_index=edge_index, num_graphs=g)
    return out if torch.device(device).type == "cpu" else out.to(device)
