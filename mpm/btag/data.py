"""BTag jets (Zenodo 13350327, read by common.data.btag) as inputs of a JetClass-pretrained MPMv2 encoder, for the
out-of-domain tasks of arXiv:2409.12589 (flavour tagging, track origin, secondary-vertex finding).

The BTag tracks carry the 7 continuous features MPMv2 uses on JetClass (pT, deta, dphi, lifetime-signed d0, d0err,
z0, z0err; mm and GeV) and the same 8-class particle ID (common.data.btag.particle_class). jetssl applies the
quantile transformer fitted on JetClass (resources/cst_quant.joblib, the collate_fn of configs/datamodule/btag.yaml,
src/datamodules/preprocessing.py batch_preprocess) to them unchanged. Here the transformer is the one of the
pretraining run's own data config (common.data.datasets.mpmv2_quantiles), so the encoder sees the tracks on the scale it was
trained on, and the columns are reordered to the kit's MPMv2 order (common.data.features.MPMV2_NAMES).

`load_btag_split` reads a split into arrays: x (quantile-normalised), mask, p4, jet (JetBatch order), label
(flavour: 0 light, 1 c, 2 b), pid, and the per-track targets track_type and vtx_id; common.data.array_loader.ArrayLoader
serves them (with the MPMv2 per-batch step) as JetBatch (label = flavour), or as (JetBatch, per-track target) for
the per-track tasks.
"""
from __future__ import annotations

import numpy as np

from common.data.btag import read_split, subset_index
from common.data.datasets import mpmv2_quantiles
from common.data.features import MPMV2_PID_NAMES, DataError

# BTag csts columns (pT, deta, dphi, d0, d0err, z0, z0err; jetssl scripts/make_shlomi.py) -> the kit's MPMv2 order
# (pt, deta, dphi, d0, z0, d0err, z0err; common.data.features.MPMV2_NAMES)
BTAG_TO_MPMV2 = (0, 1, 2, 3, 5, 4, 6)
TARGETS = ("track_type", "vtx_id")
FLAVOURS = ("light", "c", "b")  # labels 0, 1, 2 (make_shlomi.py)


def mpmv2_inputs(raw: dict, quantiles) -> dict[str, np.ndarray]:
    """common.data.btag arrays -> the arrays of a JetBatch with MPMv2 inputs, plus track_type and vtx_id."""
    mask = raw["mask"].astype(bool)
    pid = raw["csts_id"].astype(np.int64)
    if (pid[mask] < 0).any() or (pid[mask] >= len(MPMV2_PID_NAMES)).any():
        raise DataError(f"BTag csts_id holds values outside the 8-class ID 0..{len(MPMV2_PID_NAMES) - 1}")
    csts = raw["csts"].astype(np.float64)
    x = np.zeros(csts.shape, np.float32)
    if mask.any():
        x[mask] = quantiles.transform(csts[mask][:, BTAG_TO_MPMV2])
    jets = raw["jets"].astype(np.float64)  # jet_pt, jet_eta, jet_phi, jet_M, n_trks
    pt, eta, phi = csts[..., 0], csts[..., 1] + jets[:, 1:2], csts[..., 2] + jets[:, 2:3]
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1) * mask[..., None]
    energy = np.hypot(jets[:, 0] * np.cosh(jets[:, 1]), jets[:, 3])
    jet = np.stack([jets[:, 0], jets[:, 1], jets[:, 2], energy, jets[:, 3], mask.sum(1)], 1)  # common.data.batch order
    return {"x": x, "mask": mask, "p4": p4.astype(np.float32), "jet": jet.astype(np.float32),
            "label": raw["labels"].astype(np.int64), "pid": np.where(mask, pid, 0),
            "track_type": raw["track_type"].astype(np.int64), "vtx_id": raw["vtx_id"].astype(np.int64)}


def load_btag_split(data_cfg: dict, split: str, quantiles, max_jets: int | None = None) -> dict[str, np.ndarray]:
    """Every file of a split (common.data.btag.read_split), concatenated, as mpmv2_inputs; the first max_jets jets."""
    return mpmv2_inputs(read_split(data_cfg, split, max_jets), quantiles)


def pretraining_quantiles(pcfg: dict):
    """The quantile transformer of the pretraining run's data (fitted on its training split, cached there)."""
    if pcfg["data"]["features"] != "mpmv2":
        raise ValueError(f"the BTag tasks need an MPMv2 backbone (data.features mpmv2); the pretraining config has "
                         f"data.features = {pcfg['data']['features']!r}")
    return mpmv2_quantiles(pcfg["data"])


def subset(arrays: dict, n: int | None, seed: int, where: str) -> dict:
    """n jets drawn without replacement (seeded, common.data.btag.subset_index); all of them for n = None."""
    if n is None:
        return arrays
    idx = subset_index(len(arrays["label"]), n, seed, where)
    return {k: v[idx] for k, v in arrays.items()}
