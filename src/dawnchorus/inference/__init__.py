"""Trained models applied: the fold ensemble's engines, recordings to window probabilities,
post-processing, the submission, the export, the pseudo-labelling job, the soundscape ablation."""
