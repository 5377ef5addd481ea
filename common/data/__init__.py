"""Readers of the published jet datasets and everything that turns their files into batches.

jetclass, toptagging, quarkgluon, btag: one reader per published format; features: the feature sets of the papers;
cache: the memory-mapped preprocessing cache; datasets: the entry points (make_loader, dataset_info, load_arrays);
batch, sampler, array_loader: batches and their order; subsets: the labelled jets of a few-shot run; observables:
jet substructure; download: fetching the real datasets. `python -m common.data` fills the cache ahead of training.
"""
