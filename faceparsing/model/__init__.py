"""DeepLabV3+: atrous layers, atrous backbones, the model and its cost report."""
