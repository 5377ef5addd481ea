"""Token-quality study of OmniJet-alpha (arXiv:2403.05618; OJ scripts/evaluate_tokenization_ckpt.py): how well do jets
survive tokenize -> decode?

    python -m omnijet.token_quality --config omnijet/configs/token_quality.yaml --out runs/omnijet/token_quality \
        runs_dir=runs/omnijet

For every tokeniser run listed in the config (conditional VQ-VAE with 512 / 2048 / 8192 codes, the unconditional
MLP VQ-VAE, the binned grid) the test jets are tokenised and reconstructed, and we measure (OJ
`evaluate_tokenization_ckpt.py` protocol, jets with >= 3 constituents):
  - particle resolution: std of (reco - original) for pT [GeV], eta_rel and phi_rel (particles stay in pT order, so
    particle i of the reconstruction is compared with particle i of the original);
  - jet resolution: std of (reco - original) for jet mass and pT [GeV], tau21 and tau32 (massless constituents);
  - codebook utilisation: distinct codes used by the test particles / codebook size.
  - optionally (classifier.enabled) the test accuracy of a DeepSets classifier trained on the original constituents
    and on the constituents reconstructed by each tokeniser (omnijet/deepsets.py; OJ classification-on-tokens study).
Writes metrics.json (one row per tokeniser run with its training seed, so that runs of one tokeniser with several
seeds become the per-seed values of one table row; plus an "original" row with the classifier accuracy), resolution.png
(overlaid reco - original histograms) and done.json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.cli import cli
from common.data.datasets import load_arrays
from common.results.plots import save_figure
from common.training.config import load_config
from common.training.train_utils import mark_done, start_run, write_json

from omnijet.deepsets import train_and_score
from omnijet.jets import observables, particles
from omnijet.vqvae import load_tokenizer

TOKENISATION_NAMES = {"conditional": "conditional_vqvae", "mlp": "unconditional_vqvae", "binned": "binned"}
# (quantity, x-axis label, histogram range): the ranges of the OJ comparison script where it gives them
PLOT_PANELS = [
    ("particle_pt", r"particle $p_T^{reco} - p_T$ [GeV]", (-1.0, 1.0)),
    ("particle_eta_rel", r"$\eta^{rel,reco} - \eta^{rel}$", (-0.05, 0.05)),
    ("particle_phi_rel", r"$\phi^{rel,reco} - \phi^{rel}$", (-0.05, 0.05)),
    ("jet_mass", r"$m_{jet}^{reco} - m_{jet}$ [GeV]", (-70.0, 30.0)),
    ("jet_pt", r"$p_{T,jet}^{reco} - p_{T,jet}$ [GeV]", (-50.0, 50.0)),
    ("tau21", r"$\tau_{21}^{reco} - \tau_{21}$", (-0.3, 0.3)),
    ("tau32", r"$\tau_{32}^{reco} - \tau_{32}$", (-0.3, 0.3)),
]


@torch.no_grad()
def reconstruct(tokenizer, x: np.ndarray, mask: np.ndarray, batch_size: int = 1024):
    """(x_reco, codes) of padded jets through tokenize -> decode."""
    xs, cs = [], []
    for i in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[i:i + batch_size], dtype=torch.float32)
        mb = torch.as_tensor(mask[i:i + batch_size], dtype=torch.bool)
        codes = tokenizer.tokenize(xb, mb)
        xs.append(tokenizer.decode(codes, mb).numpy()), cs.append(codes.numpy())
    return np.concatenate(xs), np.concatenate(cs)


def differences(x: np.ndarray, x_reco: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """reco - original for particle pT, eta_rel, phi_rel (real particles) and jet mass, pT, tau21, tau32."""
    mask = np.asarray(mask, dtype=bool)
    orig, reco = particles(x, mask), particles(x_reco, mask)
    diffs = {f"particle_{k}": (reco[k] - orig[k])[mask] for k in ("pt", "eta_rel", "phi_rel")}
    jo, jr = observables(x, mask), observables(x_reco, mask)
    for k in ("mass", "pt"):
        diffs[f"jet_{k}"] = jr[k] - jo[k]
    for k in ("tau21", "tau32"):
        diffs[k] = jr[k] - jo[k]
    return {k: v[np.isfinite(v)] for k, v in diffs.items()}


RESOLUTION_KEYS = ("particle_pt_resolution", "eta_resolution", "phi_resolution", "etaphi_resolution",
                   "jet_mass_resolution", "jet_pt_resolution", "tau21_resolution", "tau32_resolution")


def resolution_metrics(diffs: dict, codes: np.ndarray, mask: np.ndarray, num_codes: int) -> dict:
    std = {k: float(np.std(v)) if len(v) else float("nan") for k, v in diffs.items()}
    return {
        "particle_pt_resolution": std["particle_pt"],
        "eta_resolution": std["particle_eta_rel"],
        "phi_resolution": std["particle_phi_rel"],
        "etaphi_resolution": float(np.sqrt(0.5 * (std["particle_eta_rel"] ** 2 + std["particle_phi_rel"] ** 2))),
        "jet_mass_resolution": std["jet_mass"],
        "jet_pt_resolution": std["jet_pt"],
        "tau21_resolution": std["tau21"],
        "tau32_resolution": std["tau32"],
        "jet_mass_mean_shift": float(np.mean(diffs["jet_mass"])),
        "codebook_utilisation": len(np.unique(codes[np.asarray(mask, dtype=bool)])) / num_codes,
    }


def plot_resolutions(all_diffs: dict[str, dict], path: Path) -> None:
    """One panel per quantity, one step histogram per tokeniser (OJ compare_tokenizer_models style)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 7), layout="constrained")
    axes = fig.subplots(2, 4)
    for ax, (key, label, rng) in zip(axes.flat, PLOT_PANELS):
        bins = np.linspace(*rng, 61)
        for name, diffs in all_diffs.items():
            ax.hist(np.clip(diffs[key], *rng), bins=bins, histtype="step", density=True, label=name)
        ax.set_xlabel(label)
        ax.set_yscale("log")
    axes.flat[-1].axis("off")
    axes.flat[0].legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> None:
    run = start_run(__doc__, argv)
    if run is None:
        return
    cfg, out, config_path = run
    real = load_arrays(cfg["data"], "test", max_jets=cfg["n_jets"])
    keep = real["mask"].sum(1) >= 3  # OJ evaluates jets with at least 3 constituents
    x, mask = real["x"][keep], real["mask"][keep]
    clf = cfg["classifier"]
    if clf["enabled"]:
        train = load_arrays(cfg["data"], "train", max_jets=clf["n_train_jets"])
        n_classes = int(max(train["label"].max(), real["label"].max()) + 1)

        def accuracy(x_train, x_test) -> float:
            return train_and_score((x_train, train["mask"], train["label"]), (x_test, mask, real["label"][keep]),
                                   n_classes, epochs=clf["epochs"], batch_size=clf["batch_size"], lr=clf["lr"],
                                   seed=cfg["seed"])

    rows, all_diffs = [], {}
    if clf["enabled"]:
        # the original constituents: zero resolution by definition, no codebook
        rows.append({"run": None, "tokenisation": "original", "num_tokens": None, "seed": None,
                     **{k: 0.0 for k in RESOLUTION_KEYS}, "codebook_utilisation": None,
                     "accuracy_reco": accuracy(train["x"], x)})
    for name in cfg["tokenizers"]:
        run = Path(cfg["runs_dir"]) / name
        if not (run / "done.json").is_file():
            raise FileNotFoundError(f"{run}: tokeniser run missing or unfinished (listed in tokenizers of "
                                    f"{config_path})")
        run_cfg = load_config(run / "config.yaml")
        kind = run_cfg["model"]["kind"]
        tokenizer = load_tokenizer(run)
        x_reco, codes = reconstruct(tokenizer, x, mask)
        diffs = differences(x, x_reco, mask)
        label = f"{TOKENISATION_NAMES[kind]} ({tokenizer.num_codes}, seed {run_cfg['seed']})"
        all_diffs[label] = diffs
        rows.append({"run": name, "tokenisation": TOKENISATION_NAMES[kind], "num_tokens": tokenizer.num_codes,
                     "seed": run_cfg["seed"], **resolution_metrics(diffs, codes, mask, tokenizer.num_codes)})
        if clf["enabled"]:
            rows[-1]["accuracy_reco"] = accuracy(reconstruct(tokenizer, train["x"], train["mask"])[0], x_reco)
        print(f"{label:32s} " + " ".join(f"{k}={v:.4g}" for k, v in rows[-1].items() if isinstance(v, float)))
    plot_resolutions(all_diffs, out / "resolution.png")
    write_json(out / "metrics.json", {"rows": rows, "n_jets": int(len(x)), "classifier": (
        f"{len(train['x'])} training jets, {clf['epochs']} epochs" if clf["enabled"] else None)})
    mark_done(out, {"n_jets": int(len(x)), "tokenizers": list(cfg["tokenizers"])})


if __name__ == "__main__":
    cli(main)
