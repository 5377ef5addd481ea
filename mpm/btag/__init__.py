"""The out-of-domain studies of MPMv2 (arXiv:2409.12589): a JetClass-pretrained encoder on the BTag dataset for
flavour tagging (flavour.py), track origin (track_origin.py) and secondary-vertex finding (vertexing.py), each a
downstream task of the one fine-tuning loop (common.training.finetune.run_finetune)."""
