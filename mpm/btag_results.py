"""The result files of the MPMv2 BTag tasks (common/published.yaml: mpm.v2_btag, mpm.v2_vertexing,
mpm.v2_track_origin; arXiv:2409.12589 out-of-domain figures): the mode and task keys of a run, and the file
<out>/<table_id>.json (common.results.write_result)."""
from __future__ import annotations

from pathlib import Path

from common.results import write_result

# the kit's finetune.mode -> the published `mode` key: the frozen study (fixed backbone) and the fine-tuned study,
# whose from-scratch baseline ("untrained" in jetssl workflow/full_pipeline.smk) is the published task "scratch"
PUBLISHED_MODE = {"fixed": "frozen", "finetune": "finetune", "scratch": "finetune"}


def table_keys(cfg: dict, fc: dict, pcfg: dict) -> dict:
    """{mode, task} of the rows: btag.table_mode / btag.table_task, or (null) from finetune.mode and the
    pretraining task (model.task; "scratch" for a randomly initialised backbone)."""
    b = cfg["btag"]
    mode = b["table_mode"] or PUBLISHED_MODE[fc["mode"]]
    task = b["table_task"] or ("scratch" if fc["mode"] == "scratch" else pcfg["model"]["task"])
    if mode not in ("finetune", "frozen"):
        raise ValueError(f"config: btag.table_mode = {mode!r}; expected finetune or frozen (common/published.yaml)")
    return {"mode": mode, "task": task}


def write_btag_result(out, table_id: str, rows: list[dict], cfg: dict, pcfg: dict, sources: list) -> Path:
    """<out>/<table_id>.json with the run's meta (profile, data, pretraining scale, seeds)."""
    path = Path(out) / f"{table_id}.json"
    t = pcfg.get("train") or {}
    meta = {"profile": cfg["btag"]["profile"], "dataset": f"{cfg['data']['dataset']} at {cfg['data']['root']}",
            "seeds": cfg["finetune"]["seeds"], "class_order": "light, c, b", "sources": sources,
            "scale": f"pretraining {t.get('steps')} steps x batch {t.get('batch_size')}"}
    write_result(path, table_id, rows, meta)
    return path
