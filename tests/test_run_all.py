"""run_all.sh with a fake, fast method: skip finished steps, resume a killed run, failures, --table, --force.

The fake method lives in a temporary directory (fakem/run_steps.sh + fakem/work.py) and is plugged in through
RUN_ALL_STEPS_ROOT / RUN_ALL_METHODS, exactly as a real method's <method>/run_steps.sh is.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORK_PY = '''
import argparse, json, os, sys, time
from common.results.tables import published_table, write_result
ap = argparse.ArgumentParser()
ap.add_argument("--out"); ap.add_argument("--steps", type=int, default=2); ap.add_argument("--sleep", type=float, default=0)
ap.add_argument("--table", default=None); ap.add_argument("--fail", action="store_true")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
if os.path.exists(os.path.join(a.out, "done.json")):
    sys.exit(0)
with open(os.path.join(a.out, "invocations.txt"), "a") as f:
    f.write("run\\n")
prog = os.path.join(a.out, "progress.txt")
start = int(open(prog).read()) if os.path.exists(prog) else 0  # a checkpoint: resume where we stopped
print("start at", start, flush=True)
for s in range(start, a.steps):
    time.sleep(a.sleep)
    open(prog + ".tmp", "w").write(str(s + 1)); os.replace(prog + ".tmp", prog)
if a.fail:
    print("fake failure", file=sys.stderr); sys.exit(3)
if a.table:
    keys = {k: "fixed" if k == "mode" else 1000 for k in published_table(a.table)["keys"]}
    write_result(os.path.join(a.out, a.table + ".json"), a.table, [{**keys, "accuracy": [0.5, 0.6]}],
                 {"profile": "smoke", "seeds": [0, 1]})
json.dump({"ok": True}, open(os.path.join(a.out, "done.json"), "w"))
'''

RUN_STEPS = '''
fakem_steps() {
  step pretrain -- $PY -m fakem.work --out $OUT/pretrain --steps ${FAKE_STEPS:-2} --sleep ${FAKE_SLEEP:-0}
  step finetune --tables mpm.v1_jetclass -- $PY1 -m fakem.work --out $OUT/finetune --table mpm.v1_jetclass ${FAKE_FAIL:-}
  step probe --tables mpm.v1_pretraining -- $PY1 -m fakem.work --out $OUT/probe --table mpm.v1_pretraining
  step tables --always --tables mpm.v1_jetclass,mpm.v1_pretraining -- $PY1 -m fakem.work --out $OUT/tables_tmp_$RANDOM
}
'''


@pytest.fixture
def kit(tmp_path, repo_root):
    fake = tmp_path / "methods"
    (fake / "fakem").mkdir(parents=True)
    (fake / "fakem" / "__init__.py").write_text("")
    (fake / "fakem" / "work.py").write_text(WORK_PY)
    (fake / "fakem" / "run_steps.sh").write_text(RUN_STEPS)
    env = dict(os.environ, RUN_ALL_STEPS_ROOT=str(fake), RUN_ALL_METHODS="fakem",
               PYTHONPATH=f"{fake}{os.pathsep}{repo_root}")

    class Kit:
        out = tmp_path / "runs"
        results = tmp_path / "results"

        def args(self, *extra):
            return ["bash", str(repo_root / "run_all.sh"), "--profile", "smoke", "--out-dir", str(self.out),
                    "--results-dir", str(self.results), "--data-dir", str(tmp_path / "data"), *extra]

        def run(self, *extra, **envs):
            return subprocess.run(self.args(*extra), env={**env, **envs}, capture_output=True, text=True,
                                  timeout=120, cwd=tmp_path)

        def popen(self, *extra, **envs):
            return subprocess.Popen(self.args(*extra), env={**env, **envs}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, cwd=tmp_path, start_new_session=True)

        def invocations(self, step):
            p = self.out / "fakem" / step / "invocations.txt"
            return len(p.read_text().splitlines()) if p.exists() else 0

    return Kit()


def test_second_run_skips_finished_steps(kit):
    first = kit.run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert [kit.invocations(s) for s in ("pretrain", "finetune", "probe")] == [1, 1, 1]
    assert "(1/4) fakem/pretrain: done in" in first.stdout and "next: fakem/finetune" in first.stdout
    assert (kit.out / "logs" / "fakem__pretrain.log").read_text().count("start at 0") == 1
    second = kit.run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert [kit.invocations(s) for s in ("pretrain", "finetune", "probe")] == [1, 1, 1]
    assert second.stdout.count("done already, skipped") == 3
    results = (kit.results / "RESULTS.md").read_text()
    assert "### mpm.v1_jetclass:" in results and "55.0 ± 7.1 (n=2)" in results  # ours: mean ± std over 2 seeds


def test_killed_run_resumes_and_completes(kit):
    proc = kit.popen(FAKE_STEPS="40", FAKE_SLEEP="0.1")
    prog = kit.out / "fakem" / "pretrain" / "progress.txt"
    deadline = time.time() + 30
    while time.time() < deadline and not (prog.exists() and int(prog.read_text() or 0) >= 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # stop the whole run in the middle of the pretrain step
    proc.wait(timeout=30)
    time.sleep(0.3)
    stopped_at = int(prog.read_text())
    assert 3 <= stopped_at < 40
    assert not (kit.out / "fakem" / "pretrain" / "done.json").exists()
    time.sleep(0.3)
    assert int(prog.read_text()) == stopped_at  # the step's process tree is really gone
    again = kit.run(FAKE_STEPS="40", FAKE_SLEEP="0.0")
    assert again.returncode == 0, again.stdout + again.stderr
    log = (kit.out / "logs" / "fakem__pretrain.log").read_text()
    assert f"start at {stopped_at}" in log  # resumed from its checkpoint, not restarted
    assert int(prog.read_text()) == 40 and kit.invocations("pretrain") == 2
    assert kit.invocations("finetune") == 1 and kit.invocations("probe") == 1


def test_failed_step_skips_the_rest_of_its_method_and_is_flagged(kit):
    res = kit.run(FAKE_FAIL="--fail")
    assert res.returncode != 0
    assert "fakem/finetune: FAILED (exit 3)" in res.stdout and "fake failure" in res.stdout
    assert "fakem/probe: skipped (an earlier step of fakem failed)" in res.stdout
    assert kit.invocations("probe") == 0
    text = (kit.results / "RESULTS.md").read_text()
    assert "**missing** (step fakem/finetune failed; log: " in text
    assert "**missing** (step fakem/probe skipped-after-failure" in text
    status = (kit.out / "status.tsv").read_text().splitlines()
    assert any(l.startswith("fakem/finetune\tfailed\t") for l in status)
    # fixing the failure: the rerun starts at the failed step; the finished pretrain step is skipped
    fixed = kit.run()
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert kit.invocations("pretrain") == 1 and kit.invocations("probe") == 1
    assert "**missing**" not in (kit.results / "RESULTS.md").read_text()


def test_table_selects_its_steps_and_dependencies_and_force_reruns(kit):
    res = kit.run("--table", "mpm.v1_pretraining")
    assert res.returncode == 0, res.stdout + res.stderr
    assert kit.invocations("pretrain") == 1 and kit.invocations("probe") == 1
    assert kit.invocations("finetune") == 0  # not needed for this table
    listing = kit.run("--list")
    assert listing.returncode == 0
    assert "done    fakem/pretrain" in listing.stdout and "todo    fakem/finetune" in listing.stdout
    forced = kit.run("--force", "--table", "mpm.v1_pretraining")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert kit.invocations("pretrain") == 1  # --force deletes the step directory and runs it afresh
    assert (kit.out / "fakem" / "pretrain" / "done.json").exists()
    assert "done already" not in forced.stdout


def test_bad_options_and_step_declarations_fail_clearly(kit, tmp_path):
    res = kit.run("--profile", "huge")
    assert res.returncode == 2 and "--profile must be smoke, mini or paper" in res.stderr
    res = kit.run("--table", "nosuch.table")
    assert res.returncode == 2 and "no step declares it" in res.stderr
    bad = tmp_path / "methods" / "fakem" / "run_steps.sh"
    bad.write_text("fakem_steps() {\n  step a python -c pass\n}\n")
    res = kit.run()
    assert res.returncode == 2 and "step fakem/a: unknown option" in res.stderr


def test_run_all_and_ci_scripts_are_valid_bash_and_ci_runs_the_readme_test_command(repo_root):
    for script in ("run_all.sh", ".ci/run"):
        subprocess.run(["bash", "-n", str(repo_root / script)], check=True)
    readme = (repo_root / "README.md").read_text()
    ci = (repo_root / ".ci" / "run").read_text()
    cmd = "python -m pytest -q tests"
    assert cmd in readme and f"$PY -m pytest -q tests" in ci
    assert "pip install torch==2.13.0" in ci and ci.index("torch==2.13.0") < ci.index("-r requirements.txt")
    assert "run_all.sh --profile smoke" in ci


def test_data_steps_come_first_and_sizes_follow_the_profile(kit, tmp_path):
    steps = tmp_path / "methods" / "fakem" / "run_steps.sh"
    steps.write_text("fakem_steps() {\n  need_data jetclass qg jetclass_atlas=QCD,Tbqq\n  need_data jetclass_atlas=Tbqq,Wqq\n"
                     "  step a -- python -c pass --out $OUT/a data.root=$JETCLASS\n}\n")
    smoke = kit.run("--list")
    assert smoke.returncode == 0, smoke.stderr
    lines = [l for l in smoke.stdout.splitlines() if l[:4].strip().isdigit()]
    assert [l.split()[2] for l in lines] == ["data/sim_jetclass", "data/sim_jetclass_atlas", "data/sim_qg", "fakem/a",
                                             "data_check/validate_jetclass"]
    assert "common.simulate jetclass --jets-per-class 60 --out" in smoke.stdout
    assert "--detector atlas --jets-per-class 30 --classes QCD,Tbqq,Wqq --out" in smoke.stdout
    assert f"data.root={tmp_path}/data/jetclass" in smoke.stdout
    mini = kit.run("--list", "--profile", "mini")
    assert "--jets-per-class 3000" in mini.stdout
    paper = kit.run("--list", "--profile", "paper", "--gpus", "4")
    assert "locate_jetclass" in paper.stdout and "locate_qg" in paper.stdout
    assert "common.simulate jetclass --jets-per-class" not in paper.stdout  # real JetClass, not simulated
    assert "common.simulate jetclass --detector atlas" in paper.stdout  # the second detector is always simulated
    assert f"data.root={tmp_path}/data/JetClass/Pythia" in paper.stdout
    steps.write_text("fakem_steps() {\n  step a -- $PY -m x --out $OUT/a\n}\n")
    multi = kit.run("--list", "--profile", "paper", "--gpus", "4", "--nnodes", "2", "--rdzv-endpoint", "h:29500")
    assert "torchrun --nproc_per_node=4 --nnodes=2 --rdzv_backend=c10d --rdzv_endpoint=h:29500" in multi.stdout
    assert kit.run("--list", "--profile", "paper", "--nnodes", "2").returncode == 2


def test_other_nodes_wait_for_node0_single_process_steps(kit, tmp_path):
    steps = tmp_path / "methods" / "fakem" / "run_steps.sh"
    steps.write_text("fakem_steps() {\n"
                     "  step eval -- $PY1 -m fakem.work --out $OUT/eval\n"
                     "  step tables --always -- $PY1 -m fakem.work --out $OUT/tables\n}\n")
    proc = kit.popen("--profile", "paper", "--nnodes", "2", "--rdzv-endpoint", "h:1", "--node-rank", "1",
                     RUN_ALL_POLL_S="0.2")
    time.sleep(2.0)
    assert proc.poll() is None  # still waiting for node 0
    assert kit.invocations("eval") == 0  # node 1 did not run the single-process step itself
    (kit.out / "fakem" / "eval").mkdir(parents=True)
    (kit.out / "fakem" / "eval" / "done.json").write_text("{}")  # node 0 finished it
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "fakem/eval: finished by node 0" in out and "fakem/tables: left to node 0" in out
    assert kit.invocations("eval") == 0 and kit.invocations("tables") == 0
    assert not (kit.results / "RESULTS.md").exists()  # node 0 writes it


def test_editing_run_all_during_a_run_does_not_corrupt_it(kit, tmp_path, repo_root):
    copy = tmp_path / "copy" / "run_all.sh"
    copy.parent.mkdir()
    copy.write_text((repo_root / "run_all.sh").read_text())
    args = kit.args()
    args[1] = str(copy)
    env = dict(os.environ, RUN_ALL_STEPS_ROOT=str(tmp_path / "methods"), RUN_ALL_METHODS="fakem",
               PYTHONPATH=f"{tmp_path / 'methods'}{os.pathsep}{repo_root}", FAKE_STEPS="15", FAKE_SLEEP="0.1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path, start_new_session=True)
    time.sleep(0.7)
    text = copy.read_text()
    copy.write_text("echo CORRUPTED; exit 9\n" + text[len(text) // 2:])  # e.g. a `git pull` in the middle of a run
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "CORRUPTED" not in out and "finished in" in out


def _run_jobs_two(kit):
    """run_all --jobs 2 on the fake method: (result, at), at(text) = index of the first fakem/ line holding text."""
    res = kit.run("--jobs", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [l for l in res.stdout.splitlines() if "fakem/" in l]
    return res, lambda text: next(i for i, l in enumerate(lines) if text in l)


def test_jobs_two_runs_independent_steps_side_by_side_and_keeps_dependencies(kit, tmp_path):
    steps = tmp_path / "methods" / "fakem" / "run_steps.sh"
    steps.write_text(
        "fakem_steps() {\n"
        "  step pretrain -- $PY -m fakem.work --out $OUT/pretrain --steps 3 --sleep 0.2\n"
        "  step finetune --tables mpm.v1_jetclass -- $PY1 -m fakem.work --out $OUT/finetune --steps 6 --sleep 0.2 "
        "--table mpm.v1_jetclass ${FAKE_FAIL:-}\n"
        "  step probe --tables mpm.v1_pretraining -- $PY1 -m fakem.work --out $OUT/probe --steps 12 --sleep 0.2 "
        "--table mpm.v1_pretraining\n"
        "  step late --tables mpm.v1_pretraining --after pretrain -- $PY1 -m fakem.work --out $OUT/late\n"
        "  step tables --always -- $PY1 -m fakem.work --out $OUT/tables_tmp_$RANDOM\n}\n")
    res, at = _run_jobs_two(kit)
    # pretrain first; finetune and probe both start before either finishes; tables only after every other step
    assert at("fakem/pretrain: done") < at("fakem/finetune: running") < at("fakem/probe: running")
    assert at("fakem/probe: running") < at("fakem/finetune: done")
    assert at("fakem/tables: running") > max(at("fakem/finetune: done"), at("fakem/probe: done"), at("fakem/late: done"))
    assert "jobs: 2" in res.stdout
    # a failure skips what has not started; a rerun redoes only the failed and skipped steps
    for d in ("finetune", "probe", "late"):  # as if never run (their progress files are their checkpoints)
        for f in ("done.json", "progress.txt"):
            (kit.out / "fakem" / d / f).unlink(missing_ok=True)
    failed = kit.run("--jobs", "2", FAKE_FAIL="--fail")
    assert failed.returncode != 0 and "fakem/finetune: FAILED (exit 3)" in failed.stdout
    assert "fakem/late: skipped (an earlier step of fakem failed)" in failed.stdout
    assert kit.invocations("pretrain") == 1
    assert kit.run("--jobs", "x").returncode == 2


def _mpm_steps(repo_root, profile, *extra):
    import re

    res = subprocess.run(["bash", "run_all.sh", "--list", "--only", "mpm", "--profile", profile, "--data-dir",
                          "/nonexistent", "--out-dir", "/nonexistent/runs", *extra], cwd=repo_root, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    return {m.group(1): lines[i + 1].strip() for i, line in enumerate(lines)
            if (m := re.match(r"\s*\d+\s+\S+\s+mpm/(\S+)", line))}


def test_mini_pretrains_the_targets_rows_three_times_and_drops_ssfm(repo_root):
    """The claims comparing pretraining targets are decided over pretraining runs: mini (with --table
    mpm.v1_pretraining; its default run has the mpmv1 row only) pretrains their three rows with seeds 0 (config), 1
    and 2 and probes every extra run with one probe seed, and so the positional-encoding rows; the SSFM pretraining,
    which no claim uses, runs in smoke and paper only."""
    import shlex
    default = _mpm_steps(repo_root, "mini")
    assert {s for s in default if s.startswith(("pretrain_mpmv1", "probe_mpmv1", "tokenizer_v1", "v1_new_classes"))} \
        == {"tokenizer_v1", "pretrain_mpmv1", "pretrain_mpmv1_seed1", "pretrain_mpmv1_seed2", "probe_mpmv1",
            "probe_mpmv1_seed1", "probe_mpmv1_seed2"}
    assert "v2_jetclass_scratch_all" not in default and "v2_jetclass_scratch" in default
    steps = _mpm_steps(repo_root, "mini", "--table", "mpm.v1_pretraining")
    assert "tokenizer_v1_kmeans" in steps and "v1_jetclass_finetune" not in steps
    # the new-classes study (an underpowered claim at mini scale) and MPMv2's supervised ceiling: when asked for
    classes = _mpm_steps(repo_root, "mini", "--table", "mpm.v1_new_classes")
    assert {"tokenizer_v1_6class", "pretrain_mpmv1_6class", "pretrain_mpmv1_6class_seed2", "v1_new_classes_scratch",
            "v1_new_classes_finetune_seed1"} <= set(classes) and "probe_mpmv1" not in classes
    assert "v2_jetclass_scratch_all" in _mpm_steps(repo_root, "mini", "--table", "mpm.v2_jetclass")
    for row in ("mpmv1", "mpmv1_kmeans", "mpmv1_regression", "mpmv1_vqvae_nope", "mpmv1_vqvae_backbonepe"):
        assert "seed=" not in steps[f"pretrain_{row}"]
        for s in (1, 2):
            cmd = steps[f"pretrain_{row}_seed{s}"]
            assert f"configs/mini/{row}.yaml" in cmd and f"pretrain/{row}_seed{s} " in cmd and cmd.endswith(f"seed={s}")
            probe = steps[f"probe_{row}_seed{s}"]
            assert f"pretrained.run=/nonexistent/runs/mpm/pretrain/{row}_seed{s}" in probe
            assert shlex.split(probe)[-1] == "finetune.seeds=[0]"
    assert not any("ssfm" in s for s in steps)
    smoke = _mpm_steps(repo_root, "smoke")
    assert "pretrain_mpmv2_ssfm" in smoke
    # smoke: the pretrainings behind the pretrained-vs-scratch claims (mpmv1, mpmv2 regression) three times, and the
    # mpmv1 probe on each (tests/test_pretraining_replicates.py checks every claim's studies); nothing else
    assert sorted(s for s in smoke if s.startswith("pretrain") and "_seed" in s) == [
        f"pretrain_{r}_seed{s}" for r in ("mpmv1", "mpmv2_regression") for s in (1, 2)]
    assert not any(s.startswith("probe_") and "_seed" in s and not s.startswith("probe_mpmv1_seed") for s in smoke)
    assert not any("_seed" in s for s in _mpm_steps(repo_root, "paper"))


def test_jobs_two_starts_a_ready_pretraining_before_earlier_ready_steps(kit, tmp_path):
    """A free slot takes a ready pretraining step first, whatever its place in the list: the long steps start early
    and short ones fill the end (list order left HEP-JEPA's pretrainings, the last in the list, for the end)."""
    steps = tmp_path / "methods" / "fakem" / "run_steps.sh"
    steps.write_text(
        "fakem_steps() {\n"
        "  step short1 --after '' -- $PY1 -m fakem.work --out $OUT/short1 --steps 4 --sleep 0.2\n"
        "  step short2 --after '' -- $PY1 -m fakem.work --out $OUT/short2 --steps 4 --sleep 0.2\n"
        "  step pretrain_last --after '' -- $PY -m fakem.work --out $OUT/pretrain_last --steps 4 --sleep 0.2\n"
        "  step probe --tables mpm.v1_pretraining --after pretrain_last -- $PY1 -m fakem.work --out $OUT/probe "
        "--table mpm.v1_pretraining\n}\n")
    res, at = _run_jobs_two(kit)
    # the two slots: short1 (first in the list) and pretrain_last (a pretraining); short2 waits for a slot
    assert at("fakem/pretrain_last: running") < at("fakem/short2: running")
    assert at("fakem/short1: running") < at("fakem/short2: running")
    assert at("fakem/pretrain_last: done") < at("fakem/probe: running")
    assert all((kit.out / "fakem" / d / "done.json").exists() for d in ("short1", "short2", "pretrain_last", "probe"))


def test_mini_compares_frozen_only_unless_a_finetune_grid_is_asked(repo_root):
    """Which pretraining? decides no claim: mini's default embed steps run the frozen probe only (no fine-tuned column,
    the 2-hour budget); RUN_ALL_COMPARE_FINETUNE_GRID=100 adds the fine-tuned runs; smoke keeps its grid of 10."""
    import shlex

    def embeds(profile, **env):
        res = subprocess.run(["bash", "run_all.sh", "--list", "--profile", profile, "--data-dir", "/nonexistent",
                              "--out-dir", "/nonexistent/runs"], cwd=repo_root, capture_output=True, text=True,
                             timeout=120, env={**os.environ, **env})
        assert res.returncode == 0, res.stderr[-2000:]
        lines = res.stdout.splitlines()
        cmds = [shlex.split(lines[i + 1]) for i, l in enumerate(lines) if "/embed_" in l]
        assert len(cmds) >= 8
        return [c[c.index("--finetune-grid") + 1] for c in cmds]
    assert set(embeds("mini")) == {""}
    assert set(embeds("mini", RUN_ALL_COMPARE_FINETUNE_GRID="100")) == {"100"}
    assert set(embeds("smoke")) == {"10"}


def test_mini_runs_the_shortcut_ablation_only_when_asked_and_never_the_paper_ablations(repo_root):
    """Neither HEP-JEPA ablation decides a claim: mini's default run leaves both out (the 2-hour budget), runs the
    shortcut ablation (3 seeds x 4 arms) with --table hepjepa.ablation_shortcut; smoke and paper run both."""
    def names(profile, *extra):
        res = subprocess.run(["bash", "run_all.sh", "--list", "--only", "hepjepa", "--profile", profile, "--data-dir",
                              "/nonexistent", "--out-dir", "/nonexistent/runs", *extra], cwd=repo_root,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout
    mini, smoke = names("mini"), names("smoke")
    assert "hepjepa/shortcut_" not in mini and "hepjepa/ablation_base_pretrain" not in mini
    assert "hepjepa/pretrain " in mini and "hepjepa/ft_jetclass " in mini
    asked = names("mini", "--table", "hepjepa.ablation_shortcut")
    # the arms pretrain on their own: the main pretrainings are not pulled in through the table writer's ordering
    assert "hepjepa/pretrain " not in asked and "hepjepa/pretrain_seed1 " not in asked and "hepjepa/tables " in asked
    assert all(f"hepjepa/shortcut_{a}_s{s}_{k}" in asked for a in ("base", "inputs", "target_norm", "position")
               for s in (0, 1, 2) for k in ("pretrain", "probe", "fewshot"))
    assert "hepjepa/shortcut_position_s2_fewshot" in smoke
    assert "hepjepa/ablation_base_pretrain" in smoke and "hepjepa/ablation_patching_2g_probe" in smoke


# ------------------------------------------------------------------------------------- hostile options (issue: dirs)
def test_directory_that_cannot_be_made_is_one_line_and_nothing_at_root(kit, tmp_path):
    (tmp_path / "afile").write_text("")
    res = subprocess.run(kit.args()[:-6] + ["--out-dir", str(tmp_path / "afile" / "runs"), "--data-dir",
                                            str(tmp_path / "data"), "--results-dir", str(kit.results)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == f"run_all.sh: --out-dir {tmp_path}/afile/runs: cannot create it (Not a directory)"
    assert not Path("/status.tsv").exists() and not Path("/logs").exists()
    res = subprocess.run(kit.args("--data-dir", str(tmp_path / "afile" / "d"), "--list"), capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 2 and "--data-dir" in res.stderr and "cannot create it" in res.stderr
    assert "--out /jetclass" not in res.stdout


def test_read_only_out_dir_is_one_line(kit):
    res = subprocess.run(kit.args("--out-dir", "/proc"), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.strip() == "run_all.sh: --out-dir /proc: not writable"
    assert res.stdout == ""


@pytest.mark.parametrize("args", [["--profile"], ["--profile", "--list"], ["--out-dir"]])
def test_option_without_value_says_so(kit, args):
    res = subprocess.run(["bash", str(Path(__file__).parents[1] / "run_all.sh"), *args], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.strip() == f"run_all.sh: {args[0]} needs a value (see bash run_all.sh --help)"


def test_every_step_keeps_a_path_with_a_space_as_one_word(tmp_path, repo_root):
    import shlex
    base = tmp_path / "my data"
    res = subprocess.run(["bash", str(repo_root / "run_all.sh"), "--profile", "mini", "--list", "--out-dir",
                          str(base / "runs"), "--data-dir", str(base / "sim"), "--results-dir", str(base / "res")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    cmds = [shlex.split(line) for line in res.stdout.splitlines() if line.startswith("       ")]
    assert len(cmds) > 50
    for words in cmds:
        split = [w for w in words if w.endswith(str(tmp_path / "my")) or w.startswith("data/")]
        assert not split, words
        assert any(str(base) in w for w in words), words      # every step reads or writes under the folder


def test_a_path_with_a_space_runs_end_to_end(kit, tmp_path):
    steps = kit.out.parent / "methods" / "fakem" / "run_steps.sh"
    steps.write_text(RUN_STEPS.replace("$OUT/", '"$OUT"/'))         # a method's steps quote their paths
    kit.out = tmp_path / "with space" / "runs"
    res = kit.run()
    assert res.returncode == 0, res.stdout + res.stderr
    assert kit.invocations("pretrain") == 1 and kit.invocations("probe") == 1


def test_two_run_alls_into_one_out_dir(kit):
    first = kit.popen(FAKE_STEPS="40", FAKE_SLEEP="0.1")
    try:
        prog = kit.out / "fakem" / "pretrain" / "progress.txt"
        deadline = time.time() + 30
        while time.time() < deadline and not prog.exists():
            time.sleep(0.05)
        second = kit.run()
        assert second.returncode == 2
        assert f"is in use by another run_all.sh (pid {first.pid} on host " in second.stderr
        assert "interrupted" not in (kit.out / "status.tsv").read_text()
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=30)


def test_omp_num_threads_does_not_shrink_the_core_count(repo_root, tmp_path):
    """GNU nproc honours OMP_NUM_THREADS: a user exporting OMP_NUM_THREADS=1 must still get one simulation worker
    per core (and mini's steps side by side), not one."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    cores = subprocess.run(["nproc"], capture_output=True, text=True, env=env).stdout.strip()
    res = subprocess.run(["bash", "run_all.sh", "--list", "--profile", "mini", "--data-dir", str(tmp_path / "d"),
                          "--out-dir", str(tmp_path / "r")], cwd=repo_root, capture_output=True, text=True,
                         timeout=120, env={**env, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"--workers {cores} " in res.stdout


def test_hepjepa_extra_pretraining_runs_do_not_wait_for_the_first(repo_root):
    """run_all's default --after chains a method's steps without --tables: the three HEP-JEPA pretrainings ran one
    after another with a core idle (about 25 wall-minutes of the 2026-12-07 default run). Each extra run starts at once."""
    text = (repo_root / "hepjepa" / "run_steps.sh").read_text()
    assert 'step pretrain_seed$s --after "" --' in text
