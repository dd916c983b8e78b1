"""The pretrained reference: BirdNET embeddings of every recording and a head on them, on the CNN's
folds."""
