"""CelebAMask-HQ data: layout and split, labels, augmentation, class weights, checks,
synthetic faces (all without Keras) and the Keras dataset (`dataset`)."""
