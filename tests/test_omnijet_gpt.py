"""OmniJet-alpha token writer, GPT loss and sampling (tiny models, no data files)."""
import numpy as np
import pytest
import torch

from omnijet.model import OmniJetGPT, next_token_loss, shift_tokens
from omnijet.sampling import sample
from omnijet.tokens import (codes_to_sequences, load_split, save_npy, sequences_to_codes, stop_token, token_dtype,
                            vocab_size)

NUM_CODES = 30


def _random_jets(B=12, N=10, seed=0):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, N + 1, size=B)
    mask = np.arange(N)[None, :] < n[:, None]
    codes = np.where(mask, rng.integers(0, NUM_CODES, size=(B, N)), 0)
    return codes, mask


def test_token_ids_round_trip_through_writer(tmp_path):
    codes, mask = _random_jets()
    tokens, lengths = codes_to_sequences(codes, mask, NUM_CODES)
    assert tokens.dtype == np.int16 and token_dtype(70000) == np.int32
    assert (tokens[:, 0] == 0).all()
    assert (tokens[np.arange(len(tokens)), lengths - 1] == stop_token(NUM_CODES)).all()
    assert vocab_size(NUM_CODES) == NUM_CODES + 2 and tokens.max() == NUM_CODES + 1
    # OJ add_start_end_tokens example: codes (5, 0, 8191) of the 8192 model -> [0, 6, 1, 8192, 8193]
    t, n = codes_to_sequences(np.array([[5, 0, 8191]]), np.ones((1, 3), bool), 8192)
    assert t.tolist() == [[0, 6, 1, 8192, 8193]] and n.tolist() == [5]
    # atomic npy files and back
    for key, arr in {"tokens": tokens, "lengths": lengths, "labels": np.zeros(len(tokens), np.int64)}.items():
        save_npy(tmp_path / f"train_{key}.npy", arr)
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_split(tmp_path, "train")
    back, back_mask = sequences_to_codes(loaded["tokens"], NUM_CODES)
    N = codes.shape[1]
    assert np.array_equal(back_mask.numpy()[:, :N], mask) and not back_mask[:, N:].any()
    assert np.array_equal(back.numpy()[:, :N], codes)


def test_writer_rejects_left_padding():
    with pytest.raises(ValueError, match="real particles first"):
        codes_to_sequences(np.zeros((1, 3), int), np.array([[False, True, True]]), NUM_CODES)


def _tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return OmniJetGPT(vocab_size(NUM_CODES), dim=32, depth=2, num_heads=4, ff_hidden=64)


def test_gpt_loss_falls_and_padding_switch():
    codes, mask = _random_jets(B=32, N=8, seed=1)
    codes = np.where(mask, np.arange(8)[None, :] * 3 % NUM_CODES, 0)  # a learnable pattern
    tokens, lengths = map(torch.as_tensor, codes_to_sequences(codes, mask, NUM_CODES))
    tokens, lengths = tokens.long(), lengths.long()
    inp, tgt, m = shift_tokens(tokens, lengths, max_len=9)
    assert inp.shape == (32, 9) and (inp[:, 0] == 0).all()
    model = _tiny_gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = next_token_loss(model(inp, m), tgt, m)
        opt.zero_grad(), loss.backward(), opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    logits = model(inp, m)
    with_pad, without = next_token_loss(logits, tgt, m, True), next_token_loss(logits, tgt, m, False)
    assert not torch.isclose(with_pad, without)  # the switch changes which positions count


def test_padding_does_not_change_real_logits():
    model = _tiny_gpt().eval()
    tok = torch.randint(1, NUM_CODES + 1, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 4:] = False
    a = model(tok, mask)
    tok2 = tok.clone()
    tok2[0, 4:] = 0
    b = model(tok2, mask)
    assert torch.allclose(a[0, :4], b[0, :4], atol=1e-6)


def test_kv_cache_sampling_equals_full_recomputation():
    model = _tiny_gpt(3)
    for kw in ({}, {"temperature": 0.7, "top_k": 5}):
        a = sample(model, 24, 15, use_cache=True, generator=torch.Generator().manual_seed(11), **kw)
        b = sample(model, 24, 15, use_cache=False, generator=torch.Generator().manual_seed(11), **kw)
        assert torch.equal(a, b)
    c = sample(model, 24, 15, generator=torch.Generator().manual_seed(12))
    assert not torch.equal(a, c)


def test_top_k_one_is_greedy_and_never_start_token():
    model = _tiny_gpt(4)
    a = sample(model, 4, 10, top_k=1, generator=torch.Generator().manual_seed(0))
    b = sample(model, 4, 10, top_k=1, generator=torch.Generator().manual_seed(99))
    assert torch.equal(a, b)
    real = torch.cumsum((a == stop_token(NUM_CODES)).long(), 1) == 0
    assert (a[:, 1:][real[:, 1:]] != 0).all()


def test_generated_sequences_end_at_stop_token():
    model = _tiny_gpt(5)
    # bias the head towards the stop token so that every sequence ends within the budget
    with torch.no_grad():
        model.head.bias[stop_token(NUM_CODES)] += 4.0
    seq = sample(model, 64, 40, generator=torch.Generator().manual_seed(1))
    stop = stop_token(NUM_CODES)
    assert seq.shape == (64, 41) and (seq[:, 0] == 0).all()
    has_stop = (seq == stop).any(1)
    assert has_stop.all()
    first = (seq == stop).float().argmax(1)
    after = torch.arange(41)[None, :] > first[:, None]
    assert (seq[after] == 0).all() and ((seq == stop).sum(1) == 1).all()
    codes, mask = sequences_to_codes(seq, NUM_CODES)
    assert torch.equal(mask.sum(1), first - 1)
    assert (codes[mask] >= 0).all() and (codes[mask] < NUM_CODES).all()


def test_paper_configs_give_the_paper_parameter_counts():
    """omnijet_alpha notebook printouts: VQ-VAE ~0.80M + codebook 8192 x 4 (+ 8 affine); GPT 6.57M, backbone 4.46M."""
    import os

    from common.training.config import load_config

    from omnijet.model import build_gpt
    from omnijet.vqvae import build_tokenizer

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "omnijet/configs")
    vqvae = build_tokenizer(load_config(f"{root}/tokenizer.yaml")["model"])
    n_vq = sum(p.numel() for p in vqvae.vq.parameters())
    n_rest = sum(p.numel() for p in vqvae.parameters()) - n_vq
    assert n_vq == 8192 * 4 + 8 and 0.78e6 < n_rest < 0.82e6
    gpt = build_gpt(load_config(f"{root}/pretrain.yaml")["model"], num_codes=8192)
    assert gpt.vocab_size == 8194
    assert abs(sum(p.numel() for p in gpt.parameters()) - 6.57e6) < 0.01e6
    assert abs(sum(p.numel() for p in gpt.backbone.parameters()) - 4.46e6) < 0.01e6


def test_generated_sequences_decode_to_finite_particles():
    import os

    from common.training.config import load_config

    from omnijet.generate import decode_sequences
    from omnijet.jets import observables
    from omnijet.vqvae import build_tokenizer

    cfg = load_config(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "omnijet/configs/tokenizer.yaml"))["model"]
    cfg.update(hidden_dim=16, depth=1, num_heads=2)
    cfg["vq"] = dict(cfg["vq"], num_codes=NUM_CODES)
    torch.manual_seed(0)
    tokenizer = build_tokenizer(cfg).eval()
    model = _tiny_gpt(6)
    with torch.no_grad():
        model.head.bias[stop_token(NUM_CODES)] += 2.0
    seq = sample(model, 16, 12, generator=torch.Generator().manual_seed(2))
    x, mask = decode_sequences(seq, tokenizer)
    assert x.shape == (16, 12, 3) and torch.isfinite(x).all()
    assert torch.equal(mask, sequences_to_codes(seq, NUM_CODES)[1]) and (x[~mask] == 0).all()
    keep = mask.sum(1) >= 3
    obs = observables(x[keep].numpy(), mask[keep].numpy())
    assert all(np.isfinite(v).all() for k, v in obs.items() if k in ("pt", "mass", "nparticles"))
    assert (obs["mass"] >= 0).all()
