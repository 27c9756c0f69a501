"""Latency: device profiles, inference engines, measured tables, predictors and the one proxy.

devices          device profiles: which engine measures, with what options, on which nodes (torch-free)
backends         the inference engines that time a module: torch, onnxruntime, OpenVINO
profiling        layer × op tables and architecture latencies measured on a device
latency_table    layer × op latency tables, checked (torch-free: the API validates imports)
tables           imported latency tables in the store, each owned by a user or shared
predictor        the architecture-latency predictor (Bayesian ridge, torch-free)
proxy            one proxy device: cross-device rank correlation, reuse or adapt
fewshot          a new device from k measurements, every known device's predictor a prior
adapt            few-shot on a search space: which architectures to time, predictor and table
calibration      calibrated intervals from a predictor's held-out errors (split conformal)
verify           the final latency check: rounds, median, interval, within/over/inconclusive
latency_sources  latencies of several devices on the same architectures

_PUBLIC names, by home module, what other packages use: the library imports them from
their modules (what the import contracts read); ``from hurricane.latency import NAME`` loads
a name's module on first use, so the package itself stays light.
"""

from __future__ import annotations

from hurricane import surface

_PUBLIC = {
    "backends": ("backend_for", "DeviceUnavailable"),
    "devices": ("device_profile", "DeviceProfile", "DEVICES", "NODE_LABEL"),
    "latency_sources": ("collect_latencies", "MeasuredLatencies"),
    "latency_table": ("check_table", "LatencyTable", "TableErrors"),
    "predictor": ("fit_points", "holdout_indices", "LatencyPredictor", "metrics", "Predictor",
                  "PredictorConfig"),
    "profiling": ("measure_arch", "profile_table", "Protocol", "Timing"),
    "fewshot": ("choose_samples", "FewShotPredictor", "is_fewshot", "Prior"),
    "adapt": ("Adapted", "adapt_device", "pick", "prior_of", "read_measurements", "spec_space"),
    "calibration": ("Factor", "interval_factors", "log_ratios", "near_edge", "upper_factor"),
    "verify": ("judge", "LatencyCheck", "VerifyConfig"),
    "proxy": ("AdaptedPredictor", "decide", "matrix_json", "plot_srcc", "proxy_decisions",
              "srcc_matrix_counts"),
}
__all__ = [name for names in _PUBLIC.values() for name in names]
__getattr__ = surface(__name__, _PUBLIC)
