"""YAML run configurations: `base:` inheritance, strict keys, `a.b=value` overrides.

Rules
-----
* A file may name one parent with `base: <path>` (relative to that file). The other keys that name a config file
  (FILE_KEYS: `pretrained.config`) are relative to the file that sets them too, and are stored resolved (absolute), so
  a copied method runs from any working directory; on the command line they are relative to the working directory. Keys merge recursively; the child wins.
  The file at the end of the chain (the one without `base:`) is the *root*: it defines the schema.
* A key that the chain above a file does not define is an error naming the file, the key path and the valid keys.
* Two escape hatches for open-ended sections:
    - a key whose value in the chain above is `null` accepts any value (a scalar, a list or a whole mapping);
    - a key whose value in the root is an empty mapping `{}` (or `null`) is *free-form*: anything below it is accepted,
      in every file of the chain and in overrides.
* Command-line overrides `a.b=value` are applied last; `value` is parsed as YAML ("1e-3" -> float, "[1,2]" -> list,
  "null" -> None) and the key must exist under the same rules.
* Numbers such as `1e-3` are floats here, in files and overrides alike (plain YAML 1.1 would read them as strings).
* The resolved configuration (no `base:` key) is written with the run by `save_config` (atomic).
* Keys renamed when the training loops got one vocabulary (RENAMED below) are refused with the new name, in files,
  overrides and the config.yaml of an earlier run alike.

One vocabulary for every training loop (mpm/, omnijet/, hepjepa/ pretraining and tokenisers, common.training.finetune):
  top level  seed, device (auto | cpu | cuda), compile
  train      batch_size, steps, lr, weight_decay, grad_clip, grad_accum, schedule, log_every, val_every, val_batches,
             ckpt_every, max_jets, precision (bf16 | fp32)
  finetune   the same names where the idea is the same (steps, grad_accum, grad_clip, val_every, precision, ...)
"""
from __future__ import annotations

import argparse
import copy
import difflib
import os
import re
from pathlib import Path

import yaml

from common.atomic import atomic_path


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` / `5E4` as floats (YAML 1.1 would keep them as strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


# Booleans are exactly true / false (True, FALSE, ...): YAML 1.1 would also read yes / no / on / off as booleans, so
# `compile=no` would silently mean false; here it stays the string "no" and a boolean key refuses it.
_Loader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
                                   for k, v in _Loader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


class DuplicateKeyError(yaml.YAMLError):
    pass


def _no_duplicate_keys(loader, node, deep=False):
    """A mapping that sets one key twice is an error (plain YAML keeps the last value silently)."""
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DuplicateKeyError(f"key '{key}' appears twice in one mapping (lines {seen[key] + 1} and "
                                    f"{key_node.start_mark.line + 1}); keep one")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def parse_value(text: str):
    """Parse one YAML scalar / flow value as in config files (`1e-3` -> float, `[1, 2]` -> list, `null` -> None)."""
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A configuration file or override is invalid (unknown key, bad YAML, missing base)."""


# old key path -> its name in the one loop vocabulary (module docstring)
RENAMED = {
    "train.max_steps": "train.steps",
    "train.checkpoint_every": "train.ckpt_every",
    "train.clip": "train.grad_clip",
    "train.optimizer": "train.lr, train.weight_decay and train.betas",
    "train.max_train_jets": "train.max_jets",
    "train.autocast": "train.precision (bf16 | fp32)",
    "train.seed": "seed (top level)",
    "train.device": "device (top level; auto | cpu | cuda)",
    "train.compile": "compile (top level)",
    "finetune.max_steps": "finetune.steps",
    "finetune.accumulate": "finetune.grad_accum",
    "finetune.eval_every": "finetune.val_every",
    "finetune.eval_every_epochs": "finetune.val_every_epochs",
    "finetune.autocast": "finetune.precision (bf16 | fp32)",
    "per_n_overrides": "finetune.per_n (rules {min_n, max_n, modes, set})",
}


def renamed_error(where: str, key: str) -> ConfigError:
    return ConfigError(f"{where}: key '{key}' was renamed to {RENAMED[key]} (one vocabulary for all training loops; "
                       "see common/training/config.py)")


def check_renamed(cfg: dict, where: str) -> None:
    """Refuse a resolved config that still uses a key of RENAMED (e.g. the config.yaml of an earlier run)."""
    for key in RENAMED:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            raise renamed_error(where, key)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_Loader)
    except DuplicateKeyError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        raise ConfigError(f"{path}: empty config file (expected a mapping of keys)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


FILE_KEYS = ("pretrained.config",)


def _resolve_file_keys(data: dict, path: Path) -> None:
    """FILE_KEYS set in the file `path` to a relative path: made absolute against that file's directory."""
    for key in FILE_KEYS:
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(last), str) and not os.path.isabs(node[last]):
            node[last] = str((path.parent / node[last]).resolve())


def _free_paths(root: dict, prefix: tuple = ()) -> set[tuple]:
    """Key paths that the root marks as free-form (value null or {})."""
    free = set()
    for k, v in root.items():
        p = prefix + (k,)
        if v is None or (isinstance(v, dict) and not v):
            free.add(p)
        elif isinstance(v, dict):
            free |= _free_paths(v, p)
    return free


def _is_free(path: tuple, free: set[tuple]) -> bool:
    return any(path[: len(f)] == f for f in free)


def _unknown_key(where: str, path: tuple, valid) -> ConfigError:
    key = ".".join(map(str, path))
    if key in RENAMED:
        return renamed_error(where, key)
    parent = ".".join(map(str, path[:-1])) or "<top level>"
    valid = sorted(map(str, valid))
    close = difflib.get_close_matches(str(path[-1]), valid, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    listed = ", ".join(valid) or "(none)"
    return ConfigError(f"{where}: unknown key '{key}'. Valid keys under {parent}: {listed}.{hint}")


def _merge(base: dict, child: dict, where: str, free: set[tuple], prefix: tuple = ()) -> dict:
    """Recursively merge `child` into a copy of `base`, refusing keys the base does not define."""
    out = dict(base)
    for k, v in child.items():
        path = prefix + (k,)
        if k not in base:
            if _is_free(path, free):
                out[k] = copy.deepcopy(v)
                continue
            raise _unknown_key(where, path, base.keys())
        old = base[k]
        if isinstance(old, dict) and isinstance(v, dict) and old and not _is_free(path, free):
            out[k] = _merge(old, v, where, free, path)
        elif isinstance(old, dict) and isinstance(v, dict):
            out[k] = {**old, **copy.deepcopy(v)} if old else copy.deepcopy(v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_chain(path: Path, seen: tuple = ()) -> tuple[dict, set[tuple], list[Path]]:
    """Resolve `path` and its base chain. Returns (config, free paths of the root, chain of files)."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular base chain: {' -> '.join(map(str, seen + (path,)))}")
    data = _read_yaml(path)
    _resolve_file_keys(data, path)
    base = data.pop("base", None)
    if base is None:
        return data, _free_paths(data), [path]
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a path string relative to the file, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"{path}: base file '{base}' not found (looked for {base_path})")
    parent, free, chain = _load_chain(base_path, seen + (path,))
    return _merge(parent, data, str(path), free), free, chain + [path]


def apply_override(cfg: dict, item: str, free: set[tuple] = frozenset()) -> None:
    """Apply one `a.b.c=value` override in place (the key must exist, or lie in a free-form section)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected the form key.path=value")
    key, raw = item.split("=", 1)
    parts = tuple(key.strip().split("."))
    if not all(parts):
        raise ConfigError(f"override '{item}': empty key component")
    try:
        value = parse_value(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{item}': value is not valid YAML: {e}") from e
    node = cfg
    for i, p in enumerate(parts[:-1]):
        if not isinstance(node, dict) or (p not in node and not _is_free(parts[: i + 1], free)):
            raise _unknown_key(f"override '{item}'", parts[: i + 1], node.keys() if isinstance(node, dict) else [])
        if p not in node or node[p] is None:
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"override '{item}': '{where}' is a {type(node).__name__}, not a mapping")
    last = parts[-1]
    if last not in node and not _is_free(parts, free):
        raise _unknown_key(f"override '{item}'", parts, node.keys())
    node[last] = value


# ---------------------------------------------------------------------------------------------------------------------
# value checks: every value has the type its root value (the schema) implies, and a sensible range

# by key name (the last component), across every section
COUNTS = {"steps", "batch_size", "eval_batch_size", "log_every", "ckpt_every", "grad_accum", "val_batches",
          "num_particles", "dim", "num_heads", "ff_hidden", "num_codes", "max_epochs", "patience",
          "n_clusters", "fit_jets"}                   # integers >= 1
NOT_NULL = {"steps", "batch_size", "lr", "weight_decay", "log_every", "ckpt_every", "grad_accum", "seed", "device",
            "precision", "method", "mode", "dim", "num_heads"}           # null only where the root says so
UNIT_INTERVAL = ("dropout", "fraction", "smoothing")  # a key containing one of these: a float in [0, 1]
NON_NEGATIVE = {"weight_decay", "grad_clip", "eps"}    # numbers >= 0 (grad_clip 0 or null: no clipping)
POSITIVE = {"lr", "norm_max_n"}                       # numbers > 0
MIN_VALUE = {"num_particles": 2}                      # a jet needs two particles (pairs, masking, a loss)
SCALAR = COUNTS | {"seed"}                            # never a list, even where other integer keys may be
NOT_EMPTY = {"seeds"}                                 # lists that need at least one element
DISTINCT = {"seeds", "n_per_class", "n_train"}        # lists of replicates / grid points: no value twice (a repeated
                                                      # seed is the same run again, never another replicate)
CHOICES = {"device": "auto | cpu | cuda | cuda:<n>", "precision": ("bf16", "fp32"),
           "mode": ("fixed", "finetune", "scratch"), "select": ("best_val", "last")}


def _kind(v) -> str:
    return "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else "float" if isinstance(v, float) \
        else "str" if isinstance(v, str) else "list" if isinstance(v, list) else "mapping" if isinstance(v, dict) \
        else "null" if v is None else type(v).__name__


def _expected(key: str, root) -> str | None:
    """What a value of `key` must be, given its root value; None when `value` fits."""
    return {"bool": "true or false", "int": "an integer" + (" >= 1" if key in COUNTS else " >= 0"),
            "float": "a number" + (" > 0" if key in POSITIVE else " >= 0" if key in NON_NEGATIVE else ""),
            "str": "a string", "list": "a list"}.get(_kind(root))


def _bad_value(key: str, root, v) -> str | None:
    """The expectation `v` violates (None: fine)."""
    kr, kv = _kind(root), _kind(v)
    if v is None:
        return _expected(key, root) if key in NOT_NULL else None
    if kr == "bool" and kv != "bool":
        return "true or false"
    if kr == "int" and kv != "int" and not (kv == "list" and key not in SCALAR and all(_kind(x) == "int" for x in v)):
        return _expected(key, root)
    if kv == "list" and key in NOT_EMPTY and not v:
        return "a non-empty list"
    if kv == "list" and key in DISTINCT and repeated(v):
        return f"distinct values ({', '.join(map(repr, repeated(v)))} repeated: the same run again is not another " \
               "replicate)"
    if kv == "int" and key in MIN_VALUE and v < MIN_VALUE[key]:
        return f"an integer >= {MIN_VALUE[key]}"
    if kr == "float" and kv not in ("int", "float"):
        return _expected(key, root)
    if kr == "str" and kv != "str":
        return "a string" if key not in CHOICES else "one of " + _choices(key)
    if kr == "list" and kv not in ("list", "int", "float"):
        return "a list"
    if kv == "int" and kr == "int" and (v < 1 if key in COUNTS else v < 0):
        return _expected(key, 0)
    if kv in ("int", "float") and kr in ("int", "float"):
        if v != v or v in (float("inf"), float("-inf")):
            return "a finite number"
        if key in POSITIVE and v <= 0:
            return "a number > 0"
        if key in NON_NEGATIVE and v < 0:
            return "a number >= 0" + (" (0 or null: no clipping)" if key == "grad_clip" else "")
        if any(w in key for w in UNIT_INTERVAL) and not 0 <= v <= 1:
            return "a number in [0, 1]"
    if kv == "str" and key in CHOICES:
        ok = v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v) if key == "device" else v in CHOICES[key]
        if not ok:
            return "one of " + _choices(key)
    return None


def repeated(values) -> list:
    """The values of a list that occur more than once (1 and 1.0 alike), in order of first repetition."""
    seen, out = [], []
    for x in values:
        if x in seen and x not in out:
            out.append(x)
        seen.append(x)
    return out


def _choices(key: str) -> str:
    c = CHOICES[key]
    return c if isinstance(c, str) else ", ".join(c)


def _origin(path: tuple, chain: list[Path], overrides) -> str:
    """Where a value came from: the last override or chain file that sets it."""
    key = ".".join(path)
    for item in reversed(list(overrides)):
        if item.split("=", 1)[0].strip() == key:
            return f"override '{item}'"
    for f in reversed(chain):
        node = _read_yaml(f)
        for p in path:
            if not isinstance(node, dict) or p not in node:
                break
            node = node[p]
        else:
            return str(f)
    return str(chain[-1])


def check_values(cfg: dict, root: dict, where) -> None:
    """Every value against its root value: type (bool, int, float, string, list), counts >= 1, rates > 0, fractions
    in [0, 1], the allowed strings of a choice. ConfigError naming where the value was set, the key, the value and the
    expectation. `where`: callable(path) -> file or override."""
    def walk(node, schema, prefix):
        for k, v in node.items():
            if not isinstance(schema, dict) or k not in schema or schema[k] is None:
                continue
            r, path = schema[k], prefix + (k,)
            if isinstance(r, dict):
                if r and isinstance(v, dict):
                    walk(v, r, path)
                elif r and v is not None:
                    raise ConfigError(f"{where(path)}: {'.'.join(path)} = {v!r}: expected a mapping "
                                      f"(keys {', '.join(map(str, r))})")
                continue
            bad = _bad_value(str(k), r, v)
            if bad:
                raise ConfigError(f"{where(path)}: {'.'.join(path)} = {v!r}: expected {bad}")
    walk(cfg, root, ())


def load_config(path, overrides=()) -> dict:
    """Load a YAML config with its `base:` chain and apply `a.b=value` overrides; check every value against the root
    file's (check_values). See the module docstring."""
    cfg, free, chain = _load_chain(Path(path))
    check_renamed(cfg, str(path))
    for item in overrides:
        apply_override(cfg, item, free)
    root = _read_yaml(chain[0])
    root.pop("base", None)
    check_values(cfg, root, lambda p: _origin(p, chain, overrides))
    return cfg


def save_config(cfg: dict, path) -> None:
    """Write the resolved config as YAML atomically (path.tmp then os.replace)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False, default_flow_style=False)


def add_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--config`, `--out` and positional `a.b=value` overrides to an argument parser."""
    parser.add_argument("--config", required=True, help="YAML config file (may use `base:`)")
    parser.add_argument("--out", required=True, help="output directory of the run")
    parser.add_argument("overrides", nargs="*", default=[], help="config overrides of the form a.b=value")
    parser.add_argument("--restart", action="store_true",
                        help="start over: delete an earlier run in --out (finished or not) instead of resuming it")
    return parser


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for every leaf that differs between two resolved configs."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b, key = old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, key + ".")
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def config_from_args(args: argparse.Namespace) -> dict:
    """Load the config named by parsed `add_config_args` arguments."""
    return load_config(args.config, args.overrides)

