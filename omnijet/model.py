"""OmniJet-alpha generative model (arXiv:2403.05618; omnijet_alpha gabbro/models/gpt_model.py) and its use as a
classification backbone (omnijet_alpha gabbro/models/backbone.py).

OmniJetGPT = common.transformer.GPT (token embedding, 3 post-LN causal blocks, width 256, 8 heads, FF 1024, ReLU,
no positional embedding) + a Linear next-token head over the vocabulary (num_codes + 2).

OmniJetBackbone wraps the GPT backbone (no head) for common.finetune: it tokenises each JetBatch on the fly with the
frozen tokeniser (so the fine-tuning harness can read raw jets with n_per_class subsets) and returns the hidden states
of the whole sequence [start, t1 ... tn, stop] with the causal mask kept on, as in OJ (gabbro/models/backbone.py:
no switch removes the causal mask).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.train_utils import autocast
from common.transformer import GPT
from omnijet.tokenize_dataset import START, stop_token

PRECISIONS = ("fp32", "bf16")


def gpt_precision(device, precision: str, key: str = "precision"):
    """The context the GPT runs in: "fp32" (OJ trains the generative and classification models in fp32, Lightning's
    default precision in uhh-pd-ml/omnijet_alpha configs/trainer) switches any outer autocast off; "bf16" is bf16
    autocast on CUDA (common.train_utils.autocast). `key` names the config key in the error."""
    if precision not in PRECISIONS:
        raise ValueError(f"config: {key} = {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16":
        return autocast(device)
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


class OmniJetGPT(nn.Module):
    """GPT backbone + next-token head: forward(tokens (B,T), mask (B,T)) -> logits (B,T,V)."""

    def __init__(self, vocab_size: int, dim: int = 256, depth: int = 3, num_heads: int = 8, ff_hidden: int = 1024,
                 attention_dropout: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.backbone = GPT(dim, depth, num_heads, ff_hidden, vocab_size, dropout=attention_dropout)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(tokens, mask))


def build_gpt(model_cfg: dict, num_codes: int) -> OmniJetGPT:
    return OmniJetGPT(num_codes + 2, model_cfg["dim"], model_cfg["depth"], model_cfg["num_heads"],
                      model_cfg["ff_hidden"], model_cfg["attention_dropout"])


def shift_tokens(tokens: torch.Tensor, lengths: torch.Tensor, max_len: int):
    """Inputs [start, t1..tn] and targets [t1..tn, stop], clipped to max_len, with the input mask (OJ
    gabbro/models/backbone.py).

    tokens (B, L) zero-padded sequences with lengths (B,) including start and stop."""
    inp = tokens[:, :-1][:, :max_len]
    tgt = tokens[:, 1:][:, :max_len]
    pos = torch.arange(inp.shape[1], device=tokens.device)
    mask = pos[None, :] < (lengths[:, None] - 1)
    return inp, tgt, mask


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                    include_padding: bool = False) -> torch.Tensor:
    """Cross-entropy of the next token. include_padding=True is the original OJ loss (gabbro/models/backbone.py, no
    ignore_index): every
    B x T position counts, padded ones with target 0; the default averages over real positions only."""
    ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().long(), reduction="none")
    if include_padding:
        return ce.mean()
    m = mask.flatten().to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp_min(1.0)


class OmniJetBackbone(nn.Module):
    """Generative backbone for classification: forward(batch: JetBatch) -> (h (B, N+2, D), mask (B, N+2)).

    The tokeniser is frozen and not part of the trainable parameters (it is held outside the module tree, so
    "scratch" re-initialisation and optimiser groups see only the GPT)."""

    def __init__(self, gpt: GPT, tokenizer: nn.Module, precision: str = "fp32"):
        super().__init__()
        gpt_precision("cpu", precision)  # checks the value
        self.gpt = gpt
        self.dim = gpt.dim
        self.precision = precision
        self._tokenizer = [tokenizer.eval().requires_grad_(False)]  # list: not registered as a submodule

    @torch.no_grad()
    def tokenize(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self._tokenizer[0]
        tok.to(x.device)
        # fp32 with autocast off, whatever context the harness runs in: the pretraining tokens were written in fp32
        # (omnijet.tokenize_dataset), and a bf16 encoder moves latents across code boundaries
        with torch.autocast(device_type=x.device.type, enabled=False):
            codes = tok.encode(x.float(), mask)
        B, N = mask.shape
        n = mask.sum(1)
        tokens = torch.zeros(B, N + 2, dtype=torch.long, device=x.device)
        tokens[:, 1:N + 1] = torch.where(mask, codes + 1, torch.zeros_like(codes))
        tokens[torch.arange(B, device=x.device), n + 1] = stop_token(tok.num_codes)
        tokens[:, 0] = START
        seq_mask = torch.arange(N + 2, device=x.device)[None, :] < (n[:, None] + 2)
        return tokens, seq_mask

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, mask = self.tokenize(batch.x, batch.mask)
        with gpt_precision(tokens.device, self.precision):
            h = self.gpt(tokens, mask)
        return h * mask.unsqueeze(-1).to(h.dtype), mask
