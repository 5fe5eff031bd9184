"""``fastcnn train``: train a network of fastcnn.models on MNIST and write a checkpoint.

The steps, in order: check the output paths; read the checkpoint of
``--resume`` and merge its settings with the command line's; load, limit and
split the data; standardise it (:func:`common.normalize` with the statistics
of the training images, or the checkpoint's); build or restore the model,
the optimizer and the schedule; run ``Sequential.fit``; write the
checkpoint, the history and the curves; report the test accuracy.

Under an MPI launcher with several ranks every rank runs the same steps:
the set-up runs on every rank with one message when any rank fails
(:func:`fastcnn.distributed.run_everywhere`), the ranks' settings, data and
starting weights are checked to agree, training is
:func:`fastcnn.distributed.fit`, the test set is evaluated split over the
ranks, and rank 0 alone prints and writes the checkpoint, history and plot.
"""

import contextlib
import json
import sys
import warnings

import numpy as np

import fastcnn

from .. import distributed, optim
from .._util import to_jsonable
from ..augment import Augment
from ..callbacks import EarlyStopping, save_history
from ..data import Normalizer, train_val_split
from . import common
from .common import EXIT_DATA_ERROR, EXIT_FAILURE, EXIT_USAGE, fail

DEFAULT_OUT = "fastcnn-lenet5.npz"
#: Settings taken from the command line, else from the checkpoint of ``--resume``, else these.
DEFAULTS = {"data": "sample", "model": "lenet5", "batch_size": 64, "lr": 0.05, "momentum": 0.9,
            "weight_decay": 5e-4, "seed": 0, "schedule": None, "augment": False, "val_split": 0.1}
#: Settings taken from the command line, else from the checkpoint, else None.
OPTIONAL = ("data_dir", "limit", "early_stopping")
#: What each setting saved in a checkpoint must be (checked before use): (test, description).
_SAVED = {
    "data": (lambda v: isinstance(v, str), "a string"),
    "data_dir": (lambda v: v is None or isinstance(v, str), "null or a string"),
    "model": (lambda v: isinstance(v, str), "a string"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "a positive int"),
    "lr": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "momentum": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "seed": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "schedule": (lambda v: v is None or isinstance(v, str), "null or a string"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "val_split": (lambda v: v is None or (_is_number(v) and 0 <= v < 1), "null or a number in [0, 1)"),
    "limit": (lambda v: v is None or (_is_int(v) and v >= 1), "null or a positive int"),
    "early_stopping": (lambda v: v is None or (_is_int(v) and v >= 1), "null or a positive int"),
}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
AUGMENT = {"shift": 2, "rotation": 10.0}  # what --augment applies to every training batch


def add_parser(subparsers):
    """Add ``train`` and its options to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "train",
        help="train a CNN (LeNet-5 by default) on MNIST, report the test accuracy and save a checkpoint",
        description=(
            "Train a CNN (--model: LeNet-5 by default, or convnet, vgg_small, resnet_small, mobilenet_small sized for "
            "1x28x28 images) on MNIST with SGD, report the test accuracy and save a checkpoint "
            "(weights, optimizer momentum, normalisation statistics, epoch, history). Images are "
            "scaled to [0, 1], then standardised with the mean and standard deviation of the "
            "training images. A seeded, stratified 10%% of the training images is held out for "
            "validation (--val-split): early stopping, the plateau schedule and the per-epoch "
            "report watch it; the test set is used only for the final accuracy. --epochs is the "
            "total: '--resume CKPT --epochs 5' trains the epochs CKPT has not done yet, giving the "
            "same weights as an uninterrupted run; --resume continues the checkpoint's model, and a "
            "different --model is refused. Started by an MPI launcher with several ranks ('mpiexec -n 4 "
            "fastcnn train ...', needs pip install 'fastcnn[mpi]'), training is data-parallel: --batch-size is "
            "the global batch, split over the ranks, the weights equal one process's up to float rounding, "
            "and rank 0 alone prints and writes files."
        ),
    )
    _add_data_options(parser)
    _add_optimizer_options(parser)
    _add_run_options(parser)
    return parser


def _add_data_options(parser):
    parser.add_argument(
        "--data", default=None, type=common.nonempty, metavar="sample|mnist|fashion-mnist|DIR",
        help="'sample' for the MNIST subset packaged with fastcnn (6,000 training and "
             "1,000 test images); 'mnist' or 'fashion-mnist' for the IDX files in --data-dir "
             "or $FASTCNN_DATA (nothing is downloaded); or a directory holding the four "
             "MNIST IDX files (train-images-idx3-ubyte[.gz], ...); default: sample, or the "
             "checkpoint's with --resume",
    )
    parser.add_argument("--data-dir", default=None, type=common.nonempty, metavar="DIR",
                        help="where --data mnist|fashion-mnist looks for the IDX files "
                             "(DIR/mnist or DIR itself; default: $FASTCNN_DATA); refused with other --data")
    parser.add_argument("--model", default=None, choices=common.MODEL_NAMES,
                        help="network to train, from fastcnn.models (default: lenet5; with --resume the "
                             "checkpoint's model, and a different one is an error)")


def _add_optimizer_options(parser):
    parser.add_argument("--epochs", type=common.positive_int, default=3, metavar="N",
                        help="total passes over the training set, counting those of a "
                             "resumed checkpoint (default: %(default)s)")
    parser.add_argument("--batch-size", type=common.positive_int, default=None, metavar="B",
                        help="mini-batch size (default: 64, or the checkpoint's)")
    parser.add_argument("--lr", type=common.positive_float, default=None, metavar="LR",
                        help="SGD learning rate (default: 0.05; with --resume the checkpoint's)")
    parser.add_argument("--momentum", type=common.momentum, default=None, metavar="M",
                        help="SGD momentum, in [0, 1) (default: 0.9; with --resume the checkpoint's)")
    parser.add_argument("--weight-decay", type=common.nonnegative_float, default=None,
                        metavar="WD", help="L2 weight decay (default: 0.0005; with --resume the "
                                           "checkpoint's)")
    parser.add_argument("--schedule", default=None, metavar="SPEC",
                        help="learning-rate schedule, stepped after every epoch: "
                             "'step:STEP[:GAMMA]', 'exp:GAMMA[:EVERY]', "
                             "'plateau[:PATIENCE[:FACTOR]]' (on the validation loss) or 'none' "
                             "(default: none, or the checkpoint's)")
    parser.add_argument("--augment", action="store_true", default=None,
                        help=f"augment every training batch: random shifts of up to "
                             f"{AUGMENT['shift']} pixels and rotations of up to "
                             f"{AUGMENT['rotation']:g} degrees (default: off, or the checkpoint's)")
    parser.add_argument("--early-stopping", type=common.positive_int, default=None, metavar="PATIENCE",
                        help="stop when the loss on the validation split (--val-split) has not "
                             "improved for PATIENCE epochs, keeping the weights of the best epoch")
    parser.add_argument("--val-split", type=common.val_fraction, default=None, metavar="F",
                        help="hold out a seeded, stratified fraction F of the training images for "
                             "validation after every epoch; 0 trains on all of them with no "
                             "validation (then --early-stopping is refused). The test set is never "
                             "used for validation, only for the final report (default: 0.1, or the "
                             "checkpoint's)")


def _add_run_options(parser):
    parser.add_argument("--threads", type=common.positive_int, default=None, metavar="T",
                        help="threads for the parallel kernels (default: Numba's, "
                             "normally the number of cores)")
    parser.add_argument("--seed", type=common.nonnegative_int, default=None, metavar="S",
                        help="seed for weight initialisation, shuffling and the validation split "
                             "(default: 0, or the checkpoint's)")
    parser.add_argument("--limit", type=common.positive_int, default=None, metavar="N",
                        help="use only the first N training images and the first N//4 "
                             "test images (for quick checks; default: all, or the checkpoint's)")
    parser.add_argument("--out", default=None, metavar="PATH",
                        help="where to write the checkpoint (default: fastcnn-MODEL.npz in the current "
                             "directory); the history per epoch goes beside it as JSON, "
                             "PATH without .npz + '.history.json'")
    parser.add_argument("--resume", default=None, metavar="CKPT",
                        help="continue training from a checkpoint written by 'fastcnn train'")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="write a PNG of the loss and accuracy per epoch "
                             "(needs matplotlib: pip install 'fastcnn[plot]')")


# --------------------------------------------------------------------------- the steps


def run(args):
    """Train; return 0, or 1 when ``fit`` stopped because the loss became NaN or infinite.

    Started by an MPI launcher with more than one rank (``mpiexec -n 4 fastcnn train ...``), every rank sets up
    the same run, the ranks' settings and data are checked to agree, and training is data-parallel
    (:func:`fastcnn.distributed.fit`); rank 0 alone prints and writes the checkpoint, history and plot.
    """
    comm = _world()
    if comm is None:
        return _train(args, _setup(args), None)
    job = distributed.run_everywhere(comm, lambda: _setup(args, comm))  # holds no collective: ranks may fail
    _check_ranks_agree(comm, args, job)
    return _train(args, job, comm)


def _world():
    """The MPI communicator when a launcher started several ranks, else None; a missing mpi4py is an error."""
    if distributed.launched_size() <= 1:
        return None
    try:
        return distributed.world()
    except (ImportError, ValueError) as exc:
        fail(f"started by an MPI launcher: {exc}", EXIT_FAILURE)


def _setup(args, comm=None):
    """Everything before training: settings, data, model, optimizer, schedule; under MPI, checked to agree."""
    checkpoint, extra, settings, start = _resume(args)
    common.check_data_dir(settings["data"], args.data_dir)
    if comm is None or comm.is_root:
        _check_outputs(args, settings["model"])
    threads = common.set_threads(args.threads)
    name, train, val, test, norm = _prepare_data(settings, checkpoint)
    model = checkpoint["model"] if checkpoint is not None else _new_model(settings)
    optimizer = _optimizer(model, checkpoint, settings, args)
    schedule = _schedule(optimizer, checkpoint, settings, args)
    return {"checkpoint": checkpoint, "extra": extra, "settings": settings, "start": start, "threads": threads,
            "name": name, "train": train, "val": val, "test": test, "norm": norm, "model": model,
            "optimizer": optimizer, "schedule": schedule}


def _check_ranks_agree(comm, args, job):
    """One clear refusal (exit status 2, printed by rank 0) when the ranks were started with different
    settings, data or checkpoint."""
    values = {key: value for key, value in job["settings"].items() if key != "data_dir"}  # the data counts
    if values["data"] not in ("sample", "mnist", "fashion-mnist"):
        values["data"] = "a directory"  # its path may differ from machine to machine
    values.update(epochs=args.epochs, resumed_epoch=job["start"],
                  checkpoint=distributed.fingerprint(_file_bytes(args.resume)) if args.resume else None)
    for split in ("train", "val", "test"):
        pair = job[split]
        values[f"{split} data"] = None if pair is None else [distributed.fingerprint(a) for a in pair]
    values["initial weights" if args.resume is None else "checkpoint weights"] = distributed.fingerprint(
        np.concatenate([p.data.reshape(-1) for p in job["model"].parameters()]))
    try:
        distributed.check_same(comm, values, derived=[k for k in values if k.endswith((" data", " weights"))])
    except distributed.SettingsMismatch as exc:
        if not comm.is_root:
            raise SystemExit(EXIT_USAGE) from None
        fail(str(exc), EXIT_USAGE)


def _file_bytes(path):
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8)


def _train(args, job, comm):
    """Train the set-up job, write the checkpoint, history and plot (rank 0), report the test accuracy."""
    root = comm is None or comm.is_root
    settings, start, model, optimizer = job["settings"], job["start"], job["model"], job["optimizer"]
    if root:
        _announce(job["name"], settings, args, job["threads"], start, len(job["train"][0]), job["val"],
                  len(job["test"][0]), comm)
    stopper = _early_stopping(settings)
    augment = _augment(settings, job["extra"])
    new = _fit(model, job["train"], job["val"], args.epochs, settings, comm,
               optimizer=optimizer, schedule=job["schedule"], initial_epoch=start,
               callbacks=[stopper] if stopper is not None else None, augment=augment)
    stopped_early = stopper is not None and stopper.stopped_epoch > 0

    done = start + len(new.get("loss", ()))
    history = {k: list(v) for k, v in (job["extra"].get("history") or {}).items()}
    for key, values in new.items():
        history.setdefault(key, []).extend(values)
    best = stopper.best_epoch + 1 if stopped_early else None
    if root:
        with _aborting(comm):
            _save(model, args.out, optimizer=optimizer, normalizer=job["norm"], schedule=job["schedule"],
                  augment=augment, settings=settings, epoch=done, history=history, best_epoch=best)
            if args.plot is not None:
                _plot_history(history, args.plot)

    x_test, y_test = job["test"]
    result = model.evaluate(x_test, y_test) if comm is None else distributed.evaluate(model, x_test, y_test, comm)
    n = len(x_test)
    if root:
        print(f"test accuracy: {100 * result['accuracy']:.2f}% ({n} image{'s' if n != 1 else ''})", flush=True)
    if done < args.epochs and not stopped_early:  # fit stopped: the loss diverged
        return EXIT_FAILURE
    return 0


def _aborting(comm):
    """Under MPI, a failure of rank 0 alone (writing the checkpoint) ends every rank; else nothing."""
    return distributed.abort_on_error(comm) if comm is not None else contextlib.nullcontext()


def _check_outputs(args, model_name):
    """Default ``--out`` from the model's name; refuse unwritable outputs and --plot without matplotlib."""
    if args.out is None:
        args.out = DEFAULT_OUT.replace("lenet5", model_name)
    common.check_output(args.out, "--out")
    common.check_output(history_path(args.out), "--out")  # the history goes beside the checkpoint
    common.check_output(args.plot, "--plot")
    if args.plot is not None:
        from ..plot import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            fail(f"argument --plot: {exc}", EXIT_FAILURE)


def _resume(args):
    """``(checkpoint, extra, settings, start_epoch)``: the ``--resume`` checkpoint (or None) and the settings.

    Each setting is the command line's, else the checkpoint's (checked), else the default.  The model
    is the checkpoint's: its name is found by architecture, and a different ``--model`` is refused.
    """
    if args.resume is None:
        settings = {k: getattr(args, k) if getattr(args, k) is not None else d for k, d in DEFAULTS.items()}
        settings.update({k: getattr(args, k) for k in OPTIONAL})
        _check_validation(settings)
        return None, {}, settings, 0
    checkpoint = common.load_checkpoint(args.resume)
    extra = checkpoint.get("extra") or {}
    saved = extra.get("settings") if isinstance(extra.get("settings"), dict) else {}
    if "settings" in extra and saved is not extra.get("settings"):
        fail(f"{args.resume}: corrupt checkpoint: extra.settings must be a dict", EXIT_DATA_ERROR)
    if extra.get("settings") is not None and "val_split" not in saved:
        saved = dict(saved, val_split=None)
    settings = {}
    for key, default in list(DEFAULTS.items()) + [(k, None) for k in OPTIONAL]:
        value = getattr(args, key)
        if value is None and key in saved:
            ok, want = _SAVED[key]
            if not ok(saved[key]):
                fail(f"{args.resume}: corrupt checkpoint: setting {key!r} must be {want}, got {saved[key]!r}",
                     EXIT_DATA_ERROR)
            value = saved[key]
        settings[key] = value if value is not None else default
    if settings["val_split"] is None:  # written before the default split: it trained on every image
        settings["val_split"] = 0.0
    settings["model"] = _resumed_model_name(args, checkpoint, saved)
    _check_validation(settings)
    start = checkpoint.get("epoch") or 0
    if start >= args.epochs:
        fail(f"argument --epochs: {args.resume} has already trained {start} epoch"
             f"{'s' if start != 1 else ''}; --epochs is the total, pass more than {start}", EXIT_USAGE)
    return checkpoint, extra, settings, start


def _resumed_model_name(args, checkpoint, saved):
    """The zoo name of the checkpoint's architecture; a different ``--model`` is a one-line error."""
    from ..serialize import model_to_config

    def layers(model):
        return json.loads(json.dumps(to_jsonable(model_to_config(model)["layers"])))

    stored = layers(checkpoint["model"])
    names = [saved.get("model")] if saved.get("model") in common.MODEL_NAMES else []
    names += [n for n in common.MODEL_NAMES if n not in names]
    found = next((n for n in names if layers(common.build_model(n)) == stored), None)
    if args.model is not None and args.model != found:
        held = f"a {found}" if found else "a model that is none of the built-in ones"
        fail(f"argument --model: {args.resume} holds {held}, not {args.model}; --resume continues the "
             f"checkpoint's model: drop --model, or train {args.model} without --resume", EXIT_USAGE)
    return found or f"the model of {args.resume}"


def _check_validation(settings):
    """Refuse --early-stopping (and the plateau schedule) when --val-split 0 leaves nothing to watch."""
    if settings["val_split"] == 0 and settings["early_stopping"] is not None:
        fail("argument --early-stopping: needs a validation split (--val-split F with F > 0); the test set "
             "is never used for model selection", EXIT_USAGE)


def _prepare_data(settings, checkpoint):
    """Load, limit, split and standardise the data.

    Returns ``(description, train, validation or None, test, normalizer_state)``,
    each split an ``(x, y)`` pair with float32 images.  The statistics are the
    checkpoint's when resuming (those of the original training split), else
    fitted on the training split.
    """
    name, ((x_train, y_train), (x_test, y_test)) = common.load_data(settings["data"], settings["data_dir"])
    common.check_images(settings["data"], (("training", (x_train, y_train)), ("test", (x_test, y_test))))
    if settings["limit"] is not None:
        x_train, y_train = x_train[: settings["limit"]], y_train[: settings["limit"]]
        n_test = max(1, settings["limit"] // 4)
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    val = None
    if settings["val_split"]:
        try:
            (x_train, y_train), val = train_val_split(
                x_train, y_train, val_fraction=settings["val_split"], seed=settings["seed"], stratify=True)
        except ValueError as exc:
            fail(f"argument --val-split: {exc}", EXIT_USAGE)
    if checkpoint is not None and checkpoint.get("normalizer_state"):
        norm = checkpoint["normalizer_state"]
    else:
        norm = Normalizer("standardize").fit(x_train).state_dict()
    x_train, x_test = common.normalize(x_train, norm), common.normalize(x_test, norm)
    if val is not None:
        val = (common.normalize(val[0], norm), val[1])
    return name, (x_train, y_train), val, (x_test, y_test), norm


def _new_model(settings):
    """A freshly initialised ``--model``, seeded with ``--seed``."""
    fastcnn.manual_seed(settings["seed"])
    return common.build_model(settings["model"])


def _optimizer(model, checkpoint, settings, args):
    """SGD with the settings; when resuming, its state (momentum buffers) from the checkpoint.

    Explicit ``--lr``/``--momentum``/``--weight-decay`` win over the checkpoint's
    values, and ``settings`` is updated to what the optimizer uses.
    """
    optimizer = optim.SGD(model.parameters(), lr=settings["lr"], momentum=settings["momentum"],
                                  weight_decay=settings["weight_decay"])
    if checkpoint is None or checkpoint.get("optimizer_state") is None:
        return optimizer
    try:
        optimizer.load_state_dict(checkpoint["optimizer_state"])
    except (KeyError, TypeError, ValueError) as exc:
        fail(f"{args.resume}: corrupt optimizer state: {exc}", EXIT_DATA_ERROR)
    for key in ("lr", "momentum", "weight_decay"):
        if getattr(args, key) is not None:
            setattr(optimizer, key, getattr(args, key))
    settings.update(lr=optimizer.lr, momentum=optimizer.momentum, weight_decay=optimizer.weight_decay)
    return optimizer


def _schedule(optimizer, checkpoint, settings, args):
    """The ``--schedule`` (or the checkpoint's), None for none; its state from the checkpoint when resuming
    with the same schedule (no ``--schedule`` on the command line)."""
    if settings["schedule"] in (None, "", "none"):
        return None
    try:
        schedule = optim.make_schedule(settings["schedule"], optimizer)
    except (TypeError, ValueError) as exc:
        fail(f"argument --schedule: {exc}", EXIT_USAGE)
    saved = (checkpoint or {}).get("schedule_state")
    if saved and schedule is not None and args.schedule is None:
        try:
            schedule.load_state_dict(saved)
        except (KeyError, TypeError, ValueError) as exc:
            fail(f"{args.resume}: corrupt schedule state: {exc}", EXIT_DATA_ERROR)
    return schedule


def _early_stopping(settings):
    """The ``--early-stopping`` callback on the validation loss, None without it."""
    if settings["early_stopping"] is None:
        return None
    return EarlyStopping(monitor="val_loss", patience=settings["early_stopping"])


def _augment(settings, extra):
    """The ``--augment`` transform, None without it; its generator where the resumed run left it."""
    if not settings["augment"]:
        return None
    saved = extra.get("augment_state")
    if saved:
        return Augment.from_state_dict(saved)
    return Augment(**AUGMENT, seed=np.random.default_rng([settings["seed"], 0xA06]))


def _announce(name, settings, args, threads, start, n_train, val, n_test, comm=None):
    """The first line: model, data sizes, epochs, optimizer, threads (per rank, and the ranks) and what is
    resumed."""
    validation = f"{len(val[0])} validation / " if val is not None else "no validation / "
    resumed = f"; resuming {args.resume} after epoch {start}" if args.resume is not None else ""
    if comm is not None:
        resumed = f" per rank x {comm.size} MPI ranks, global batch split over them" + resumed
    print(
        f"{settings['model']} on {name}: {n_train} training / {validation}{n_test} test images; "
        f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}, batch {settings['batch_size']}, "
        f"SGD lr={settings['lr']:g} momentum={settings['momentum']:g} "
        f"weight_decay={settings['weight_decay']:g}; "
        f"{threads} thread{'s' if threads != 1 else ''}{resumed}",
        flush=True,
    )


def _fit(model, train, validation, epochs, settings, comm=None, **kwargs):
    """``model.fit`` (``fastcnn.distributed.fit`` under MPI) with the progress report on rank 0; its
    RuntimeWarnings (a diverging loss) become ``fastcnn: warning:`` lines, its argument errors a one-line
    error.  Returns the new history."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            if comm is None:
                history = model.fit(*train, epochs=epochs, batch_size=settings["batch_size"],
                                    validation_data=validation, verbose=True, seed=settings["seed"], **kwargs)
            else:  # the settings and data were checked to agree in _setup
                history = distributed.fit(model, *train, epochs=epochs, batch_size=settings["batch_size"],
                                          validation_data=validation, verbose=True, seed=settings["seed"],
                                          comm=comm, check=False, **kwargs)
        except (TypeError, ValueError) as exc:
            if comm is not None and not comm.is_root:
                raise SystemExit(EXIT_USAGE) from None  # every rank refuses alike; rank 0 says why
            fail(f"cannot train: {exc}", EXIT_USAGE)
    if comm is None or comm.is_root:
        for warning in caught:
            sys.stderr.write(f"fastcnn: warning: {warning.message}\n")
    return history


def _plain_history(history):
    """The history with ``epoch`` entries as int and all others as float (None kept)."""
    return {k: [None if v is None else (int(v) if k == "epoch" else float(v)) for v in values]
            for k, values in history.items()}


def history_path(out):
    """Where ``train`` writes the history: the checkpoint path without ``.npz``, plus ``.history.json``."""
    return (out[:-4] if out.lower().endswith(".npz") else out) + ".history.json"


def _save(model, out, optimizer, normalizer, schedule, augment, settings, epoch, history, best_epoch):
    """Write the checkpoint (everything ``--resume`` needs) and the history beside it."""
    extra = {"epoch": epoch, "seed": settings["seed"], "history": _plain_history(history), "settings": settings}
    if augment is not None:
        extra["augment_state"] = to_jsonable(augment.state_dict())
    try:
        model.save(out, optimizer=optimizer, normalizer=normalizer, schedule=schedule, extra=extra)
    except OSError as exc:
        fail(common.write_error(out, exc), EXIT_FAILURE)
    stop = f"; stopped early, weights of the best epoch ({best_epoch})" if best_epoch is not None else ""
    print(f"checkpoint written to {out} (epoch {epoch}{stop})", flush=True)
    path = history_path(out)
    try:
        save_history(_plain_history(history), path)
    except OSError as exc:
        fail(common.write_error(path, exc), EXIT_FAILURE)
    print(f"history written to {path}", flush=True)


def _plot_history(history, path):
    from ..plot import plot_history

    try:
        plot_history(history, path)
    except OSError as exc:
        fail(common.write_error(path, exc), EXIT_FAILURE)
    print(f"training curves written to {path}", flush=True)
