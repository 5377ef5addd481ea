"""From runs to verdicts: result files and tables (tables), claims, the report (RESULTS.md), figures and plots, the
jet-observables floor and the comparison of every method on the same jets ("Which pretraining?")."""
