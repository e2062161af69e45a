"""Using a trained model: checkpoints, prediction, evaluation, overlays and export."""
