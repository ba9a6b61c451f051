"""The reference's toy SMP protocol: Embedding 3×4 → LSTMCell 4→4 → 2 × Linear 4×4 → frozen Linear 4→3.

Target 0.8, Adam on the weights; the frozen last layer is neither trained nor pruned. ``run_toy`` drives the same hooks
the training recipe calls (attach, param_groups, before_step, extra_loss, after_step) and returns the sparsity per step.
Used by tests/test_smp_recipe.py and benchmarks/smp_dynamics.py.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparsecap_engine.pruning.methods import SupermaskMethod


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(3, 4)
        self.cell = nn.LSTMCell(4, 4)
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)
        self.head.requires_grad_(False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = c = torch.zeros(tokens.shape[0], 4)
        for t in range(tokens.shape[1]):
            h, c = self.cell(self.embed(tokens[:, t]), (h, c))
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(h)))))


def run_toy(steps: int = 200, target: float = 0.8, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Train the toy with SMP for ``steps`` Adam steps (lr 1e-2); the label is the sequence's majority token."""
    torch.manual_seed(seed)
    model = Toy()
    method = SupermaskMethod(target, total_steps=steps, freeze=["head."], **options)
    method.attach(model)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}, *method.param_groups()]
    opt = torch.optim.Adam(groups, lr=1e-2)
    gen = torch.Generator().manual_seed(seed + 1)
    trace, logit_means = [], []
    for step in range(steps):
        tokens = torch.randint(0, 3, (32, 5), generator=gen)
        labels = torch.mode(tokens, dim=1).values
        method.before_step(step)
        loss = nn.functional.cross_entropy(model(tokens), labels)
        extra = method.extra_loss(step)
        total = loss + extra if extra is not None else loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        method.after_step(step)
        trace.append(method.sparsity())
        logit_means.append(float(torch.cat([t.detach().reshape(-1) for t in method.logits()]).mean()))
    method.finalize()
    masks = method.masks.hard()
    numel = sum(m.numel() for m in masks.values())
    return {"sparsity": trace[-1], "trace": trace, "logit_mean": logit_means, "numel": numel,
            "frozen_dense": "head.weight" not in masks, "method": method}
