import os

import torch

torch.set_default_dtype(torch.float32)
os.environ.setdefault("MPLBACKEND", "Agg")
