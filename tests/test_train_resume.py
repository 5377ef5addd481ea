"""Kill-and-resume: K steps, checkpoint, fresh objects, K more steps == 2K straight steps, bit for bit on CPU
(parameters, optimiser moments, data order across an epoch boundary, dropout and other torch/numpy/python RNG draws)."""
import random

import numpy as np
import pytest
import torch
from test_train_utils import FakeJetLoader, TinyNet, loss_fn

from common.training.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.training.schedules import build_scheduler
from common.training.train_utils import build_optimizer, clip_and_step, seed_everything

SCHED = {"kind": "warmup_cosine", "warmup_steps": 3, "total_steps": 20, "start_factor": 0.1, "min_factor": 0.01}


def _fresh(seed):
    """Everything a run builds at start-up (a different seed for the 'resumed' run proves the checkpoint wins)."""
    seed_everything(seed)
    model = TinyNet(dropout=0.3)
    opt = build_optimizer(model, {"lr": 1e-2, "weight_decay": 0.01})
    sched = build_scheduler(opt, SCHED)
    it = ResumableLoader(FakeJetLoader(n_jets=40, batch_size=8, seed=7))  # 5 batches per epoch
    return model, opt, sched, it


def _train(model, opt, sched, it, n_steps, seen):
    for _ in range(n_steps):
        batch = next(it)
        seen.append(batch.x.sum().item())
        # extra randomness of the kind masking code uses: torch, numpy and python RNGs
        noise = torch.rand(()) * 1e-3 + np.random.rand() * 1e-3 + random.random() * 1e-3
        loss = loss_fn(model, batch) + noise
        loss.backward()
        clip_and_step(model, opt, sched, max_norm=1.0)


@pytest.mark.parametrize("k", [7, 5])  # mid-epoch and exactly at an epoch boundary
def test_resume_is_bitwise_identical(tmp_path, k):
    model_s, opt_s, sched_s, it_s = _fresh(0)
    seen_straight = []
    _train(model_s, opt_s, sched_s, it_s, 2 * k, seen_straight)

    model, opt, sched, it = _fresh(0)
    seen = []
    _train(model, opt, sched, it, k, seen)
    save_checkpoint(tmp_path / "checkpoint.pt", make_state(model=model, optimizer=opt, scheduler=sched, step=k,
                                                           config={"x": 1}, loader=it))
    del model, opt, sched, it  # "kill"

    model, opt, sched, it = _fresh(123)
    torch.rand(17), np.random.rand(3), random.random()  # a new process would be in some other RNG state
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    step = restore_state(ckpt, model=model, optimizer=opt, scheduler=sched, loader=it)
    assert step == k and ckpt["config"] == {"x": 1}
    _train(model, opt, sched, it, k, seen)

    assert seen == seen_straight  # same data order across the resume (and the epoch boundary)
    for (n, a), b in zip(model.state_dict().items(), model_s.state_dict().values()):
        assert torch.equal(a, b), n
    for sa, sb in zip(opt.state.values(), opt_s.state.values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert sched.get_last_lr() == sched_s.get_last_lr()
    assert it.state_dict() == it_s.state_dict()


def test_resume_detects_missing_rng_restore(tmp_path):
    """Guard that the test above can fail: resuming without restoring the RNG changes the dropout masks."""
    model, opt, sched, it = _fresh(0)
    _train(model, opt, sched, it, 6, [])
    ref = [p.clone() for p in model.parameters()]

    model, opt, sched, it = _fresh(0)
    _train(model, opt, sched, it, 3, [])
    save_checkpoint(tmp_path / "c.pt", make_state(model=model, optimizer=opt, scheduler=sched, step=3, loader=it))
    model, opt, sched, it = _fresh(5)
    restore_state(load_checkpoint(tmp_path / "c.pt"), model=model, optimizer=opt, scheduler=sched, loader=it, rng=False)
    _train(model, opt, sched, it, 3, [])
    assert not all(torch.equal(a, b) for a, b in zip(ref, model.parameters()))


def test_checkpoint_atomic_and_corrupt_file(tmp_path):
    path = tmp_path / "sub" / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    assert path.exists() and not path.with_name("checkpoint.pt.tmp").exists()
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="checkpoint.pt: cannot read the checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_checkpoint(tmp_path / "nothere.pt")
