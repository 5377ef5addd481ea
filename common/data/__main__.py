"""`python -m common.data ...`: fill the preprocessing cache (common.data.datasets.main)."""
from common.cli import cli
from common.data.datasets import main

cli(main)
