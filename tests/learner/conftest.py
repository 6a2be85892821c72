import torch

# Small graphs: one thread avoids OpenMP spin-wait contention on shared CI cores.
torch.set_num_threads(1)
