"""A plugin: the method `halfaux` and the dataset source `toy`."""
import numpy as np
import pandas as pd
import torch

from pmtrec.data.frames import RawFrames
from pmtrec.data.sources import register as register_source
from pmtrec.methods import LossWeighting, register


@register
class HalfAux(LossWeighting):
    """Main task weight 1, every auxiliary task `share`."""

    name = "halfaux"
    label = "Half-aux"
    colour = "#123456"
    order = 25
    tunable = {"share": (0.0, 1.0)}

    def __init__(self, task_names, share: float = 0.5):
        super().__init__(task_names)
        if not 0 <= share <= 1:
            raise ValueError(f"share must be in [0, 1], got {share!r}")
        self.share = float(share)

    def weights(self, ctx):
        w = torch.full((ctx.n_tasks,), self.share, device=ctx.losses.device)
        w[0] = 1.0
        return w


@register_source("toy", relations=("social",), options={"users": 120, "seed": 0})
def load(cfg):
    """Random users x items with friendships (users and seed from dataset.toy)."""
    opts = cfg["dataset"]["toy"]
    rng = np.random.default_rng(opts["seed"])
    n_users, n_items = int(opts["users"]), 80
    rows = [(u, i) for u in range(n_users) for i in rng.choice(n_items, 15, replace=False)]
    friends = rng.integers(0, n_users, size=(3 * n_users, 2))
    return RawFrames(name="toy", interactions=pd.DataFrame(rows, columns=["user", "item"]),
                     social=pd.DataFrame(friends, columns=["user", "friend"]))
