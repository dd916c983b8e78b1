"""What a run tells its user: the cross-validation summary, the plots, the report's first page."""
