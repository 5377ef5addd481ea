"""Hostile round 2, the shell / simulation / data half (issue 32): nothing a user types, names or leaves in a folder
runs as code, no folder the kit did not make is deleted or stamped, two writers never share a temporary file, a moved
run still reads, a read-only data folder still trains. Every refusal is one line naming the option or file.

The run_all.sh cases use a fake method (tests/test_run_all.py's kit) whose steps need simulated data; nothing here
runs Pythia: every data step is refused, listed (--list) or found done before it would simulate."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.test_run_all import kit  # noqa: F401  (the fixture)

NEEDS = 'fakem_steps() {\n  need_data qg toptagging\n  step pretrain -- $PY -m fakem.work --out $OUT/pretrain\n}\n'


@pytest.fixture
def dkit(kit, tmp_path):  # noqa: F811
    """The fake method, needing simulated qg and top-tagging data (so the data steps and their seeds exist)."""
    (tmp_path / "methods" / "fakem" / "run_steps.sh").write_text(NEEDS)
    kit.data = tmp_path / "data"
    return kit


def _one_line_error(res, *words):
    err = res.stderr.strip()
    assert res.returncode == 2, res.stdout + res.stderr
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


class _RunsCommand:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


# ------------------------------------------------------------------------------------------- 1. no pickle in readers
def test_validate_reads_a_toptagging_file_without_unpickling_its_object_column(tmp_path):
    from common.simulate.validate import load_observables

    from tests.data_factory import toptagging_frame
    marker = tmp_path / "pwned"
    df = toptagging_frame(8, 0)
    df["note"] = [_RunsCommand(marker)] * len(df)          # an object column: pandas pickles it
    (tmp_path / "top").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df.to_hdf(tmp_path / "top" / "train.h5", key="table", format="fixed", mode="w")
    obs = load_observables(str(tmp_path / "top"), max_jets=100)
    assert not marker.exists()
    assert {k: len(v["mass"]) for k, v in obs.items()} == {"QCD": 4, "Top": 4}


def test_no_reader_of_the_kit_can_unpickle(repo_root):
    """grep: no pandas.read_hdf / read_pickle / pickle.load / allow_pickle=True, every torch.load weights_only=True."""
    import re
    bad = []
    for path in sorted(repo_root.glob("**/*.py")):
        if "tests" in path.parts or ".git" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"\.read_hdf\(|read_pickle\(|pickle\.loads?\(|allow_pickle\s*=\s*True|HDFStore\(", code) or \
                    ("torch.load(" in code and "weights_only=True" not in code):
                bad.append(f"{path.relative_to(repo_root)}:{n}: {line.strip()}")
    assert not bad, bad


# ------------------------------------------------------------------------------------------- 2. quotes in --data-dir
def test_a_quote_and_command_in_the_paper_data_dir_run_nothing(dkit, tmp_path):
    marker = tmp_path / "MARK"
    data = tmp_path / f"d'$(touch {marker});'x"
    res = dkit.run("--profile", "paper", "--data-dir", str(data), "--only", "fakem")
    assert not marker.exists()
    log = (dkit.out / "logs" / "data__locate_toptagging.log").read_text()
    assert f"missing {data}/toptagging/train.h5: run python -m common.data.download toptagging --out {data}" in log
    assert res.returncode != 0 and "data/locate_toptagging: FAILED" in res.stdout


# ------------------------------------------------------------------------------------------- 3. numbers
INJECT = "PATH[$(touch {m})]"


@pytest.mark.parametrize("opt", ["--gpus", "--nnodes", "--node-rank", "--workers", "--threads", "--jobs",
                                 "--pretrain-runs"])
@pytest.mark.parametrize("value", [INJECT, "abc", "08", "-1", "1.5", "99999999999", " 2"])
def test_every_numeric_option_is_checked_before_any_arithmetic(dkit, tmp_path, opt, value):
    marker = tmp_path / "MARK"
    extra = ("--profile", "paper", "--nnodes", "2", "--rdzv-endpoint", "h:1") if opt == "--node-rank" else ()
    res = dkit.run(*extra, opt, value.format(m=marker), "--list")
    assert not marker.exists()
    _one_line_error(res, f"run_all.sh: {opt} must be")


@pytest.mark.parametrize("var", ["RUN_ALL_SIM_SEED", "RUN_ALL_SIM_QG", "RUN_ALL_SIM_TOP", "RUN_ALL_SIM_JETCLASS",
                                 "RUN_ALL_SIM_ATLAS", "RUN_ALL_SIM_BTAG", "RUN_ALL_POLL_S",
                                 "RUN_ALL_COMPARE_FINETUNE_GRID"])
@pytest.mark.parametrize("value", ["PATH[$(touch {m})]", "abc", "1e3"])
def test_every_numeric_variable_is_checked_before_any_arithmetic(dkit, tmp_path, var, value):
    marker = tmp_path / "MARK"
    res = dkit.run("--list", **{var: value.format(m=marker)})
    assert not marker.exists()
    _one_line_error(res, f"run_all.sh: {var}")


def test_gpus_abc_is_named_not_an_unbound_variable(dkit):
    err = _one_line_error(dkit.run("--profile", "paper", "--gpus", "abc", "--list"), "--gpus")
    assert "unbound" not in err and "line " not in err


@pytest.mark.parametrize("args,words", [
    (("--node-rank", "2", "--nnodes", "2", "--rdzv-endpoint", "h:1", "--profile", "paper"), "--node-rank must be at most 1"),
    (("--gpus", "0", "--profile", "paper"), "--gpus must be a whole number >= 1"),
    (("--only", "*"), "--only must be method names"),
    (("--rdzv-endpoint", "h:1;touch x", "--nnodes", "2", "--profile", "paper"), "--rdzv-endpoint must be HOST:PORT"),
    (("--rdzv-id", "a b*"), "--rdzv-id must be letters"),
])
def test_other_values_that_end_up_in_commands(dkit, args, words):
    _one_line_error(dkit.run(*args, "--list"), words)


def test_valid_numbers_still_pass(dkit):
    res = dkit.run("--list", "--workers", "3", "--jobs", "1", "--threads", "2", RUN_ALL_SIM_SEED="0",
                   RUN_ALL_SIM_QG="40", RUN_ALL_COMPARE_FINETUNE_GRID="10,100")
    assert res.returncode == 0, res.stderr
    assert "common.simulate qg --jets 40 " in res.stdout and "--workers 3 --seed 3" in res.stdout


# ------------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize("bad", ["data\n", "da\nta", "da\tta"])
@pytest.mark.parametrize("opt", ["--data-dir", "--out-dir", "--results-dir"])
def test_a_path_with_a_newline_or_tab_is_refused(dkit, tmp_path, opt, bad):
    args = dkit.args("--list")
    args[args.index(opt) + 1] = str(tmp_path / bad)
    res = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "RUN_ALL_STEPS_ROOT": str(tmp_path / "methods"), "RUN_ALL_METHODS": "fakem"})
    _one_line_error(res, opt, "newline or tab")
    assert not (tmp_path / "data").exists() or opt != "--data-dir"


def test_a_unicode_path_with_quotes_is_one_word_in_every_command(dkit, tmp_path):
    import shlex
    data = tmp_path / "dätä ü 'q' \"d\" $HOME ;x"
    res = dkit.run("--list", "--data-dir", str(data))
    assert res.returncode == 0, res.stderr
    cmds = [shlex.split(line) for line in res.stdout.splitlines() if line.startswith("       ")]
    sims = [w for w in cmds if "common.simulate" in w]
    assert len(sims) == 2 and all(f"{data}/qg" in w or f"{data}/toptagging" in w for w in sims)


# ------------------------------------------------------------------------------------------- 4. --force-data
def test_force_data_refuses_a_folder_the_kit_did_not_simulate(dkit):
    mine = dkit.data / "qg"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    res = dkit.run("--force-data", RUN_ALL_SIM_QG="2", RUN_ALL_SIM_TOP="2")
    err = _one_line_error(res, "--force-data:", str(mine), "no simulate.json")
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert "not deleting" in err or "refusing to delete" in err


def _kit_folder(out: Path, names=("QG_jets.npz", "QG_jets_1.npz", ".parts/qg_000_Quark.npz")):
    """A folder 'simulated' by the kit's frame (simulation()), with stand-in files instead of Pythia's."""
    from common.simulate.run import simulation
    files = [str(out / n) for n in names]
    with simulation(str(out), {"dataset": "qg", "jets": 4}, files):
        for f in files[:2]:
            Path(f).parent.mkdir(parents=True, exist_ok=True)
            Path(f).write_bytes(b"x")
    return files


def test_clean_deletes_only_what_the_simulator_recorded(tmp_path, capsys):
    from common.simulate.__main__ import main
    out = tmp_path / "qg"
    _kit_folder(out)
    (out / "QG_jets_1.npz.tmp").write_bytes(b"half")                  # left by an interrupted write
    (out / "mine.txt").write_text("keep")                             # the user's, added later
    (out / "done.json").write_text(json.dumps({"by": "run_all.sh", "command": "x"}))
    assert main(["clean", str(out)]) == 0
    assert "deleted 3 simulated file(s); kept 1 not written by the simulator (e.g. mine.txt)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [".simulate.lock", "mine.txt", "simulate.json"]
    # the cleaned folder is the kit's again: a new simulation with other settings may start there
    _kit_folder(out, names=("QG_jets.npz",))
    assert json.loads((out / "simulate.json").read_text())["files"] == ["QG_jets.npz"]


@pytest.mark.parametrize("record,words", [
    (None, "no simulate.json"),
    ({"dataset": "qg", "jets": 4, "finished": True}, "not marked as written by common.simulate"),   # older kit
    ({"written_by": "common.simulate", "files": ["../victim.txt"]}, "outside the folder"),
    ({"written_by": "common.simulate", "files": ["link/victim.txt"]}, "outside the folder"),
    ("{not json", "unreadable simulate.json"),
    ([1, 2], "not a JSON object"),
])
def test_clean_refuses_with_one_line_and_deletes_nothing(tmp_path, capsys, record, words):
    from common.simulate.__main__ import main
    out = tmp_path / "qg"
    out.mkdir()
    (tmp_path / "victim.txt").write_text("mine")
    (out / "link").symlink_to(tmp_path)
    (out / "data.npz").write_text("mine")
    if record is not None:
        (out / "simulate.json").write_text(record if isinstance(record, str) else json.dumps(record))
    with pytest.raises(SystemExit) as e:
        from common.cli import cli
        cli(main, ["clean", str(out)])
    assert e.value.code == 2 and words in capsys.readouterr().err
    assert (tmp_path / "victim.txt").exists() and (out / "data.npz").exists()


def test_clean_of_a_file_is_refused_and_the_file_kept(tmp_path, capsys):
    from common.cli import cli
    from common.simulate.__main__ import main
    f = tmp_path / "jets.h5"
    f.write_text("the user's file")
    with pytest.raises(SystemExit) as e:
        cli(main, ["clean", str(f)])
    assert e.value.code == 2 and "not a folder" in capsys.readouterr().err
    assert f.read_text() == "the user's file"


# ------------------------------------------------------------------------------------------- 5. never stamp
def test_simulating_into_a_folder_of_the_users_files_is_refused_never_stamped(tmp_path, capsys):
    from common.cli import cli
    from common.simulate.__main__ import main
    out = tmp_path / "qg"
    out.mkdir()
    (out / "QG_jets.npz").write_text("the user's own jets")
    with pytest.raises(SystemExit) as e:
        cli(main, ["qg", "--jets", "4", "--out", str(out), "--workers", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "files this kit did not simulate (e.g. 'QG_jets.npz')" in err
    assert sorted(p.name for p in out.iterdir()) == ["QG_jets.npz"]             # no simulate.json, no lock file


def test_a_symlinked_output_folder_holding_the_users_files_is_refused(tmp_path, capsys):
    from common.cli import cli
    from common.simulate.__main__ import main
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qg").symlink_to(tmp_path / "mine")
    with pytest.raises(SystemExit):
        cli(main, ["qg", "--jets", "4", "--out", str(tmp_path / "data" / "qg"), "--workers", "1"])
    assert "notes.txt" in capsys.readouterr().err and not (tmp_path / "mine" / "simulate.json").exists()


@pytest.mark.parametrize("content,words", [("{", "unreadable simulate.json"),
                                           ('{"dataset": "qg", "jets": 99}', "records different settings")])
def test_a_bad_or_other_simulate_json_is_one_line(tmp_path, capsys, content, words):
    from common.cli import cli
    from common.simulate.__main__ import main
    (tmp_path / "qg").mkdir()
    (tmp_path / "qg" / "simulate.json").write_text(content)
    with pytest.raises(SystemExit) as e:
        cli(main, ["qg", "--jets", "4", "--out", str(tmp_path / "qg"), "--workers", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,words", [
    (["validate", "{d}"], "no JetClass *.root, top-tagging *.h5 or QG_jets*.npz files found"),
    (["validate", "{d}/nothere"], "no JetClass"),
    (["validate", "{d}", "--max-jets", "-3"], "expected an integer >= 1"),
    (["qg", "--jets", "4", "--out", "{d}/afile"], "exists and is not a directory"),
])
def test_simulate_entry_errors_are_one_line(tmp_path, capsys, argv, words):
    from common.simulate.__main__ import main
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    d = str(tmp_path / "empty") if argv[0] == "validate" else str(tmp_path)
    res = subprocess.run([sys.executable, "-m", "common.simulate", *[a.format(d=d) for a in argv]],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_a_truncated_toptagging_file_is_one_line_in_validate(tmp_path):
    (tmp_path / "train.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    res = subprocess.run([sys.executable, "-m", "common.simulate", "validate", str(tmp_path)], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert res.returncode == 2 and "train.h5: cannot open as HDF5" in res.stderr and "Traceback" not in res.stderr


# ------------------------------------------------------------------------------------------- 6. two writers
def test_a_second_run_all_on_the_same_data_dir_is_refused_naming_the_holder(dkit):
    import fcntl
    dkit.data.mkdir()
    with open(dkit.data / ".run_all-data.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write("pid 4242 on host elsewhere since now\n")
        fh.flush()
        res = dkit.run(RUN_ALL_SIM_QG="2", RUN_ALL_SIM_TOP="2")
    _one_line_error(res, f"--data-dir {dkit.data} is in use by another run_all.sh", "pid 4242 on host elsewhere")
    assert not (dkit.data / "qg").exists()


def _path_without_flock(tmp_path) -> str:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            src = os.path.join(d, name)
            if name != "flock" and not (bin_ / name).exists() and os.access(src, os.X_OK) and os.path.isfile(src):
                (bin_ / name).symlink_to(src)
    return str(bin_)


def test_without_flock_a_lock_directory_names_the_holder_and_a_dead_one_is_taken_over(dkit, tmp_path):
    import socket
    path = _path_without_flock(tmp_path)
    lockdir = dkit.out / ".run_all.lock.d"
    lockdir.mkdir(parents=True)
    (lockdir / "holder").write_text(f"pid {os.getpid()} on host {socket.gethostname()} since now\n")
    res = dkit.run(PATH=path)
    _one_line_error(res, f"--out-dir {dkit.out} is in use by another run_all.sh (pid {os.getpid()} on host")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (lockdir / "holder").write_text(f"pid {dead.pid} on host {socket.gethostname()} since now\n")
    (tmp_path / "methods" / "fakem" / "run_steps.sh").write_text(
        'fakem_steps() {\n  step pretrain -- $PY -m fakem.work --out $OUT/pretrain\n}\n')
    res = dkit.run(PATH=path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not lockdir.exists()                                     # released at exit


def test_a_second_simulator_into_one_folder_is_refused(tmp_path):
    from common.simulate.run import dir_lock
    code = ("import sys, time; from common.simulate.run import dir_lock\n"
            f"with dir_lock({str(tmp_path / 'qg')!r}):\n    print('ready', flush=True); time.sleep(60)")
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parents[1])
    try:
        assert first.stdout.readline().strip() == "ready"
        with pytest.raises(ValueError, match=rf"another simulation is writing this folder \(pid {first.pid} on host"):
            with dir_lock(str(tmp_path / "qg")):
                pass
    finally:
        first.kill()
        first.wait()
    with dir_lock(str(tmp_path / "qg")):
        pass


@pytest.mark.parametrize("where", ["out", "sim"])
def test_a_lock_file_that_is_a_symlink_is_refused_not_truncated(dkit, tmp_path, where):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    if where == "out":
        dkit.out.mkdir()
        (dkit.out / ".run_all.lock").symlink_to(victim)
        _one_line_error(dkit.run(), ".run_all.lock", "symbolic link")
    else:
        from common.simulate.run import dir_lock
        (tmp_path / "qg").mkdir()
        (tmp_path / "qg" / ".simulate.lock").symlink_to(victim)
        with pytest.raises(ValueError, match="symbolic link"):
            with dir_lock(str(tmp_path / "qg")):
                pass
    assert victim.read_text() == "precious"


def test_data_dir_equal_to_out_dir_does_not_lock_itself_out(dkit, tmp_path):
    same = tmp_path / "both"
    (same / "qg").mkdir(parents=True)
    (same / "qg" / "mine.txt").write_text("x")                        # the simulation is refused at once (no Pythia)
    args = dkit.args()
    args[args.index("--data-dir") + 1] = str(same)
    args[args.index("--out-dir") + 1] = str(same)
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "RUN_ALL_STEPS_ROOT": str(tmp_path / "methods"), "RUN_ALL_METHODS": "fakem",
                              "PYTHONPATH": f"{tmp_path / 'methods'}{os.pathsep}{Path(__file__).parents[1]}",
                              "RUN_ALL_SIM_QG": "2", "RUN_ALL_SIM_TOP": "2"})
    assert "in use by another" not in res.stderr + res.stdout
    assert "data/sim_qg: FAILED" in res.stdout
    assert "files this kit did not simulate" in (same / "logs" / "data__sim_qg.log").read_text()


# ------------------------------------------------------------------------------------------- 7. --workers
def test_changing_workers_does_not_mark_the_simulation_to_be_redone(dkit):
    first = dkit.run("--list", "--workers", "3")
    cmd = next(line.strip() for line in first.stdout.splitlines() if "common.simulate qg" in line)
    (dkit.data / "qg").mkdir(parents=True, exist_ok=True)
    (dkit.data / "qg" / "done.json").write_text(json.dumps({"by": "run_all.sh", "command": cmd}))
    again = dkit.run("--list", "--workers", "5")
    line = next(line for line in again.stdout.splitlines() if "data/sim_qg" in line)
    assert " done " in line, again.stdout
    other = dkit.run("--list", "--workers", "5", RUN_ALL_SIM_QG="7")          # the jets themselves: redone
    assert " todo " in next(line for line in other.stdout.splitlines() if "data/sim_qg" in line)


def test_the_workers_never_reach_a_files_seed():
    import inspect

    from common.simulate.run import jetclass_tasks
    assert "workers" not in inspect.signature(jetclass_tasks).parameters
    a = jetclass_tasks("/x", 10, 3, ["QCD", "Hbb"], (0.8, 0.1, 0.1), 4, {})
    assert len({t.seed for t in a}) == len(a)


# ------------------------------------------------------------------------------------------- 8. moved run folder
def test_a_moved_run_folder_reads_every_cell(kit, tmp_path):  # noqa: F811
    from common.results.tables import collect_results, read_status
    res = kit.run()
    assert res.returncode == 0, res.stdout + res.stderr
    status = (kit.out / "status.tsv").read_text()
    assert str(kit.out) not in status                                # relative to the run folder
    moved = tmp_path / "elsewhere" / "runs copy"
    moved.parent.mkdir()
    shutil.move(str(kit.out), str(moved))
    st = read_status(moved)
    assert st["fakem/finetune"]["out"] == str(moved / "fakem" / "finetune")
    assert st["fakem/finetune"]["log"] == "logs/fakem__finetune.log"              # shown relative to the run
    assert set(collect_results(moved)) == {"mpm.v1_jetclass", "mpm.v1_pretraining"}


def test_an_old_status_tsv_with_absolute_paths_still_reads_after_a_move(tmp_path):
    from common.results.tables import read_status
    old = "/old/place/runs"
    (tmp_path / "status.tsv").write_text(
        f"mpm/tables\tdone\t1\t{old}/logs/mpm__tables.log\tmpm.toy\talways\t{old}/mpm/tables\n"
        f"data/sim_qg\tdone\t1\t{old}/logs/data__sim_qg.log\t\tstep\t/data/sim/qg\n")
    st = read_status(tmp_path)
    assert st["mpm/tables"]["out"] == str(tmp_path / "mpm" / "tables")
    assert st["data/sim_qg"]["out"] == "/data/sim/qg"                  # outside the run: kept


# ------------------------------------------------------------------------------------------- 9. read-only data root
def _qg_cfg(root, **kw):
    return dict(dataset="qg", root=str(root), train="QG_jets*.npz@0:0.8", val="QG_jets*.npz@0.8:0.9",
                test="QG_jets*.npz@0.9:1", features="part_kin", num_particles=None, classes=None, cache_dir=None,
                num_workers=0, **kw)


def _read_only(monkeypatch, root):
    """What a read-only mount looks like to the kit (tests run as root, which ignores permission bits)."""
    real_access, real_open = os.access, open
    root = str(root)

    def access(p, mode, *a, **k):
        return False if str(p).startswith(root) and mode & os.W_OK else real_access(p, mode, *a, **k)
    monkeypatch.setattr(os, "access", access)
    return real_open


def test_a_read_only_data_root_caches_under_xdg_and_says_so(tmp_path, monkeypatch, capsys):
    from common.data.datasets import load_arrays

    from tests.data_factory import write_qg
    root = tmp_path / "ro"
    root.mkdir()
    write_qg(str(root / "QG_jets.npz"), 40)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _read_only(monkeypatch, root)
    a = load_arrays(_qg_cfg(root), "train")
    assert len(a["label"]) == 32
    assert sorted(p.name for p in root.iterdir()) == ["QG_jets.npz"]            # nothing written into the data
    (cache,) = (tmp_path / "xdg" / "jetfm").iterdir()
    assert cache.name.startswith("ro-") and any(cache.iterdir())
    assert f"data: {root} is not writable; caching its converted arrays in {cache}" in capsys.readouterr().err


def test_when_no_cache_folder_can_be_written_the_error_names_data_cache_dir(tmp_path, monkeypatch):
    from common.data.datasets import load_arrays
    from common.data.features import DataError

    from tests.data_factory import write_qg
    root = tmp_path / "ro2"
    root.mkdir()
    write_qg(str(root / "QG_jets.npz"), 40)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "ro2" / "xdg"))      # also read-only
    _read_only(monkeypatch, root)
    with pytest.raises(DataError, match=r"set data\.cache_dir=<a writable folder>"):
        load_arrays(_qg_cfg(root), "train")
