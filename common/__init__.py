"""Shared code of the three methods, in layers; a layer imports only the layers above it in this list.

    common/atomic.py, common/cli.py   files written whole, one-line errors (used by every layer)
    common/data/       readers of the published formats, feature sets, the preprocessing cache, loaders, observables
    common/blocks/     network blocks: transformer, pooling heads, pair features, vector quantisation, k-means
    common/training/   config, checkpoints, DDP, schedules, logger, the fine-tuning loop and sweeps, probes, metrics
    common/results/    result files and tables, claims, report, figures, the jet-observables floor, the comparison
    common/simulate/   the offline Pythia 8 + FastJet simulation, written in the published formats

`data` and `blocks` are siblings and never import each other: building a model needs torch and numpy only. A method
copied out needs its own folder, the base modules and the layers its code imports (tests/test_layers.py checks it).
"""
