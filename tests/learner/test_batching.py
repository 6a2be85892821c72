import numpy as np
import torch
from torch_geometric.data import Batch, HeteroData

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.host_schema import host_schema
from tamiyo.contracts.random_unrolls import random_graphs
from tamiyo.policy.batching import collate


def to_heterodata(packed: PackedGraphs, i: int) -> HeteroData:
    one = packed.select(np.array([i]))
    data = HeteroData()
    for k, x in one.node_features.items():
        data[k].x = torch.from_numpy(x)
    for k, e in one.edge_index.items():
        data[k].edge_index = torch.from_numpy(e.astype(np.int64))
    return data


def assert_same_as_pyg(packed: PackedGraphs) -> None:
    ours = collate(packed)
    ref = Batch.from_data_list([to_heterodata(packed, i) for i in range(packed.num_graphs)])
    assert ours.num_graphs == ref.num_graphs
    for k in packed.node_features:
        assert torch.equal(ours.x[k], ref[k].x), k
        assert torch.equal(ours.batch[k], ref[k].batch), k
        assert torch.equal(ours.ptr[k], ref[k].ptr), k
    for k in packed.edge_index:
        assert ours.edge_index[k].dtype == torch.int64
        assert torch.equal(ours.edge_index[k], ref[k].edge_index), k


def test_collate_equals_pyg_batch_from_data_list():
    schema = host_schema(3, 3)
    rng = np.random.default_rng(0)
    packed = random_graphs(schema, 64, rng)
    packed.validate(schema)
    assert_same_as_pyg(packed)


def test_collate_handles_graphs_without_edges_and_selection_order():
    schema = host_schema(3, 3)
    rng = np.random.default_rng(1)
    packed = random_graphs(schema, 10, rng)
    # Graph 3 loses all its edges of every relation.
    empty = PackedGraphs.concat(
        [packed.select(np.arange(3)), packed.select(np.array([3])), packed.select(np.arange(4, 10))]
    )
    for key in empty.edge_index:
        counts = empty.edge_counts[key]
        start, n = int(counts[:3].sum()), int(counts[3])
        empty.edge_index[key] = np.delete(empty.edge_index[key], np.s_[start : start + n], axis=1)
        counts[3] = 0
    empty.validate(schema)
    assert_same_as_pyg(empty)
    assert_same_as_pyg(packed.select(np.array([9, 2, 2, 0])))


def test_single_node_graphs():
    from tamiyo.contracts.graph import single_graph

    graphs = PackedGraphs.concat([single_graph({"global": np.full((1, 4), i, np.float32)}, {}) for i in range(5)])
    out = collate(graphs)
    assert out.x["global"].shape == (5, 4)
    assert out.batch["global"].tolist() == [0, 1, 2, 3, 4]
    assert out.edge_index == {}
