"""Calibrated probabilities: fitting a calibration map, and the metrics that judge probabilities.

A calibration map turns a model's score into P(reduced) (label 1):

* ``temperature``: ``p = sigmoid(logit / T)`` with one temperature ``T > 0`` (Guo et al. 2017);
  it keeps every call (the sign of the logit) and the AUC, and only makes the probabilities
  more or less confident;
* ``platt``: ``p = sigmoid(slope * score + intercept)`` (Platt 1999), which may also move the
  0.5 point; the SBR methods get their probabilities this way, from the SBR itself;
* ``none``: ``p = sigmoid(logit)``, the model's own probability.

Every fit minimises the mean log loss against Platt's targets, ``(N₊ + 1) / (N₊ + 2)`` for
reduced and ``1 / (N₋ + 2)`` for normal scans, rather than against hard 0/1 labels: with
hundreds of scans they differ from the labels by well under 1 %, but a part without errors
(separable scores) then gets a finite temperature or slope instead of an infinitely confident
one.  The caller decides on which rows a map is fitted (the validation part for a CNN, the
training part for an SBR cutoff); nothing here sees any other rows.

Metrics take labels and P(reduced): the log loss (natural log, probabilities clipped to
``[1e-15, 1 - 1e-15]``), the Brier score (mean squared error of the probability) and the
expected calibration error (ECE) over equal-width bins of P(reduced),
``sum_b n_b / N * |mean(label in b) - mean(p in b)|``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit

from datspect.errors import InputError

METHODS = ("temperature", "platt", "none")
#: What :func:`probability_metrics` returns, in the column order of ``per_split.tsv``.
PROBABILITY_METRICS = ("log_loss", "brier", "ece")
#: Search range of the temperature; a fit at an end says the scores carry (almost) no signal.
TEMPERATURE_BOUNDS = (1e-2, 1e2)
EPS = 1e-15


def _scores_and_labels(scores, labels, what: str) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise InputError(f"{what}: scores and labels differ in length ({s.size} vs {y.size})")
    if s.size == 0:
        raise InputError(f"{what}: no scans to fit on")
    if not np.all(np.isfinite(s)):
        raise InputError(f"{what}: scores contain NaN/inf; fix the scores of those scans")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"{what}: labels must be 0 (normal) or 1 (reduced)")
    return s, y.astype(np.float64)


def platt_targets(labels) -> np.ndarray:
    """Platt's targets: ``(N₊ + 1) / (N₊ + 2)`` for label 1, ``1 / (N₋ + 2)`` for label 0."""
    y = np.asarray(labels).ravel()
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    return np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))


def _mean_log_loss(z: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy of ``sigmoid(z)`` against (soft) targets, stable for any ``z``."""
    return float(np.mean(np.logaddexp(0.0, z) - targets * z))


def fit_temperature(logits, labels) -> float:
    """The temperature ``T`` minimising the log loss of ``sigmoid(logits / T)`` (Platt's targets).

    Parameters
    ----------
    logits : array_like of float
        Log-odds of reduced, one per scan of the fitting part.
    labels : array_like of {0, 1}

    Returns
    -------
    float
        ``T`` in :data:`TEMPERATURE_BOUNDS`.
    """
    z, y = _scores_and_labels(logits, labels, "temperature scaling")
    targets = platt_targets(y)
    low, high = np.log(TEMPERATURE_BOUNDS)
    # the loss is convex in 1/T, so it has one minimum in log T: a bounded 1-D search finds it
    best = minimize_scalar(
        lambda log_t: _mean_log_loss(z * np.exp(-log_t), targets),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(best.x))


def fit_logistic(scores, labels) -> tuple[float, float]:
    """``(slope, intercept)`` of ``P(reduced) = sigmoid(slope * score + intercept)``.

    Fitted on standardised scores by L-BFGS with Platt's targets, so separable scores give a
    finite slope.

    Parameters
    ----------
    scores : array_like of float
        Any score (a logit, an SBR), one per scan of the fitting part.
    labels : array_like of {0, 1}

    Returns
    -------
    tuple of float
    """
    s, y = _scores_and_labels(scores, labels, "logistic calibration")
    targets = platt_targets(y)
    mean, sd = float(s.mean()), float(s.std())
    sd = sd if sd > 0 else 1.0
    x = (s - mean) / sd

    def loss_and_grad(params):
        a, b = params
        z = a * x + b
        residual = expit(z) - targets
        return _mean_log_loss(z, targets), np.array([np.mean(residual * x), np.mean(residual)])

    start = np.array([0.0, float(np.log(targets.mean() / (1.0 - targets.mean())))])
    fit = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B")
    a, b = (float(v) for v in fit.x)
    return a / sd, b - a * mean / sd


def fit_calibration(method: str, scores, labels) -> dict:
    """Fit the calibration map ``method`` on the fitting part's scores and labels.

    Returns
    -------
    dict
        ``method`` and its parameters (``temperature``; ``slope, intercept``) plus
        ``n_fit``, ``n_reduced``: what :func:`apply_calibration` needs, JSON-ready.
    """
    if method not in METHODS:
        raise InputError(f"calibration method must be one of {METHODS}, not {method!r}")
    s, y = _scores_and_labels(scores, labels, f"{method} calibration")
    out: dict = {"method": method}
    if method == "temperature":
        out["temperature"] = fit_temperature(s, y)
    elif method == "platt":
        out["slope"], out["intercept"] = fit_logistic(s, y)
    out.update({"n_fit": int(s.size), "n_reduced": int(y.sum())})
    return out


def apply_calibration(calibration: dict, scores) -> np.ndarray:
    """P(reduced) of ``scores`` under a map from :func:`fit_calibration`."""
    z = np.asarray(scores, dtype=np.float64)
    method = calibration.get("method")
    if method == "temperature":
        return expit(z / float(calibration["temperature"]))
    if method == "platt":
        return expit(float(calibration["slope"]) * z + float(calibration["intercept"]))
    if method == "none":
        return expit(z)
    raise InputError(f"calibration: unknown method {method!r}; one of {METHODS}")


def _probabilities(labels, p, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel()
    q = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != q.shape:
        raise InputError(f"{what}: labels and probabilities differ in length")
    if q.size == 0:
        raise InputError(f"{what}: no scans")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"{what}: labels must be 0 (normal) or 1 (reduced)")
    if not (np.all(np.isfinite(q)) and q.min() >= 0.0 and q.max() <= 1.0):
        raise InputError(f"{what}: probabilities must lie in [0, 1]")
    return y.astype(np.float64), q


def log_loss(labels, p) -> float:
    """Mean negative log-likelihood (natural log) of the labels under P(reduced) ``p``."""
    y, q = _probabilities(labels, p, "log loss")
    q = np.clip(q, EPS, 1.0 - EPS)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def brier_score(labels, p) -> float:
    """Mean of ``(p - label)²``."""
    y, q = _probabilities(labels, p, "Brier score")
    return float(np.mean((q - y) ** 2))


def _bin_index(q: np.ndarray, n_bins: int) -> np.ndarray:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InputError(f"ECE bins must be a positive integer, not {n_bins!r}")
    # bins [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]: p = 1 falls in the last one
    return np.minimum((q * n_bins).astype(np.int64), n_bins - 1)


def reliability_bins(labels, p, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width bins of P(reduced): the reliability diagram's points.

    Returns
    -------
    pandas.DataFrame
        One row per bin (empty bins included): ``bin, lower, upper, n, mean_p, observed``
        (``observed``: share of reduced scans; ``mean_p`` and ``observed`` NaN when empty).
    """
    y, q = _probabilities(labels, p, "reliability bins")
    index = _bin_index(q, n_bins)
    n = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(index, weights=q, minlength=n_bins) / n
        observed = np.bincount(index, weights=y, minlength=n_bins) / n
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "n": n,
            "mean_p": mean_p,
            "observed": observed,
        }
    )


def expected_calibration_error(labels, p, n_bins: int = 10) -> float:
    """ECE: the bin-size weighted mean of ``|observed - mean_p|`` over equal-width bins."""
    bins = reliability_bins(labels, p, n_bins)
    filled = bins[bins["n"] > 0]
    gap = (filled["observed"] - filled["mean_p"]).abs()
    return float((filled["n"] * gap).sum() / filled["n"].sum())


def probability_metrics(labels, p, n_bins: int = 10) -> dict[str, float]:
    """``log_loss``, ``brier`` and ``ece`` of one scored part."""
    return {
        "log_loss": log_loss(labels, p),
        "brier": brier_score(labels, p),
        "ece": expected_calibration_error(labels, p, n_bins),
    }
