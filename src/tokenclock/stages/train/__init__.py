"""The train stage: TrainConfig (config.py), the Llama-style model (model.py), lr and checkpoint
schedules (schedule.py), the Trainer (trainer.py), checkpoint I/O (checkpoint.py), FLOPs and MFU
(perf.py), and the stage function (stage.py); writes RUN/ckpt/."""
