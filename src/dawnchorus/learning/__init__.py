"""Models and how they are trained: the input pipeline, the network, one fold's training, the
hyperparameter search, metrics and the simple heads."""
