"""Generation fidelity of OmniJet-alpha (arXiv:2403.05618; OJ gabbro/callbacks/generative_callback.py): generated jets
vs real jets passed through the same
tokeniser and decoder (so the comparison isolates the GPT from the tokenisation error).

    python -m omnijet.evaluate_generation --config omnijet/configs/generate.yaml --out runs/omnijet/eval_generation \
        generated_dir=runs/omnijet/generate tokenizer_dir=runs/omnijet/tokenizer

Metrics per observable: the quantile-binned KL(real || generated) of the OJ code (bin edges = quantiles of the
reference) and the Wasserstein-1 distance, for jet pT, eta, phi, mass, multiplicity, tau21, tau32 and for the
particle pT, eta_rel, phi_rel. Jets with fewer than 3 constituents are dropped (OJ JetSubstructure). As a yardstick
the same metrics are computed between two disjoint halves of the reference ("ref vs ref").

Per sampling seed (omnijet.generate, `sample.seeds`): the metrics of that seed's generated jets against the whole
reference, and as the scale of a real difference the same quantile-binned KL between the QCD and the top jets of the
reference (`kl_top_vs_qcd`, arXiv:2403.05618 generation study: the GPT learns the top + QCD mixture), each seed on
its own disjoint subset of the reference's top and QCD jets. And the statistical floor at equal sample sizes: the
reference split at random (per seed) into halves A and B, KL(A || generated) beside KL(A || B), with as many generated
jets as B holds (`generated_vs_half`, `half_vs_half`). QCD is the reference side of that KL: its mass and
substructure ranges contain the top jets' (top jets outside the reference range would be dropped by the KL).
Writes metrics.json, histogram plots with ratio panels of the first seed's sample (hist_<observable>.png) and
done.json into --out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.cli import cli
from common.data.datasets import load_arrays
from common.results.plots import data_label, hist_ratio
from common.training.metrics import kl_quantile_binned, wasserstein1
from common.training.train_utils import mark_done, start_run, write_json

from omnijet.jets import JET_OBSERVABLES, observables, particle_values
from omnijet.vqvae import load_tokenizer

# names used in the results table (omnijet.generation in common/results/published.yaml)
TABLE_NAMES = {"pt": "jet_pt", "eta": "jet_eta", "phi": "jet_phi", "mass": "jet_mass", "nparticles":
               "jet_n_constituents", "tau21": "tau21", "tau32": "tau32"}
LABELS = {"jet_pt": "jet $p_T$ [GeV]", "jet_eta": r"jet $\eta$", "jet_phi": r"jet $\phi$",
          "jet_mass": "jet mass [GeV]", "jet_n_constituents": "number of constituents", "tau21": r"$\tau_{21}$",
          "tau32": r"$\tau_{32}$", "particle_pt": "particle $p_T$ [GeV]", "particle_eta_rel": r"particle $\eta^{rel}$",
          "particle_phi_rel": r"particle $\phi^{rel}$"}
MIN_CONSTITUENTS = 3


def sample_values(x: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """All compared quantities of one sample (jets with >= 3 constituents): jet observables and particle features."""
    keep = np.asarray(mask, dtype=bool).sum(1) >= MIN_CONSTITUENTS
    x, mask = np.asarray(x)[keep], np.asarray(mask, dtype=bool)[keep]
    if len(x) == 0:
        raise ValueError("no jet with at least 3 constituents to evaluate")
    obs = observables(x, mask)
    values = {TABLE_NAMES[k]: obs[k] for k in JET_OBSERVABLES}
    values.update({f"particle_{k}": v for k, v in particle_values(x, mask).items()})
    return {k: v[np.isfinite(v)] for k, v in values.items()}


def fraction_outside(reference: np.ndarray, generated: np.ndarray) -> float:
    """Fraction of generated values outside the reference's 0.1-99.9 % quantile range: the part of the sample the
    quantile-binned KL does not see (about 0.002 for two samples of one distribution)."""
    lo, hi = np.quantile(reference, [0.001, 0.999])
    return float(np.mean((generated < lo) | (generated > hi)))


def compare(reference: dict, generated: dict, n_bins: int) -> dict[str, dict]:
    """{name: {kl_divergence, w1, fraction_outside_reference}} for every quantity present in both samples."""
    return {k: {"kl_divergence": float(kl_quantile_binned(reference[k], generated[k], n_bins=n_bins)),
                "w1": float(wasserstein1(reference[k], generated[k])),
                "fraction_outside_reference": fraction_outside(reference[k], generated[k])}
            for k in reference if k in generated}


def top_qcd_subsets(label: np.ndarray, classes: list, n_subsets: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """n_subsets disjoint (QCD indices, top indices) pairs: each class shuffled with `seed` and cut in n_subsets."""
    if not isinstance(classes, list) or "QCD" not in classes or "Tbqq" not in classes:
        raise ValueError(f"data.classes must name QCD and Tbqq for the top-vs-QCD yardstick, got {classes!r}")
    rng = np.random.default_rng(seed)
    parts = {c: np.array_split(rng.permutation(np.flatnonzero(label == classes.index(c))), n_subsets)
             for c in ("QCD", "Tbqq")}
    return list(zip(parts["QCD"], parts["Tbqq"]))


def kl_top_vs_qcd(x: np.ndarray, mask: np.ndarray, qcd: np.ndarray, top: np.ndarray, n_bins: int) -> dict:
    """{observable: KL(QCD || top)} of the quantile-binned KL on the jets qcd and top (indices into x)."""
    return {k: m["kl_divergence"] for k, m in compare(sample_values(x[qcd], mask[qcd]),
                                                      sample_values(x[top], mask[top]), n_bins).items()}


@torch.no_grad()
def half_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of n reference jets."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n // 2], perm[n // 2:]


def tokenised_reference(tokenizer, x: np.ndarray, mask: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Real jets tokenised and decoded by the tokeniser (the OJ "JetClass (tokenized+reconstructed)" reference)."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[i:i + batch_size], dtype=torch.float32)
        mb = torch.as_tensor(mask[i:i + batch_size], dtype=torch.bool)
        out.append(tokenizer.decode(tokenizer.tokenize(xb, mb), mb).numpy())
    return np.concatenate(out)


def main(argv=None) -> None:
    run = start_run(__doc__, argv)
    if run is None:
        return
    cfg, out, _ = run
    ec = cfg["evaluate"]
    gen_path = Path(cfg["generated_dir"]) / "particles.npz"
    if not gen_path.is_file():
        raise FileNotFoundError(f"{gen_path}: no generated jets (run omnijet.generate first)")
    gen = np.load(gen_path)
    real = load_arrays(cfg["data"], "test", max_jets=ec["n_reference_jets"])
    tokenizer = load_tokenizer(cfg["tokenizer_dir"])
    ref_x = tokenised_reference(tokenizer, real["x"], real["mask"])

    if "seed" not in gen.files:
        raise ValueError(f"{gen_path}: no per-jet sampling seed (written by omnijet.generate); rerun the sampling")
    seeds = [int(s) for s in dict.fromkeys(gen["seed"].tolist())]
    reference = sample_values(ref_x, real["mask"])
    subsets = top_qcd_subsets(real["label"], cfg["data"]["classes"], len(seeds), cfg["seed"])
    per_seed = []
    for seed, (qcd, top) in zip(seeds, subsets):
        this = gen["seed"] == seed
        generated = sample_values(gen["x"][this], gen["mask"][this])
        per_seed.append({"seed": seed, "n_generated_jets": int(this.sum()),
                         "n_qcd_jets": int(len(qcd)), "n_top_jets": int(len(top)),
                         "generated_vs_reference": compare(reference, generated, ec["n_bins"]),
                         "kl_top_vs_qcd": kl_top_vs_qcd(ref_x, real["mask"], qcd, top, ec["n_bins"])})
        if seed == seeds[0]:
            for name in per_seed[0]["generated_vs_reference"]:
                hist_ratio(reference[name], generated[name], out / f"hist_{name}.png", xlabel=LABELS.get(name, name),
                           labels=(f"{data_label(cfg['data']['root'])}, tokenised + reconstructed",
                                   f"generated (seed {seed})"), ratio_label="generated / ref.")
    # the statistical floor at equal sample sizes, per seed: the reference split at random into halves A and B (the
    # files store the jets class by class), KL(A || generated) against KL(A || B) with as many generated jets as B
    # holds real ones (criterion of the kit's claim omnijet_generation_close_to_real)
    for r, (seed, _) in zip(per_seed, zip(seeds, subsets)):
        a, b = half_split(len(ref_x), cfg["seed"] + seed)
        this = np.flatnonzero(gen["seed"] == seed)
        m = min(len(b), len(this))
        half = sample_values(ref_x[a], real["mask"][a])
        r["n_half_jets"], r["n_compared_jets"] = int(len(a)), int(m)
        r["generated_vs_half"] = compare(half, sample_values(gen["x"][this[:m]], gen["mask"][this[:m]]), ec["n_bins"])
        r["half_vs_half"] = compare(half, sample_values(ref_x[b[:m]], real["mask"][b[:m]]), ec["n_bins"])
    # yardstick kept for the table: the same metrics between two halves of the reference (seed of the config)
    a, b = half_split(len(ref_x), cfg["seed"])
    floor = compare(sample_values(ref_x[a], real["mask"][a]), sample_values(ref_x[b], real["mask"][b]),
                    ec["n_bins"])
    write_json(out / "metrics.json", {"per_seed": per_seed, "reference_half_vs_half": floor,
                                      "n_generated_jets": int(len(gen["x"])), "n_reference_jets": int(len(ref_x)),
                                      "n_bins": ec["n_bins"]})
    mark_done(out, {"n_generated_jets": int(len(gen["x"])), "n_reference_jets": int(len(ref_x)), "seeds": seeds})
    for r in per_seed:
        for name, m in r["generated_vs_reference"].items():
            print(f"seed {r['seed']} {name:22s} KL {m['kl_divergence']:.4f} (ref/ref {floor[name]['kl_divergence']:.4f}"
                  f", QCD/top {r['kl_top_vs_qcd'].get(name, float('nan')):.4f})  W1 {m['w1']:.4g}  "
                  f"outside {m['fraction_outside_reference']:.3f}")


if __name__ == "__main__":
    cli(main)
