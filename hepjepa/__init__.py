"""HEP-JEPA (Bardhan et al., arXiv:2502.03933): a joint embedding predictive architecture for jets, in plain PyTorch.

Read in this order (one concept per file):
  tokenizer.py  particle jet tokeniser: FPS patch centres, kNN groups in (deta, dphi), mini-PointNet, sequencer
  masking.py    per-jet contiguous (or random) target blocks and context block over the sequenced patches
  augment.py    physics-inspired augmentations (rotation, reflection, smearing, soft-particle drop)
  model.py      context encoder (registers + ParT physics bias), EMA target encoder, predictor, smooth-L1 loss;
                HEPJEPABackbone for downstream tasks
  monitors.py   shortcut monitors (between-jet share of the target variance, R^2 from position, effective rank) and
                the online probe, logged during pretraining
  pretrain.py   the pretraining loop (DDP, autocast, schedules, EMA momentum, checkpoints, resume)
  probe.py      linear probe of the frozen encoder against random init, BatchNorm statistics set from data
  finetune.py   few-shot / transfer sweeps around common.training.finetune (frozen, fine-tuned, from scratch)
  figures.py    Figure 2 (val loss vs step), Figure 3 (t-SNE of embeddings), the pretraining monitors
  tables.py     results tables beside the published numbers (common.results.tables)
  run_steps.sh  the steps run_all.sh runs; configs/ holds the paper YAMLs and their mini/ and smoke/ variants
"""
