"""OmniJet-alpha generative model (arXiv:2403.05618; omnijet_alpha gabbro/models/gpt_model.py) and its use as a
classification backbone (omnijet_alpha gabbro/models/backbone.py).

OmniJetGPT = common.blocks.transformer.GPT (token embedding, 3 post-LN causal blocks, width 256, 8 heads, FF 1024, ReLU,
no positional embedding) + a Linear next-token head over the vocabulary (num_codes + 2).

OmniJetBackbone wraps the GPT backbone (no head) for common.training.finetune: it tokenises each JetBatch on the fly with the
frozen tokeniser (so the fine-tuning harness can read raw jets with n_per_class subsets) and returns the hidden states
of the whole sequence [start, t1 ... tn, stop] with the causal mask kept on, as in OJ (gabbro/models/backbone.py:
no switch removes the causal mask).

Builders and loaders beside them: build_gpt, load_gpt (a pretraining run directory), backbone_fns (build / load of
the backbone for common.training.finetune).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.blocks.transformer import GPT
from common.training.checkpoint import load_trained
from common.training.config import load_config
from common.training.train_utils import autocast

from omnijet.tokens import START, stop_token
from omnijet.vqvae import load_tokenizer


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


def load_gpt(run_dir, device="cpu", which: str = "best") -> tuple[OmniJetGPT, dict]:
    """A trained GPT from an omnijet.pretrain run directory (<which>.pt, else checkpoint.pt) and its config."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    path = run_dir / f"{which}.pt"
    if not path.is_file():
        path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {which}.pt or checkpoint.pt (run omnijet.pretrain first)")
    ckpt = load_trained(path, "pretrained GPT")
    model = build_gpt(cfg["model"], int(ckpt["num_codes"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg


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
                    include_padding: bool = True) -> torch.Tensor:
    """Cross-entropy of the next token. include_padding=True (default) is the official OJ loss
    (gabbro/models/backbone.py nn.CrossEntropyLoss, no ignore_index): every B x T position counts, padded ones with
    target 0; False averages over real positions only."""
    ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().long(), reduction="none")
    if include_padding:
        return ce.mean()
    m = mask.flatten().to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp_min(1.0)


class OmniJetBackbone(nn.Module):
    """Generative backbone for classification: forward(batch: JetBatch) -> (h (B, N+2, D), mask (B, N+2)).

    The tokeniser is frozen and not part of the trainable parameters (it is held outside the module tree, so
    "scratch" re-initialisation and optimiser groups see only the GPT). `precision` is the GPT's context
    (common.training.train_utils.autocast): fp32 as OJ (Lightning's default precision, uhh-pd-ml/omnijet_alpha configs/trainer),
    also inside the harness's outer autocast; bf16 = bf16 autocast on CUDA."""

    def __init__(self, gpt: GPT, tokenizer: nn.Module, precision: str = "fp32"):
        super().__init__()
        autocast("cpu", precision)  # checks the value
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
            codes = tok.tokenize(x.float(), mask)
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
        with autocast(tokens.device, self.precision):
            h = self.gpt(tokens, mask)
        return h * mask.unsqueeze(-1).to(h.dtype), mask


def backbone_fns(cfg: dict):
    """(build, load) for common.training.finetune from a fine-tuning config: build() = a fresh GPT of the pretraining run's
    architecture (pretrain_dir) around the frozen tokeniser (tokenizer_dir); load(backbone) = the pretrained weights
    of the generative backbone (embedding + GPT blocks) without the next-token head, which OJ loads with
    strict=False (gabbro/models/backbone.py)."""
    tokenizer = load_tokenizer(cfg["tokenizer_dir"])
    pretrained, pre_cfg = load_gpt(cfg["pretrain_dir"])

    def build() -> OmniJetBackbone:
        return OmniJetBackbone(build_gpt(pre_cfg["model"], tokenizer.num_codes).backbone, tokenizer, cfg["precision"])

    def load(backbone: OmniJetBackbone) -> None:
        backbone.gpt.load_state_dict(pretrained.backbone.state_dict())

    return build, load
