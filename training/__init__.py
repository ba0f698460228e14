"""Cluster (TFJob) training entry points; a regular package so `python -m training...` finds it."""
