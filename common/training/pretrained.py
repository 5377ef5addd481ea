"""A pretrained backbone on your own jets, the same three lines for every method (docs/reuse.md):

    model = load("runs/smoke/mpm/pretrain/mpmv2")       # a run folder or a checkpoint: backbone + its preprocessing
    emb = model.embed({"px": px, "py": py, "pz": pz, "energy": e})   # or a file in a published format
    tagger = finetune(model, jets, labels, "runs/my_tagger", class_names=["QCD", "top"])   # the one fine-tuning loop

A self-contained checkpoint carries, besides the weights, a `reuse` entry (`bundle`): the method, the resolved config
and everything that turns raw jets into the backbone's input (common.data.datasets.preprocessing: feature set and its
parameters, number of particles, class names and the fitted normalisation, e.g. MPMv2's quantiles; MPMv1's running
means are buffers of the weights), plus what a method needs besides (OmniJet-alpha: its tokeniser). Only tensors and
plain values, so it is read with torch.load(weights_only=True). `load` builds the backbone through the method named in
the checkpoint, looked up in the fixed whitelist METHODS (a name read from a file is never imported otherwise): each
`<method>/pretrained.py` gives `fns(bundle, state) -> (build, load)`, the signature of every `backbone_fns`.

Evaluation is deterministic: the backbone is in eval mode (HEP-JEPA's FPS starts at the leading particle), MPMv2's
neutral-particle impact-parameter noise is seeded by each jet's position in the call (FeatureSet.per_batch).
`export` writes a fine-tuned classifier as ONNX (`python -m common.training.pretrained export <run> <out.onnx>`).
"""
from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.atomic import atomic_path
from common.data.batch import JetBatch
from common.data.features import DataError, get_feature_set, quantile_transformer
from common.data.own_jets import raw_jets, read_file
from common.training.checkpoint import load_checkpoint, load_trained, save_checkpoint
from common.training.classifier import Classifier, pooled_head
from common.training.probe import pool_mean_max

# method name stored in a checkpoint -> the module that rebuilds its backbone (never a name taken from the file)
METHODS = {"mpmv1": "mpm.pretrained", "mpmv2": "mpm.pretrained", "omnijet": "omnijet.pretrained",
           "hepjepa": "hepjepa.pretrained"}
FORMAT = 1
CHECKPOINTS = ("classifier.pt", "best.pt", "checkpoint.pt")   # looked for in this order inside a run folder


def bundle(method: str, cfg: dict, data_cfg: dict | None = None, **extra) -> dict:
    """The `reuse` entry of a pretraining checkpoint (reads the data once, at the start of pretraining)."""
    from common.data.datasets import preprocessing

    if method not in METHODS:
        raise ValueError(f"bundle: method {method!r} is not one of {sorted(METHODS)}")
    return {"format": FORMAT, "method": method, "config": cfg, "preprocessing": preprocessing(data_cfg or cfg["data"]),
            **extra}


def _method_fns(b: dict, state: dict | None, where):
    method = b.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"{where}: method {method!r} is not one of {sorted(METHODS)}")
    return importlib.import_module(METHODS[method]).fns(b, state)


def _check_reuse(info: dict, ckpt: dict, file) -> None:
    """The `reuse` entry (and a classifier's class names) of a checkpoint read from disk: plain values of the types
    `bundle` writes, else one line naming the file and the key (never a TypeError deep in a model builder)."""
    def bad(key, expected, got):
        raise ValueError(f"{file}: reuse.{key} = {_short(got)}: expected {expected}; the checkpoint is damaged or not "
                         "written by this kit (rerun the pretraining)")
    if not isinstance(info.get("method"), str) or info["method"] not in METHODS:
        raise ValueError(f"{file}: method {info.get('method')!r} is not one of {sorted(METHODS)}")
    if not isinstance(info.get("config"), dict):
        bad("config", "the run's resolved config (a mapping)", info.get("config"))
    p = info.get("preprocessing")
    if not isinstance(p, dict):
        bad("preprocessing", "a mapping (features, feature_params, num_particles, class_names, fitted)", p)
    n = p.get("num_particles")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        bad("preprocessing.num_particles", "an integer >= 1", n)
    if not isinstance(p.get("features"), str):
        bad("preprocessing.features", "a feature set name", p.get("features"))
    if not isinstance(p.get("feature_params"), dict):
        bad("preprocessing.feature_params", "a mapping", p.get("feature_params"))
    for key in ("class_names", "feature_names"):
        v = p.get(key)
        if (key == "class_names" or v is not None) and not (isinstance(v, list) and v and
                                                            all(isinstance(c, str) for c in v)):
            bad(f"preprocessing.{key}", "a non-empty list of strings", v)
    fit = p.get("fitted")
    if fit is not None:
        if not isinstance(fit, dict) or not all(isinstance(fit.get(k), torch.Tensor) and fit[k].is_floating_point()
                                                for k in ("quantiles", "references")):
            bad("preprocessing.fitted", "{quantiles, references} float tensors (the fitted quantile transformer)", fit)
        q, r = fit["quantiles"], fit["references"]
        if not (torch.isfinite(q).all() and torch.isfinite(r).all()) or not (q.diff(dim=0) >= 0).all():
            bad("preprocessing.fitted", "finite quantiles, non-decreasing along each feature", fit)
    if "head" in ckpt:
        names = ckpt.get("class_names")
        if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(c, str) for c in names)):
            raise ValueError(f"{file}: class_names = {_short(names)}: expected a list of at least two strings")


def _short(v) -> str:
    if isinstance(v, dict):
        text = "{" + ", ".join(f"{k!r}: {_short(x)}" for k, x in v.items()) + "}"
    else:
        text = " ".join((repr(v) if not isinstance(v, torch.Tensor) else f"tensor{tuple(v.shape)}").split())
    return text if len(text) <= 80 else text[:77] + "..."


class Pretrained(nn.Module):
    """A backbone (and, once fine-tuned, a classification head) with the preprocessing of its pretraining data.
    backbone(JetBatch) -> (h (B, T, D), mask (B, T)); tokens are particles (MPM), [start, particles, stop]
    (OmniJet-alpha) or particle patches (HEP-JEPA)."""

    def __init__(self, backbone: nn.Module, info: dict, head: nn.Module | None = None,
                 class_names: list[str] | None = None):
        super().__init__()
        self.backbone, self.head, self.info = backbone, head, info
        p = info["preprocessing"]
        self.method, self.num_particles = info["method"], int(p["num_particles"])
        self.features = get_feature_set(p["features"])
        if json.loads(json.dumps(self.features.params)) != p["feature_params"]:
            raise DataError(f"checkpoint feature set {p['features']!r} has parameters {p['feature_params']}, this kit "
                            f"computes {self.features.params}")
        fit = p.get("fitted")
        self.state = None if fit is None else quantile_transformer(fit["quantiles"].numpy(), fit["references"].numpy(),
                                                                     "checkpoint preprocessing.fitted")
        self.class_names = list(class_names or p["class_names"])
        self.eval()

    def arrays(self, jets, max_jets: int | None = None) -> dict:
        """Raw jets (a mapping of per-particle arrays, see common/data/own_jets.py, or a file path) -> the feature
        arrays of the backbone's input (x, mask, p4, jet, label[, pid]), as the preprocessing cache computes them."""
        if max_jets is not None and (isinstance(max_jets, bool) or not isinstance(max_jets, (int, np.integer))
                                     or max_jets < 1):
            raise ValueError(f"max_jets = {max_jets!r}: expected an integer >= 1 (or None: all jets)")
        raw = read_file(jets, max_jets) if isinstance(jets, (str, Path)) else raw_jets(jets)
        if max_jets is not None:
            raw = raw.select(slice(0, max_jets))
        a = self.features.compute(raw, self.num_particles, self.state, np.random.default_rng(0))
        return self.features.per_batch(a, np.arange(len(raw)))   # MPMv2 noise seeded by the jet's number

    @staticmethod
    def batch(a: dict, rows=slice(None)) -> JetBatch:
        t = {k: torch.from_numpy(np.ascontiguousarray(v[rows])) for k, v in a.items()}
        return JetBatch(t["x"], t["mask"], t["p4"], t["jet"], t["label"], t.get("pid"))

    @torch.no_grad()
    def embed(self, jets, batch_size: int = 256, max_jets: int | None = None) -> dict:
        """{"jet": (B, 2D) masked mean+max of the tokens (common.training.probe.pool_mean_max), "tokens": (B, T, D),
        "mask": (B, T)} as float32 / bool NumPy arrays, in eval mode (deterministic)."""
        self.eval()
        _check_batch_size(batch_size)
        a = self.arrays(jets, max_jets)
        out = {"jet": [], "tokens": [], "mask": []}
        for s in range(0, len(a["x"]), batch_size):
            h, mask = self.backbone(self.batch(a, slice(s, s + batch_size)))
            out["jet"].append(pool_mean_max(h.float(), mask).numpy())
            out["tokens"].append(h.float().numpy())
            out["mask"].append(mask.numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    def forward(self, batch: JetBatch) -> torch.Tensor:
        """Class logits of a fine-tuned model."""
        if self.head is None:
            raise RuntimeError("this model has no classification head: fine-tune it first (finetune)")
        h, mask = self.backbone(batch)
        return self.head(h, mask)

    @torch.no_grad()
    def predict(self, jets, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (B, C) of a fine-tuned model, in eval mode."""
        self.eval()
        _check_batch_size(batch_size)
        a = self.arrays(jets)
        return np.concatenate([self(self.batch(a, slice(s, s + batch_size))).float().softmax(-1).numpy()
                               for s in range(0, len(a["x"]), batch_size)])


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r}: expected an integer >= 1")


def _checkpoint_file(path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path}: no {' / '.join(CHECKPOINTS)} in this run folder")
    return path


def load(path, device="cpu") -> Pretrained:
    """The backbone of a pretraining run (or a fine-tuned classifier written by `finetune`) with its preprocessing,
    in eval mode. `path`: a run folder or a checkpoint file."""
    file = _checkpoint_file(path)
    ckpt = load_trained(file, "backbone")   # a run that did not finish is refused (JETFM_ALLOW_UNFINISHED)
    info = ckpt.get("reuse")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"{file}: no self-contained `reuse` entry (format {FORMAT}): written by an older kit or not "
                         "a pretraining / fine-tuned checkpoint; rerun the pretraining to embed your own jets with it")
    _check_reuse(info, ckpt, file)
    try:
        return _build(ckpt, info, file, device)
    except DataError as e:   # the feature set named in the checkpoint
        raise DataError(f"{file}: {e}") from None
    except (KeyError, TypeError, AttributeError, IndexError, RuntimeError) as e:   # a config or weights that do not fit
        raise ValueError(f"{file}: the checkpoint's reuse entry and weights do not build a {info['method']} backbone "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:160]}); the checkpoint is damaged or "
                         "not written by this kit") from None


def _build(ckpt: dict, info: dict, file, device) -> Pretrained:
    if "head" in ckpt:       # a classifier: the whole model's weights
        build, _ = _method_fns(info, None, file)
        backbone = build()
        head = pooled_head(len(ckpt["class_names"]))(backbone, ckpt["head"])
        model = Pretrained(backbone, info, head, ckpt["class_names"])
        model.load_state_dict(ckpt["model"], strict=True)
        return model.to(device).eval()
    build, load_weights = _method_fns(info, ckpt["model"], file)
    backbone = build()
    load_weights(backbone)
    return Pretrained(backbone, info).to(device).eval()


def finetune(model: Pretrained, jets, labels, out, *, class_names: list[str] | None = None, val=None,
             mode: str = "finetune", head: dict | None = None, seed: int = 0, **settings) -> Pretrained:
    """Train a classification head (and the backbone, by `mode`: fixed | finetune | scratch) on your labelled jets
    through the kit's one fine-tuning loop (common.training.finetune.run_finetune). val: (jets, labels) for early
    stopping and the test metrics in <out>/result.json; default: a seeded 20 % of the given jets. settings: keys of
    the `finetune:` section (common/training/finetune_config.py), e.g. steps=200, lr=1e-3. Writes the self-contained
    <out>/classifier.pt (load(out) reads it back; export writes it as ONNX) and returns the fine-tuned model."""
    from common.data.array_loader import ArrayLoader
    from common.training.distributed import Dist
    from common.training.finetune import run_finetune
    from common.training.finetune_config import finetune_settings

    a = model.arrays(jets)
    a["label"] = _labels(labels, len(a["x"]), "labels")
    n_classes = int(a["label"].max()) + 1
    if val is None:
        perm = np.random.default_rng([seed, 2]).permutation(len(a["x"]))
        n_val = max(1, len(perm) // 5)
        train, val_a = ({k: v[np.sort(perm[n_val:])] for k, v in a.items()},
                        {k: v[np.sort(perm[:n_val])] for k, v in a.items()})
    else:
        if not (isinstance(val, (tuple, list)) and len(val) == 2):
            raise DataError(f"finetune: val = {type(val).__name__}: expected (jets, labels)")
        train, val_a = a, model.arrays(val[0])
        val_a["label"] = _labels(val[1], len(val_a["x"]), "val labels")
        if int(val_a["label"].max()) >= n_classes:
            raise DataError(f"finetune: val labels reach class {int(val_a['label'].max())}; the training labels have "
                            f"classes 0-{n_classes - 1}")
    missing = sorted(set(range(n_classes)) - set(np.unique(train["label"]).tolist()))
    if n_classes < 2 or missing:
        raise DataError(f"finetune: the training jets have labels {sorted(np.unique(train['label']).tolist())}; "
                        f"expected every class 0..C-1 (C >= 2) to have jets" +
                        (f" (no jets of class {missing})" if missing and n_classes >= 2 else ""))
    if class_names is not None and not (isinstance(class_names, (list, tuple)) and
                                        all(isinstance(c, str) and c for c in class_names) and
                                        len(set(class_names)) == len(class_names)):
        raise DataError(f"finetune: class_names = {_short(class_names)}: expected a list of distinct non-empty strings")
    if class_names is not None and len(class_names) != n_classes:
        raise DataError(f"finetune: {len(class_names)} class_names {list(class_names)} for labels 0-{n_classes - 1} "
                        f"({n_classes} classes); expected one name per class, in label order")
    names = list(class_names or [str(c) for c in range(n_classes)])
    head = head or {"kind": "linear_mean"}
    fc = {"mode": mode, "head": head, "seeds": [seed], "save_model": True, "checkpoint": False,
          "precision": "fp32", **settings}
    finetune_settings({"finetune": fc})     # a bad setting is named before the folder is touched
    build, _ = _method_fns(model.info, None, out)
    out = _finetune_folder(out, _fingerprint(model, train, val_a, names, fc))
    splits = {"train": train, "val": val_a, "test": val_a}

    def loader_fn(data_cfg, split, batch_size, *, shuffle, seed=0, rank=0, world_size=1, **kw):
        return ArrayLoader(splits[split], batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                           features=model.features)

    def load_backbone(backbone):   # the weights of `model` (its backbone as loaded, whatever the method)
        backbone.load_state_dict(model.backbone.state_dict(), strict=True)
        if hasattr(backbone, "norm") and hasattr(backbone.norm, "freeze"):
            backbone.norm.freeze()  # MPMv1 input normalisation keeps the pretraining statistics

    run_finetune({"finetune": fc, "data": {}}, build, None if mode == "scratch" else load_backbone, out, Dist(),
                 seed=seed, n_per_class=None, loader_fn=loader_fn, class_names=names)
    state = load_checkpoint(out / "classifier.pt")["model"]
    save_checkpoint(out / "classifier.pt", {"reuse": model.info, "head": head, "class_names": names, "model": state})
    return load(out)


def _labels(labels, n: int, what: str) -> np.ndarray:
    """Integer class numbers 0, 1, ..., one per jet, else one line naming what is wrong."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"finetune: {what} have shape {y.shape}; expected ({n},), one label per jet")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all())) \
            or (y < 0).any():
        raise DataError(f"finetune: {what} must be integer class numbers 0, 1, ...; got dtype {y.dtype}"
                        + (f", values {np.unique(y)[:5].tolist()}" if y.dtype.kind in "biuf" else ""))
    return y.astype(np.int64)


FINETUNE_INPUTS = "finetune_inputs.json"   # what `finetune` trained in a folder (a hash): a rerun reads it back


def _fingerprint(model: Pretrained, train: dict, val: dict, names: list, fc: dict) -> str:
    """sha256 of everything a fine-tuning's result depends on: backbone weights, preprocessing, jets, labels, settings."""
    import hashlib

    h = hashlib.sha256(json.dumps([model.info["method"], model.info["preprocessing"]["features"], names, fc],
                                  sort_keys=True, default=str).encode())
    for k, v in sorted(model.backbone.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
    for split in (train, val):
        for k in sorted(split):
            h.update(k.encode() + str(split[k].shape).encode() + np.ascontiguousarray(split[k]).tobytes())
    return h.hexdigest()


def _finetune_folder(out, fingerprint: str) -> Path:
    """The fine-tuning's folder: new, empty, or one `finetune` wrote for the same inputs (read back or resumed). A
    folder of other files (the user's, or another run of the kit) or of another fine-tuning is refused, untouched."""
    from common.atomic import RUN_MARKER, write_json
    from common.training.train_utils import RUN_LOCK, _write_marker, lock_dir

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"finetune: out {out} is a file; expected a folder for the fine-tuned classifier")
    record = out / FINETUNE_INPUTS
    if record.is_file():
        try:
            then = json.loads(record.read_text()).get("sha256")
        except (ValueError, AttributeError):
            then = None
        if then != fingerprint:
            raise DataError(f"finetune: {out} holds a fine-tuning of other jets, labels, settings or backbone "
                            f"({FINETUNE_INPUTS}); use another folder, or delete this one to redo it")
    elif out.is_dir() and any(p.name not in (RUN_LOCK, RUN_MARKER) for p in out.iterdir()):
        raise DataError(f"finetune: {out} is not empty and not a fine-tuning folder of `finetune` (no "
                        f"{FINETUNE_INPUTS}); nothing was written there: use a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"finetune: cannot create {out} ({e.strerror})") from None
    lock_dir(out, "fine-tuning")
    if not (out / RUN_MARKER).is_file():
        _write_marker(out, torch.get_num_threads())
    if not record.is_file():
        write_json(record, {"sha256": fingerprint})
    return out


# ------------------------------------------------------------------------------------------------- ONNX export
class _Probabilities(nn.Module):
    """The exported graph: feature arrays -> class probabilities (the preprocessing stays in NumPy: Pretrained.arrays)."""

    def __init__(self, model: Pretrained):
        super().__init__()
        self.model = model

    def forward(self, x, mask, p4, pid=None):
        b = x.shape[0]
        batch = JetBatch(x, mask, p4, x.new_zeros(b, 6), torch.zeros_like(mask[:, 0], dtype=torch.long), pid)
        return self.model(batch).float().softmax(-1)


def export(model, path, jets=None, opset: int = 18, atol: float = 1e-4) -> Path:
    """Write a fine-tuned model (or its run folder / classifier.pt) as ONNX: inputs x (B, N, F) float32, mask (B, N)
    bool, p4 (B, N, 4) float32 [, pid (B, N) int64 for MPMv2] as Pretrained.arrays gives them, output probs (B, C).
    The jet axis is dynamic; the particle axis too where the model allows it (checked: ONNX Runtime on half the
    particles must agree with PyTorch, else it stays at the checkpoint's num_particles; HEP-JEPA's kNN size is fixed
    at export). The export is checked against PyTorch on `jets` (default: example_jets) to `atol`."""
    model = load(model) if isinstance(model, (str, Path)) else model
    if model.head is None:
        raise ValueError("export: the model has no classification head; fine-tune it first (finetune)")
    model.eval()
    a = model.arrays(jets if jets is not None else example_jets(8))
    names = ["x", "mask", "p4"] + (["pid"] if "pid" in a else [])
    path = _onnx_path(path)
    with atomic_path(path) as tmp:   # the checked graph appears at `path` whole, or nothing does
        _export_checked(model, a, names, tmp, opset, atol, path)
    return path


def _onnx_path(path) -> Path:
    """The export's target: a file ending in .onnx (never a checkpoint or any other file by mistake) in a folder that
    is made if missing; an existing .onnx file is replaced."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"export: {path}: expected a file name ending in .onnx")
    if path.is_dir():
        raise ValueError(f"export: {path} is a folder; expected a file name ending in .onnx")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"export: cannot create the folder {path.parent} ({e.strerror})") from None
    return path


def _export_checked(model: Pretrained, a: dict, names: list, path: str, opset: int, atol: float,
                    shown: Path) -> None:
    import onnxruntime as ort

    def agrees(arrays) -> bool:
        quiet = ort.SessionOptions()
        quiet.log_severity_level = 4                 # a refused particle count is an answer here, not an error
        session = ort.InferenceSession(str(path), quiet)   # inputs the model does not read (MPM: p4) are not in the graph
        onnx_probs = session.run(None, {i.name: arrays[i.name] for i in session.get_inputs()})[0]
        with torch.no_grad():
            torch_probs = model.eval()(model.batch(arrays)).float().softmax(-1).numpy()
        return onnx_probs.shape == torch_probs.shape and float(np.abs(onnx_probs - torch_probs).max()) < atol

    for axes in ({0: "jets", 1: "particles"}, {0: "jets"}):
        args = tuple(torch.from_numpy(np.ascontiguousarray(a[k][:4])) for k in names)   # traced on 4 jets
        torch.onnx.export(_Probabilities(model).eval(), args, str(path), input_names=names, output_names=["probs"],
                          dynamic_axes={k: axes for k in names} | {"probs": {0: "jets"}}, opset_version=opset,
                          dynamo=False)
        if 1 not in axes:
            break
        half = {k: v[:, :model.num_particles // 2] if k in names else v for k, v in a.items()}
        try:
            if agrees(half):
                break
        except Exception:   # noqa: BLE001 - ONNX Runtime refuses the shape: the particle axis stays fixed
            pass
    if not agrees(a):
        raise RuntimeError(f"{shown}: ONNX Runtime and PyTorch disagree by more than {atol} on the example jets")


def example_jets(n: int, seed: int = 0, particles: int = 30) -> dict:
    """n synthetic jets with every per-particle field any method reads (for tracing and for tests)."""
    rng = np.random.default_rng(seed)
    k = rng.integers(3, particles + 1, n)
    mask = np.arange(particles)[None] < k[:, None]
    pt = np.sort(rng.exponential(20.0, (n, particles)) + 0.5, 1)[:, ::-1]
    eta = rng.uniform(-1.5, 1.5, (n, 1)) + rng.normal(0, 0.2, (n, particles))
    phi = rng.uniform(-3, 3, (n, 1)) + rng.normal(0, 0.2, (n, particles))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    jets = {"px": px, "py": py, "pz": pz, "energy": np.sqrt(px**2 + py**2 + pz**2)}
    kind = rng.integers(0, 3, (n, particles))            # charged hadron, neutral hadron, photon
    charge = np.where(kind == 0, rng.choice([-1.0, 1.0], (n, particles)), 0.0)
    jets.update(charge=charge, isChargedHadron=(kind == 0) * 1.0, isNeutralHadron=(kind == 1) * 1.0,
                isPhoton=(kind == 2) * 1.0, isElectron=np.zeros((n, particles)), isMuon=np.zeros((n, particles)),
                d0val=np.where(kind == 0, rng.normal(0, 0.05, (n, particles)), 0.0),
                dzval=np.where(kind == 0, rng.normal(0, 0.08, (n, particles)), 0.0))
    jets["d0err"] = jets["dzerr"] = np.where(kind == 0, 0.02, 0.0)
    return {k: np.where(mask, v, 0.0).astype(np.float32) for k, v in jets.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m common.training.pretrained",
                                 description="Use a pretrained backbone: export a fine-tuned classifier as ONNX.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write a fine-tuned classifier (run folder or classifier.pt) as ONNX")
    e.add_argument("model")
    e.add_argument("out")
    e.add_argument("--opset", type=int, default=18)
    a = ap.parse_args(argv)
    print(export(a.model, a.out, opset=a.opset))


if __name__ == "__main__":
    from common.cli import cli

    cli(main)
