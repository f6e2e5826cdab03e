"""Training with model selection on the validation part, and prediction.

On CPU a training is bit-for-bit reproducible for a given seed and thread count: the global
torch seed is set from ``seed`` (model initialisation, dropout), deterministic algorithms are
enforced, the data loader runs in-process with its own seeded generator and the augmentation
stream is seeded per epoch (:mod:`datspect.cnn.data`).  On CUDA the same seeds are used and
deterministic algorithms are requested where CUDA has them (warnings elsewhere).
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from datspect import schema
from datspect.cnn.data import ImageDataset, load_items, resolve_augment
from datspect.cnn.model import DatCNN, build_model, count_parameters
from datspect.errors import InputError


def resolve_train_cfg(train_cfg: dict | None) -> dict:
    """Merge ``train_cfg`` over the schema's defaults of ``cnn.train`` and validate it.

    Raises
    ------
    InputError
        On an unknown key or an invalid value.
    """
    cfg = dict(train_cfg or {})
    out = schema.defaults("cnn", "train")
    unknown = sorted(set(cfg) - set(out))
    if unknown:
        raise InputError(f"cnn.train: unknown key(s) {unknown}; allowed keys are {sorted(out)}")
    out.update(copy.deepcopy(cfg))
    for key in ("epochs", "patience", "batch_size"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise InputError(f"cnn.train.{key} must be a positive integer, not {out[key]!r}")
    for key, allowed in (
        ("optimizer", ("adam", "adamw")),
        ("balance", ("class_weights", "sampler", "none")),
        ("select_on", ("loss", "accuracy")),
    ):
        if out[key] not in allowed:
            raise InputError(f"cnn.train.{key} must be one of {allowed}, not {out[key]!r}")
    if not isinstance(out["lr"], (int, float)) or out["lr"] <= 0:
        raise InputError(f"cnn.train.lr must be a positive number, not {out['lr']!r}")
    if not isinstance(out["weight_decay"], (int, float)) or out["weight_decay"] < 0:
        raise InputError(f"cnn.train.weight_decay must be >= 0, not {out['weight_decay']!r}")
    out["augment"] = resolve_augment(out["augment"])
    return out


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                "cnn.device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'"
            )
        return torch.device("cuda")
    raise InputError(f"cnn.device must be auto, cpu or cuda, not {device!r}")


def _set_determinism(seed: int, threads: int, device: torch.device) -> None:
    torch.set_num_threads(int(threads))
    torch.manual_seed(seed)  # also seeds CUDA: weight init and dropout
    if device.type == "cuda":
        # cuBLAS needs this for deterministic matmuls; only effective before its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        # some CUDA kernels (3D max-pool backward) have no deterministic version: warn there
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)


def _evaluate(model, loader, class_weights: torch.Tensor, device) -> tuple[float, float]:
    """Class-weighted mean cross-entropy and accuracy of ``model`` over ``loader``."""
    model.eval()
    loss_sum, weight_sum, correct, n = 0.0, 0.0, 0, 0
    with torch.no_grad():
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            # summed over the whole part, so the mean does not depend on the batch split
            loss_sum += float(F.cross_entropy(logits, yb, weight=class_weights, reduction="sum"))
            weight_sum += float(class_weights[yb].sum())
            correct += int((logits.argmax(1) == yb).sum())
            n += len(yb)
    return loss_sum / weight_sum, correct / n


def _selection_key(select_on: str, val_loss: float, val_acc: float) -> tuple[float, float]:
    """Smaller is better."""
    if select_on == "loss":
        return (val_loss, -val_acc)
    return (-val_acc, val_loss)


def train_model(
    train_items,
    val_items,
    *,
    arch: dict,
    train_cfg: dict,
    seed: int,
    threads: int,
    device: str = "auto",
    log=print,
    degrade: dict | None = None,
):
    """Train the CNN and keep the epoch chosen on the validation part.

    Parameters
    ----------
    train_items, val_items : sequence of (array or .npy path, label)
        Training and validation images (label 0 normal, 1 reduced).
    arch : dict
        Overrides of the defaults of ``cnn.arch``.
    train_cfg : dict
        Overrides of the defaults of ``cnn.train``.
    seed : int
        Seed of everything random in this training.
    threads : int
        Torch CPU threads (the rule's ``threads``).
    device : {"auto", "cpu", "cuda"}
        ``auto`` uses CUDA when available.
    log : callable
        Receives one line of text per epoch (and a header/summary line).
    degrade : dict, optional
        Blur and noise degradation of the training images (keys of ``cnn.degrade``; the
        ``augmented`` setting); the validation images stay as they are.

    Returns
    -------
    model : torch.nn.Module
        On the CPU, in eval mode, with the weights of the selected epoch.
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy``, ``seconds``.
    best : dict
        The selected epoch's ``epoch``, ``val_loss``, ``val_accuracy``, plus ``epochs_run``,
        ``stopped_early``, ``seconds``, ``device``, ``threads``, ``n_train``, ``n_val``,
        ``n_parameters`` and ``class_weights``.
    """
    cfg = resolve_train_cfg(train_cfg)
    dev = resolve_device(device)
    x_tr, y_tr = load_items(train_items)
    x_va, y_va = load_items(val_items, input_shape=x_tr.shape[1:])
    if y_tr is None or y_va is None:
        raise InputError("CNN training: every training and validation item needs a label")
    counts = np.bincount(y_tr, minlength=2)
    if (counts == 0).any():
        raise InputError(
            f"CNN training: the training part has {counts[0]} normal and {counts[1]} reduced "
            "images; both classes are needed"
        )
    _set_determinism(seed, threads, dev)
    model = build_model(arch, x_tr.shape[1:]).to(dev)

    train_ds = ImageDataset(
        x_tr, y_tr, augment=cfg["augment"], seed=seed, degrade=degrade, window=model.crop
    )
    val_ds = ImageDataset(x_va, y_va)
    loader_gen = torch.Generator().manual_seed(seed)
    balanced = (len(y_tr) / (2.0 * counts)).tolist()
    if cfg["balance"] == "sampler":
        sample_w = torch.from_numpy(1.0 / counts[y_tr])
        sampler = WeightedRandomSampler(sample_w, len(y_tr), replacement=True, generator=loader_gen)
        train_loader = DataLoader(
            train_ds, batch_size=cfg["batch_size"], sampler=sampler, num_workers=0
        )
    else:
        train_loader = DataLoader(
            train_ds,
            batch_size=cfg["batch_size"],
            shuffle=True,
            generator=loader_gen,
            num_workers=0,
        )
    val_loader = DataLoader(val_ds, batch_size=max(cfg["batch_size"], 128), num_workers=0)
    class_weights = balanced if cfg["balance"] == "class_weights" else [1.0, 1.0]
    criterion = nn.CrossEntropyLoss(weight=torch.tensor(class_weights, device=dev))
    # the validation loss weighs the classes as the training objective does (balanced unless
    # balance is none), so the selection measures what was optimised
    val_weights = torch.tensor(
        [1.0, 1.0] if cfg["balance"] == "none" else balanced, dtype=torch.float32, device=dev
    )
    opt_cls = torch.optim.Adam if cfg["optimizer"] == "adam" else torch.optim.AdamW
    # fused: one kernel per step instead of one per parameter tensor, a third faster on CPU
    optimizer = opt_cls(
        model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=True
    )

    n_params = count_parameters(model)
    log(
        f"train {len(y_tr)} ({counts[0]} normal / {counts[1]} reduced), val {len(y_va)}, "
        f"input {tuple(x_tr.shape[1:])}, {n_params} parameters, device {dev}, threads {threads}"
    )
    history: list[dict] = []
    best_key, best_state, best = None, None, {}
    t_start = time.perf_counter()
    stale = 0
    for epoch in range(1, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        model.train()
        loss_sum, n = 0.0, 0
        for xb, yb in train_loader:
            xb, yb = xb.to(dev), yb.to(dev)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(yb)
            n += len(yb)
        val_loss, val_acc = _evaluate(model, val_loader, val_weights, dev)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / n,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        key = _selection_key(cfg["select_on"], val_loss, val_acc)
        improved = best_key is None or key < best_key
        if improved:
            best_key, stale = key, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best = {"epoch": epoch, "val_loss": val_loss, "val_accuracy": val_acc}
        else:
            stale += 1
        log(
            f"epoch {epoch:3d}  train_loss {row['train_loss']:.4f}  val_loss {val_loss:.4f}  "
            f"val_acc {val_acc:.4f}  {row['seconds']:.1f}s{'  *' if improved else ''}"
        )
        if stale >= cfg["patience"]:
            break
    model = model.to("cpu")
    model.load_state_dict(best_state)
    model.eval()
    best.update(
        {
            "epochs_run": len(history),
            "stopped_early": len(history) < cfg["epochs"],
            "seconds": time.perf_counter() - t_start,
            "device": str(dev),
            "threads": int(threads),
            "n_train": int(len(y_tr)),
            "n_val": int(len(y_va)),
            "n_parameters": int(n_params),
            "class_weights": class_weights,
        }
    )
    log(
        f"selected epoch {best['epoch']} (val_loss {best['val_loss']:.4f}, val_acc "
        f"{best['val_accuracy']:.4f}); {best['epochs_run']} epochs in {best['seconds']:.1f}s"
    )
    return model, history, best


def _log_odds(out: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(out.double(), dim=1)
    others = torch.cat([log_p[:, :1], log_p[:, 2:]], dim=1)
    return log_p[:, 1] - torch.logsumexp(others, dim=1)


def predict_logits(
    model: nn.Module, items, device: str = "auto", batch_size: int = 128
) -> np.ndarray:
    """Log-odds of reduced for each item: ``log P(reduced) - log P(not reduced)``.

    The input of a calibration map (:mod:`datspect.evaluation.calibration`): exact where a
    probability would round to 0 or 1.  Arguments as for :func:`predict`.

    Returns
    -------
    np.ndarray
        float64, shape ``(N,)``; ``sigmoid`` of it is :func:`predict`'s probability.
    """
    return _forward(model, items, device, batch_size, _log_odds)


def mc_dropout_logits(
    model: DatCNN,
    items,
    n_samples: int,
    seed: int,
    device: str = "auto",
    batch_size: int = 128,
) -> np.ndarray:
    """Log-odds of reduced from ``n_samples`` forward passes with dropout active (MC dropout).

    Only the dropout layers sample; batch normalisation keeps its running statistics, so each
    pass is the trained network with a random subset of its units.  The draws come from the
    torch generator seeded with ``seed``.  The layers before the first dropout run once per
    batch, not once per pass: the same values, as those layers draw nothing.

    Returns
    -------
    np.ndarray
        float64, shape ``(N, n_samples)``.
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise InputError(f"MC dropout needs a positive number of samples, not {n_samples!r}")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    prefix, rest = model.split_at_first_dropout()
    dropouts = [m for m in rest.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if not dropouts:
        raise InputError("MC dropout: the model has no dropout layers (cnn.arch.dropout_*)")
    with torch.no_grad():
        fixed = [prefix(xb) for xb in _batches(items, model, dev, batch_size)]
    torch.manual_seed(int(seed))
    for m in dropouts:
        m.train()
    try:
        with torch.no_grad():
            passes = [
                np.concatenate([_log_odds(rest(h)).cpu().numpy() for h in fixed])
                for _ in range(n_samples)
            ]
    finally:
        model.eval()
    return np.stack(passes, axis=1)


def predict(model: nn.Module, items, device: str = "auto", batch_size: int = 128) -> np.ndarray:
    """P(reduced) for each item.

    Parameters
    ----------
    model : torch.nn.Module
        A trained model (e.g. from :func:`train_model` or the checkpoint loader).
    items : sequence
        Arrays / .npy paths, or ``(array or path, label)`` pairs (labels ignored).
    device : {"auto", "cpu", "cuda"}
    batch_size : int

    Returns
    -------
    np.ndarray
        float64, shape ``(N,)``: softmax probability of class 1 (reduced).
    """
    return _forward(
        model, items, device, batch_size, lambda out: torch.softmax(out, dim=1)[:, 1].double()
    )


def _batches(items, model: nn.Module, dev: torch.device, batch_size: int):
    """The items as input batches of ``batch_size`` (N, 1, *spatial) on ``dev``."""
    x, _ = load_items(items, input_shape=getattr(model, "input_shape", None))
    for start in range(0, len(x), batch_size):
        yield torch.from_numpy(x[start : start + batch_size]).unsqueeze(1).to(dev)


def _forward(model: nn.Module, items, device: str, batch_size: int, head) -> np.ndarray:
    """``head`` of the model's output for each item, in batches, in eval mode, without
    gradients."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    with torch.no_grad():
        out = [head(model(xb)).cpu().numpy() for xb in _batches(items, model, dev, batch_size)]
    return np.concatenate(out)
