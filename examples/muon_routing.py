"""Route a small transformer's parameters between Muon and AdamW, print the table, and train a few steps.

    python examples/muon_routing.py
"""

from __future__ import annotations

import torch
from torch import nn

import ravine


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, num_heads=2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(h)


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 64, d: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.Sequential(*(Block(d) for _ in range(layers)))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.embed(tokens))))


def main() -> None:
    torch.manual_seed(0)
    model = TinyGPT()
    groups = ravine.muon_param_groups(model, lr=0.02, adam_lr=3e-3, overrides={"blocks.0.mlp.*": "adamw"})
    print(groups.table())
    optimizer = ravine.MuonWithAuxAdam(groups)
    tokens = torch.randint(0, 64, (8, 17))
    for step in range(30):
        optimizer.zero_grad()
        logits = model(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 64), tokens[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == 29:
            print(f"step {step:2d}  loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
