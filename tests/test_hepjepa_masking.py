"""HEP-JEPA context / target masks: contiguous blocks, per-jet draws, disjoint context, switches."""
import pytest
import torch

from hepjepa.masking import sample_masks


def _valid(counts, T=16):
    return torch.arange(T)[None, :] < torch.tensor(counts)[:, None]


def test_contiguous_targets_and_disjoint_context():
    torch.manual_seed(0)
    valid = _valid([16] * 64 + [10] * 64)
    context, targets = sample_masks(valid, num_targets=4, target_scale=(0.15, 0.2), context_scale=(0.85, 1.0))
    assert targets.shape == (4, 128, 16)
    n = valid.sum(1)
    for m in range(4):
        for b in range(128):
            idx = targets[m, b].nonzero().flatten()
            assert len(idx) == max(1, int(n[b] * 0.15)) or len(idx) == max(1, int(n[b] * 0.2))
            assert (idx[1:] - idx[:-1] == 1).all(), "target block is not contiguous"
            assert idx.max() < n[b]
    assert not (context & targets.any(0)).any(), "context overlaps a target"
    assert (context.sum(1) >= 1).all() and not (context & ~valid).any()
    # the context is one contiguous window of the non-target list
    remaining = valid & ~targets.any(0)
    for b in range(128):
        ranks = (remaining[b].cumsum(0) - 1)[context[b]]
        assert (ranks[1:] - ranks[:-1] == 1).all()


def test_masks_are_drawn_per_jet():
    torch.manual_seed(1)
    valid = _valid([16] * 32)
    context, targets = sample_masks(valid)
    distinct = {tuple(targets[:, b].flatten().tolist()) for b in range(32)}
    assert len(distinct) > 10, "every jet got the same mask"
    context, targets = sample_masks(valid, per_jet=False)
    assert all(torch.equal(targets[:, 0], targets[:, b]) for b in range(32))
    assert all(torch.equal(context[0], context[b]) for b in range(32))


def test_random_strategy_and_num_targets():
    torch.manual_seed(2)
    valid = _valid([16] * 64)
    context, targets = sample_masks(valid, num_targets=2, target_scale=(0.2, 0.2), strategy="random")
    assert targets.shape[0] == 2
    assert (targets.sum(-1) == 3).all()
    gaps = [(targets[0, b].nonzero().flatten().diff() > 1).any() for b in range(64)]
    assert sum(bool(g) for g in gaps) > 20, "random masking looks contiguous"
    assert not (context & targets.any(0)).any()
    with pytest.raises(ValueError, match="strategy"):
        sample_masks(valid, strategy="blocky")


def test_tiny_jets_never_reuse_a_target_as_context():
    valid = _valid([1, 2, 3, 0])
    for _ in range(20):
        context, targets = sample_masks(valid)
        covered = targets.any(0)
        assert not (context & covered).any()
        # a jet gets no context only when its targets cover all of its patches (the model drops it from the loss)
        assert ((context.any(1)) | (covered == valid).all(1)).all()
        assert not context[0].any()  # one patch: always a target
        assert not context[3].any() and not targets[:, 3].any()
