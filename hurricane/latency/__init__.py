"""Latency: device profiles, inference engines, measured tables, predictors and the one proxy."""
