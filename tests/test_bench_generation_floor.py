"""bench/generation_floor.py: per observable, the real-vs-real floor's spread over sampling seeds beside the margin of
the OmniJet-alpha generation claim."""
import json

import pytest

from bench import generation_floor as G


def _metrics(floor, gen):
    return {"per_seed": [{"seed": i, "n_half_jets": 10, "n_compared_jets": 10,
                          "half_vs_half": {k: {"kl_divergence": v[i]} for k, v in floor.items()},
                          "generated_vs_half": {k: {"kl_divergence": v[i]} for k, v in gen.items()}}
                         for i in range(3)]}


def test_excess_per_observable_and_the_floor_spread_against_the_margin(tmp_path, capsys):
    m = _metrics({"jet_mass": [0.05, 0.06, 0.07], "tau21": [0.1, 0.1, float("inf")]},
                 {"jet_mass": [0.08, 0.08, 0.08], "tau21": [0.2, 0.2, 0.2]})
    rows = dict((r[0], r[1:]) for r in G.floor_rows(m))
    assert rows["jet_mass"][2] == pytest.approx([0.03, 0.02, 0.01])
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(m).replace("Infinity", "1e999"))
    assert G.main([str(path)]) == 0
    out = capsys.readouterr().out
    # sd of (0.05, 0.06, 0.07) = 0.01, half the claim's margin 0.02; an infinite floor is counted, not averaged
    assert "| jet_mass | 0.0600 ± 0.0100 | 0.0800 ± 0.0000 | 0.0200 ± 0.0100 | 0.50 |" in out
    assert "| tau21 | 1 infinite |" in out and "margin 0.02" in out


def test_a_file_of_another_kind_is_one_clear_error(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="expected omnijet.evaluate_generation's metrics.json"):
        G.main([str(path)])
