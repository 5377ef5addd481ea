"""bench/bench_data.py's cache-size table: bytes per jet of every JetClass feature set of the paper configs in the
padded (v1), ragged-stored (v2) and computed-on-read (v3) layouts. The v2 bytes of a set follow from a formula; for a
set v3 still stores (MPMv2) the formula must equal the measured entry, and a set computed on read stores nothing."""
import numpy as np

from bench import bench_data
from common.data.features import get_feature_set
from tests.data_factory import write_jetclass


def test_cache_size_table(tmp_path, capsys):
    write_jetclass(str(tmp_path / "train"), 60, classes=bench_data.CLASSES, seed=0, max_particles=100)
    sets = bench_data.paper_feature_sets()
    assert {name for name, _ in sets} >= {"mpmv1", "mpmv2", "omnijet", "hepjepa"}
    sizes = {r["name"]: r for r in bench_data.cache_sizes(str(tmp_path), sets)}
    per_file = 8 * len(bench_data.CLASSES) / (60 * len(bench_data.CLASSES))    # the one extra offset of each file
    for name, r in sizes.items():
        if get_feature_set(name).on_read:
            assert r["v3"] == 0 and r["v2"] > 0
        else:                                   # stored: the v2 formula is the measured entry
            assert np.isclose(r["v3"], r["v2"] + per_file), name
        assert r["v1"] > r["v2"]
    src = sizes["mpmv1"]
    # v3's source entry adds deta, dphi (8 B) per particle and the axis (8 B) per jet to v2's
    assert np.isclose(src["src"] - src["src_v2"], 8 * src["particles"] + 8 + per_file)
    bench_data.print_sizes(list(sizes.values()))
    out = capsys.readouterr().out
    v1, v2, v3 = (float(x.replace(",", "")) for x in out.split("| all")[1].split("|")[3:6])
    assert v3 < v2 < v1
    assert f"{v3 * bench_data.JETCLASS_JETS / 1e9:,.0f} GB (v3" in out
