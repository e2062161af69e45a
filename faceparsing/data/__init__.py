"""CelebAMask-HQ data: layout and split, labels, augmentation, class weights, checks,
synthetic faces (all without Keras), the Keras dataset (`dataset`) and a run's data
set-up from its config (`setup`)."""
