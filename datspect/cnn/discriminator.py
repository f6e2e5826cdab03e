"""A small CNN that tries to tell simulated slabs from real ones (the realism report's second
discriminator).

A linear classifier on pixels finds any systematic difference of mean appearance; a CNN also
finds differences of texture and local shape.  Per class, the two sets are pooled 2x2, each slab
standardized by the pooled sets' pixel mean and SD, and a two-block CNN is trained and tested in
stratified k-fold cross-validation (seeded, class-weighted loss, fixed epochs: nothing is tuned
on the test folds).  The score is the balanced accuracy of the out-of-fold calls: 0.5 means the
sets cannot be told apart, 1 that they always are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from datspect.evaluation.realism import LABELS, pooled_pixels

EPOCHS = 8
BATCH = 32
LEARNING_RATE = 1e-3


def _network(shape) -> nn.Module:
    h, w = shape
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * (h // 4) * (w // 4), 1),
    )


def _fit_predict(x_train, y_train, x_test, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    net = _network(x_train.shape[2:])
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    positive = float(y_train.mean())
    weight = torch.tensor((1.0 - positive) / max(positive, 1e-6))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.float32))
    order = np.random.default_rng(seed)
    for _ in range(EPOCHS):
        net.train()
        for batch in np.array_split(order.permutation(len(xt)), max(1, len(xt) // BATCH)):
            opt.zero_grad()
            loss = loss_fn(net(xt[batch]).squeeze(1), yt[batch])
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return (net(torch.from_numpy(x_test)).squeeze(1) > 0).numpy().astype(int)


def cnn_discriminator_accuracy(
    sim: np.ndarray, real: np.ndarray, *, seed: int, folds: int = 5
) -> float:
    """Cross-validated balanced accuracy of the CNN telling ``sim`` (1) from ``real`` (0)."""
    from sklearn.model_selection import StratifiedKFold

    k = min(folds, len(sim), len(real))
    if k < 2:
        return float("nan")
    n, h, w = sim.shape
    pooled = pooled_pixels(np.concatenate([sim, real])).reshape(-1, 1, h // 2, w // 2)
    x = ((pooled - pooled.mean()) / (pooled.std() or 1.0)).astype(np.float32)
    y = np.r_[np.ones(len(sim), int), np.zeros(len(real), int)]
    pred = np.empty_like(y)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(cv.split(x, y)):
        pred[test] = _fit_predict(x[train], y[train], x[test], seed + fold)
    return float(np.mean([np.mean(pred[y == c] == c) for c in (0, 1)]))


def cnn_discriminator_rows(sim, sim_labels, real, real_labels, *, seed: int) -> list:
    """Rows ``[measure, label, simulated, real, ratio, value]`` of the realism table."""
    sim_labels, real_labels = np.asarray(sim_labels), np.asarray(real_labels)
    rows = []
    for label in LABELS:
        s, r = sim[sim_labels == label], real[real_labels == label]
        if len(s) and len(r):
            score = cnn_discriminator_accuracy(s, r, seed=seed + label)
            nan = float("nan")
            rows.append(["cnn_discriminator_balanced_accuracy", label, nan, nan, nan, score])
    return rows
