"""Using a trained model: prediction, evaluation, overlays and export."""
