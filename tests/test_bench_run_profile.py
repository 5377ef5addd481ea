"""bench/run_profile.py: step time per part from a run's status.tsv (the last line of a step wins)."""
import pytest

from bench.run_profile import main, profile


def test_time_per_part_counts_the_last_status_of_each_step(tmp_path, capsys):
    lines = ["mpm/pretrain_a\tstarted\t0\tlog\t\tstep\tout", "mpm/pretrain_a\tdone\t120\tlog\t\tstep\tout",
             "mpm/probe_a\tfailed\t30\tlog\tt\tstep\tout", "data/sim\tdone\t60\tlog\t\tstep\tout"]
    (tmp_path / "status.tsv").write_text("\n".join(lines) + "\n")
    parts, steps = profile(tmp_path)
    assert parts["mpm"]["seconds"] == 150 and parts["mpm"]["done"] == 1 and parts["mpm"]["failed"] == 1
    assert "started" not in parts["mpm"] and steps[0] == (120.0, "mpm/pretrain_a", "done")
    main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| mpm | 1 | failed 1 | 150 s (2.5 min) |" in out and "| all | 2 | failed 1 | 210 s (3.5 min) |" in out


def test_a_resumed_run_counts_the_time_of_the_run_that_did_the_step(tmp_path):
    lines = ["mpm/a\tdone\t100\tlog\t\tstep\tout", "mpm/b\tinterrupted\t40\tlog\t\tstep\tout",
             "mpm/a\tdone-earlier\t0\tlog\t\tstep\tout", "mpm/b\tdone\t70\tlog\t\tstep\tout",
             "mpm/a\tnot-selected\t0\tlog\t\tstep\tout", "mpm/c\tnot-selected\t0\tlog\t\tstep\tout"]
    (tmp_path / "status.tsv").write_text("\n".join(lines) + "\n")
    parts, steps = profile(tmp_path)
    assert parts["mpm"]["done"] == 2 and parts["mpm"]["seconds"] == 210   # 100 + (40 interrupted + 70)
    assert parts["mpm"]["not-selected"] == 1                               # c never ran


def test_a_folder_without_status_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="status.tsv"):
        profile(tmp_path)


@pytest.mark.parametrize("step,kind,extra", [
    ("mpm/pretrain_mpmv1_kmeans_seed2", "pretraining", True), ("mpm/pretrain_mpmv2_regression", "pretraining", False),
    ("omnijet/tokenizer_128_seed1", "tokeniser", False),  # a tokeniser replicate is not a pretraining run
    ("mpm/v1_jetclass_fixed", "fine-tuning: frozen / probe", False),
    ("mpm/probe_mpmv1_seed1", "fine-tuning: frozen / probe", True),
    ("mpm/v2_btag_nobackbone", "fine-tuning: scratch / no backbone", False),
    ("hepjepa/ft_jetclass_seed1", "fine-tuning: fine-tuned (HEP-JEPA ft_*: every mode)", True),
    ("hepjepa/shortcut_base_s1_pretrain", "ablation", False),
    ("mpm/floor_v1_jetclass", "floor (jet observables)", False),
    ("omnijet/embed_gpt_pretrained_seed2", "embed (Which pretraining?)", True),
    ("data_check/validate_btag", "data", False), ("compare/which_pretraining", "tables, figures, comparison", False)])
def test_every_step_has_one_kind_and_the_extra_pretraining_runs_are_counted_apart(step, kind, extra):
    from bench.run_profile import kind_of
    assert kind_of(step) == (kind, extra)


def test_time_per_kind_splits_main_and_extra_runs(tmp_path, capsys):
    lines = ["mpm/pretrain_a\tdone\t120\tl\t\tstep\to", "mpm/pretrain_a_seed1\tdone\t60\tl\t\tstep\to",
             "mpm/v1_jetclass_finetune_seed1\tdone\t30\tl\t\tstep\to"]
    (tmp_path / "status.tsv").write_text("\n".join(lines) + "\n")
    main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| pretraining | 2 | 2.0 | 1.0 | 3.0 |" in out
    assert "| fine-tuning: fine-tuned (HEP-JEPA ft_*: every mode) | 1 | 0.0 | 0.5 | 0.5 |" in out
