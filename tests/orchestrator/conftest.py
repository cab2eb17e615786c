import torch

# The machine has 2 noisy cores; tiny LSTMs train faster without intra-op thread contention.
torch.set_num_threads(1)
