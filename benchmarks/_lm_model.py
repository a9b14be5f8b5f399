"""A small byte-level causal transformer trained on CPython's help topics.

Used by ``benchmarks/lm_layerwise.py`` (not part of the package). The text is
``pydoc_data.topics`` (the ``help()`` topics shipped with CPython, ~465 kB),
topics joined in sorted key order; the last 10% of the bytes are held out for
perplexity. Trained weights are cached under ``~/.cache/chita_opt/lm`` keyed
by a hash of the configuration, so the benchmark trains once per machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

CACHE = Path(os.environ.get("CHITA_OPT_CACHE", Path.home() / ".cache" / "chita_opt")) / "lm"


@dataclass(frozen=True)
class Config:
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    context: int = 128
    steps: int = 400
    batch: int = 16
    lr: float = 3e-3
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


SMOKE = Config(d_model=32, n_layers=1, n_heads=2, d_ff=64, context=64, steps=60, batch=8)


class Block(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        # separate q/k/v projections so that each is one prunable Linear
        self.q = nn.Linear(c.d_model, c.d_model)
        self.k = nn.Linear(c.d_model, c.d_model)
        self.v = nn.Linear(c.d_model, c.d_model)
        self.o = nn.Linear(c.d_model, c.d_model)
        self.fc1 = nn.Linear(c.d_model, c.d_ff)
        self.fc2 = nn.Linear(c.d_ff, c.d_model)
        self.n_heads = c.n_heads

    def forward(self, x):
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (f(h).view(b, t, self.n_heads, -1).transpose(1, 2)
                   for f in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ByteLM(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.emb = nn.Embedding(256, c.d_model)
        self.pos = nn.Embedding(c.context, c.d_model)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln = nn.LayerNorm(c.d_model)
        self.lm_head = nn.Linear(c.d_model, 256, bias=False)

    def forward(self, ids):
        x = self.emb(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for blk in self.blocks:
            x = blk(x)
        return self.lm_head(self.ln(x))


def corpus() -> tuple[torch.Tensor, torch.Tensor]:
    """(train bytes, held-out bytes) as uint8 tensors: the last 10% are held out."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    data = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    cut = int(0.9 * data.numel())
    return data[:cut].long(), data[cut:].long()


def windows(data: torch.Tensor, context: int, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """``n`` random windows (or all non-overlapping ones) of ``context + 1`` bytes."""
    if n is None:
        m = (data.numel() - 1) // context
        return torch.stack([data[i * context : i * context + context + 1] for i in range(m)])
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, data.numel() - context - 1, (n,), generator=g)
    return torch.stack([data[s : s + context + 1] for s in starts])


@torch.no_grad()
def perplexity(model: nn.Module, held_out: torch.Tensor, context: int, batch: int = 64) -> float:
    model.eval()
    w = windows(held_out, context)
    nll, count = 0.0, 0
    for i in range(0, w.shape[0], batch):
        x = w[i : i + batch]
        logits = model(x[:, :-1])
        nll += F.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1),
                               reduction="sum").item()
        count += x[:, 1:].numel()
    return math.exp(nll / count)


def trained_model(c: Config, log=print) -> ByteLM:
    """The model for ``c``: from the cache, or trained now (AdamW, cosine decay) and cached."""
    torch.manual_seed(c.seed)
    model = ByteLM(c)
    path = CACHE / f"bytelm-{c.key()}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu"))
        return model.eval()
    train, held = corpus()
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=c.steps,
                                                pct_start=0.05)
    g = torch.Generator().manual_seed(c.seed)
    t0 = time.perf_counter()
    model.train()
    for step in range(c.steps):
        starts = torch.randint(0, train.numel() - c.context - 1, (c.batch,), generator=g)
        x = torch.stack([train[s : s + c.context + 1] for s in starts])
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, 256), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step == c.steps - 1:
            elapsed = time.perf_counter() - t0
            log(f"  train step {step:5d}  loss {loss.item():.3f}  {elapsed:6.1f} s")
    model.eval()
    log(f"  trained in {time.perf_counter() - t0:.0f} s; held-out ppl "
        f"{perplexity(model, held, c.context):.3f}; cached at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model
