"""The training engine: loop, losses, EMA, schedules, validation, checkpoints."""
