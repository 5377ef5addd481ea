"""Training pieces shared by every loop: config, checkpoint, distributed, schedules, logger, train_utils; the one
fine-tuning loop (finetune, finetune_config, classifier, sweep); probe, metrics and the EMA teacher."""
