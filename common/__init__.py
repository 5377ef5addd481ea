"""Shared pieces of the jet foundation-model kit: data, tokenisers, transformer blocks, training loop, metrics."""
