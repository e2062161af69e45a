"""Training: losses, learning-rate schedules, the run folder and `trainer.train(config)`."""
