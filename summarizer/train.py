"""`train`: fit a title model on a prepared dataset into a run directory that can be resumed.

The run directory holds everything needed to trust and continue a run:

    config.json        the resolved config (a rerun with a different one is refused)
    run.json           data fingerprint, package/Keras versions, backend, hardware, metrics
    metrics.jsonl      one line per finished epoch
    checkpoint/        model + optimizer state and the position in the data (state.json)
    model.keras        the weights with the best dev loss so far (no optimizer state; with
                       `average_last`, at the end, the last epochs' mean where it is better)
    tokenizer.json     the dataset's tokenizer, so the folder alone turns bodies into titles
    averaging/         with `average_last`: the last title epochs' weights and the best one's
    logs/              TensorBoard event files (with the TensorFlow backend)

A checkpoint is written every `checkpoint_steps` batches, at every epoch end and on Ctrl-C
or SIGTERM; rerunning the same command after any stop, a SIGKILL included, continues from
it: the batch order is a function of (seed, epoch), so no batch is trained on twice.

A run has two phases: `pretrain_epochs` epochs on the pretrain split (self-supervised pairs),
then `epochs` on titles. Epochs are numbered across both, and since a resumed run may not
change `pretrain_epochs`, the checkpoint's epoch says which phase it is in. One learning-rate
schedule (warmup, then cosine decay) spans both phases, so the boundary is one step like
another: no new optimizer, no second warmup.

The output may be a `gs://` prefix (a pod's disk does not outlive it): the run is then kept in
a local folder and every file above except logs/ is uploaded as it changes, and a restarted
run downloads them first, so it continues wherever it runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from summarizer import __version__, storage
from summarizer.batches import TitleBatches
from summarizer.dataset import Dataset, open_dataset
from summarizer.errors import UserError
from summarizer.models import TitleLoss, build_model, load_model
from summarizer.prepare import PRETRAIN
from summarizer.train_config import TrainConfig

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint"
# What a rerun may change and still continue the run: its length, and where the folder lives.
# More epochs stretch the learning-rate schedule to the new total from where the run is.
EXTENDABLE = ("epochs", "patience", "max_minutes", "output")
MODEL = "model.keras"
SYNCED = ("config.json", "run.json", "tokenizer.json", "metrics.jsonl", MODEL,
          f"{CHECKPOINT}/{MODEL}", f"{CHECKPOINT}/state.json")  # what a gs:// run keeps there
TITLES = "titles"  # the phase after PRETRAIN
AVERAGING = "averaging"  # the folder of the weights `average_last` reads
BEST = "best.npz"  # there: the best title epoch's weights, what an average worse than it yields


def accelerator() -> str:
    """What the backend trains on, in words: 'cpu' or the first device's kind."""
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else f"{device.platform}: {device.device_kind}"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu: {len(gpus)} x {gpus[0].name}" if gpus else "cpu"
    return "cpu"


def precision_policy(config: TrainConfig) -> str:
    wanted = config.mixed_precision
    if wanted == "auto":
        wanted = "off" if accelerator() == "cpu" else "bfloat16"
    return "mixed_bfloat16" if wanted == "bfloat16" else "float32"


def load_batches(dataset: Dataset, config: TrainConfig, worker: int = 0,
                 workers: int = 1) -> tuple[TitleBatches, TitleBatches]:
    """Train batches (this worker's shards) and the dev batches scored after each epoch."""
    settings = dataset.manifest["settings"]
    if config.body_len > settings["body_len"] or config.title_len > settings["title_len"]:
        raise UserError(f"body_len {config.body_len} / title_len {config.title_len} exceed the "
                        f"dataset's {settings['body_len']} / {settings['title_len']}; prepare "
                        "with longer --body-len/--title-len or lower them")
    train = TitleBatches(dataset.arrays("train", worker, workers), config.body_len, config.title_len,
                         config.batch_size, config.seed, fixed_shapes=config.fixed_shapes)
    dev = TitleBatches(dataset.arrays("dev"), config.body_len, config.title_len, config.batch_size,
                       config.seed, limit=config.dev_examples, fixed_shapes=config.fixed_shapes)
    if not train.examples or not dev.examples:
        raise UserError(f"{config.dataset}: the train and dev splits must both hold issues "
                        f"(train {train.examples}, dev {dev.examples})")
    return train, dev


def load_pretrain_batches(dataset: Dataset, config: TrainConfig) -> TitleBatches | None:
    """The pretrain split's batches, for a run with a pretraining phase."""
    if not config.pretrain_epochs:
        return None
    if PRETRAIN not in dataset.manifest["splits"]:
        raise UserError(f"{config.dataset} has no pretrain split for pretrain_epochs = "
                        f"{config.pretrain_epochs}: prepare the dataset with --pretraining, or set "
                        "pretrain_epochs=0")
    batches = TitleBatches(dataset.arrays(PRETRAIN), config.body_len, config.title_len, config.batch_size,
                           config.seed, fixed_shapes=config.fixed_shapes)
    if not batches.examples:
        raise UserError(f"{config.dataset}: the pretrain split holds no pairs")
    return batches


def phase(config: TrainConfig, epoch: int) -> str:
    """The phase of epoch `epoch` (0-based): PRETRAIN for the first `pretrain_epochs`, then TITLES."""
    return PRETRAIN if epoch < config.pretrain_epochs else TITLES


def averaged_epochs(config: TrainConfig, done: int) -> list[int]:
    """The title epochs (numbered from 1, as in metrics.jsonl) whose mean `average_last` takes
    once `done` epochs are finished: the last ones, never a pretraining one."""
    if not config.average_last:
        return []
    return list(range(max(config.pretrain_epochs, done - config.average_last) + 1, done + 1))


def _epoch_file(epoch: int) -> str:
    return f"epoch-{epoch:04d}.npz"


def fit_data(batches: Iterator[tuple]) -> object:
    """What `fit`/`evaluate` take: batch shapes vary (length buckets), which TensorFlow must be
    told up front; JAX compiles once per shape and takes a generator (no other iterator)."""
    if keras.backend.backend() != "tensorflow":
        return (batch for batch in batches)
    import tensorflow as tf

    ids = tf.TensorSpec((None, None), tf.int32)
    return tf.data.Dataset.from_generator(lambda: batches, output_signature=((ids, ids), ids)).prefetch(2)


def steps_per_epoch(config: TrainConfig, train: TitleBatches) -> int:
    return min(config.steps_per_epoch or len(train), len(train))


def evaluate_dev(model: keras.Model, dev: TitleBatches) -> float:
    return float(model.evaluate(fit_data(dev.epoch(0)), steps=len(dev), verbose=0))


def compile_model(model: keras.Model, config: TrainConfig, total_steps: int) -> None:
    warmup = min(config.warmup_steps, max(total_steps // 10, 1))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, warmup_target=config.learning_rate, warmup_steps=warmup,
        decay_steps=max(total_steps - warmup, 1), alpha=config.min_learning_rate_ratio)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay,
                                       clipnorm=config.clip_norm)
    # Decay only matrices: norms, biases and embeddings keep their scale.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "embeddings"])
    model.compile(optimizer=optimizer, loss=TitleLoss(config.label_smoothing))


def save_inference_model(model: keras.Model, path: Path) -> None:
    """The weights alone (no optimizer state): a third of the size, what a bundle ships."""
    copy = model.__class__.from_config(model.get_config())  # clone_model would keep the optimizer
    copy.set_weights(model.get_weights())
    tmp = path.with_name(f".tmp-{path.name}")
    copy.save(tmp)
    tmp.replace(path)


class Run:
    """The run directory: its config, its checkpoint and the state that says where it is."""

    def __init__(self, config: TrainConfig, local: Path | None = None) -> None:
        self.config = config
        self.remote = config.output if storage.is_gcs(config.output) else None
        if local is None:
            local = (storage.cache_dir("runs", hashlib.sha256(config.output.encode()).hexdigest()[:16])
                     if self.remote else Path(config.output))
        self.folder = local
        self.checkpoint = self.folder / CHECKPOINT

    def pull(self) -> None:
        """A gs:// run's files into a clean local folder (nothing local outlives a pod)."""
        if not self.remote:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        for name in SYNCED:
            if storage.exists(storage.join(self.remote, name)):
                storage.download_file(storage.join(self.remote, name), self.folder / name)
        state = self.checkpoint / "state.json"
        if self.config.average_last and state.exists():
            epochs = averaged_epochs(self.config, json.loads(state.read_text())["epoch"])
            for name in (BEST, *map(_epoch_file, epochs)):
                if storage.exists(storage.join(self.remote, AVERAGING, name)):
                    storage.download_file(storage.join(self.remote, AVERAGING, name),
                                          self.folder / AVERAGING / name)

    def push(self, *names: str) -> None:
        """Upload these files of a gs:// run, in this order (the checkpoint's model before the
        state that points into it)."""
        if self.remote:
            for name in names:
                storage.upload_file(str(self.folder / name), storage.join(self.remote, name))

    def saved(self) -> tuple[dict, Path] | None:
        """The last checkpoint's state and model file, read without touching the run: how the
        workers that do not write it resume with the chief."""
        if self.remote:
            self.pull()
        for folder in (self.checkpoint, self.folder / f".old-{CHECKPOINT}"):
            if (folder / "state.json").exists():
                return json.loads((folder / "state.json").read_text()), folder / MODEL
        return None

    def start(self, dataset: Dataset) -> dict:
        """The saved state when resuming, a fresh one otherwise."""
        self.folder.mkdir(parents=True, exist_ok=True)
        config_file = self.folder / "config.json"
        config = self.config.as_dict()
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        if config_file.exists():
            self._check_resumable(json.loads(config_file.read_text()), config, dataset)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
        shutil.copyfile(dataset.tokenizer_path, self.folder / "tokenizer.json")  # a self-contained run
        self.push("config.json", "tokenizer.json")
        state_file = self.checkpoint / "state.json"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            log.info("resuming %s at epoch %d, batch %d (%s)", self.config.output, state["epoch"] + 1,
                     state["batch"], phase(self.config, state["epoch"]))
            run = json.loads((self.folder / "run.json").read_text())
            commands = run.setdefault("commands", [run["command"]])
            if command not in commands:
                commands.append(command)
                self.write_info(run)
            return state
        run = {"package_version": __version__, "keras_version": keras.__version__,
               "backend": keras.backend.backend(), "accelerator": accelerator(),
               "precision": precision_policy(self.config), "hardware": _hardware(),
               "data_fingerprint": dataset.manifest["fingerprint"], "dataset": self.config.dataset,
               "command": command, "commands": [command]}
        self.write_info(run)
        return {"epoch": 0, "batch": 0, "best_dev_loss": None, "bad_epochs": 0, "seconds": 0.0,
                "history": []}

    def _check_resumable(self, saved: dict, config: dict, dataset: Dataset) -> None:
        """The same run, or the same run made longer (more epochs or patience), given another
        time budget, or moved. A key the saved config lacks is one added since, at its default."""
        saved = TrainConfig().as_dict() | saved
        changed = sorted(key for key in config if saved.get(key) != config[key])
        if set(changed) - set(EXTENDABLE) or config["epochs"] < saved["epochs"]:
            raise UserError(f"{self.config.output} holds a run with a different config "
                            f"({', '.join(changed)}); pass a new output folder, or the same config to "
                            "resume it (only epochs, patience and max_minutes may change)")
        if changed:
            log.info("continuing %s with %s", self.config.output,
                     ", ".join(f"{key} {saved[key]} -> {config[key]}" for key in changed))
        run_file = self.folder / "run.json"
        if run_file.exists():
            fingerprint = json.loads(run_file.read_text())["data_fingerprint"]
            if fingerprint != dataset.manifest["fingerprint"]:
                raise UserError(f"{self.config.dataset} is not the data {self.config.output} was trained on "
                                "(its fingerprint differs); pass a new output folder")

    def write_info(self, info: dict) -> None:
        (self.folder / "run.json").write_text(json.dumps(info, indent=2))
        self.push("run.json")

    def write_metrics(self, history: list[dict]) -> None:
        """metrics.jsonl rewritten from the checkpoint's history, after the checkpoint:
        appending before it left a line that a kill during the save made a resumed run write
        twice."""
        tmp = self.folder / ".tmp-metrics.jsonl"
        tmp.write_text("".join(json.dumps(line) + "\n" for line in history))
        tmp.replace(self.folder / "metrics.jsonl")
        self.push("metrics.jsonl")

    def save(self, model: keras.Model, state: dict) -> None:
        """Model, optimizer and position, replaced as one folder so a kill leaves the old or the
        new checkpoint, never half of one."""
        tmp = self.folder / f".tmp-{CHECKPOINT}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save(tmp / MODEL)
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
        old = self.folder / f".old-{CHECKPOINT}"
        shutil.rmtree(old, ignore_errors=True)
        if self.checkpoint.exists():
            self.checkpoint.rename(old)
        tmp.rename(self.checkpoint)
        shutil.rmtree(old, ignore_errors=True)
        self.push(f"{CHECKPOINT}/{MODEL}", f"{CHECKPOINT}/state.json")

    def keep_weights(self, model: keras.Model, name: str) -> None:
        """A model's weights under averaging/: plain arrays (no pickle), no optimizer state."""
        folder = self.folder / AVERAGING
        folder.mkdir(exist_ok=True)
        tmp = folder / f".tmp-{name}"
        with tmp.open("wb") as handle:
            np.savez(handle, *model.get_weights())
        tmp.replace(folder / name)
        self.push(f"{AVERAGING}/{name}")

    def keep_epoch(self, model: keras.Model, epoch: int) -> None:
        """A finished title epoch's weights, and no more older ones than averaging reads."""
        self.keep_weights(model, _epoch_file(epoch))
        gone = epoch - self.config.average_last
        if gone > self.config.pretrain_epochs:
            (self.folder / AVERAGING / _epoch_file(gone)).unlink(missing_ok=True)
            if self.remote:
                storage.delete(storage.join(self.remote, AVERAGING, _epoch_file(gone)))

    def kept_weights(self, name: str) -> list[np.ndarray]:
        with np.load(self.folder / AVERAGING / name, allow_pickle=False) as arrays:
            return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]

    def recover(self) -> None:
        """A kill between the two renames in `save` leaves only `.old-checkpoint`."""
        old = self.folder / f".old-{CHECKPOINT}"
        if old.exists() and not self.checkpoint.exists():
            old.rename(self.checkpoint)

    def finish(self, state: dict, extra: dict) -> dict:
        run = json.loads((self.folder / "run.json").read_text())
        run["metrics"] = {"best_dev_loss": state["best_dev_loss"], "epochs": state["epoch"],
                          "train_seconds": round(state["seconds"], 1), **extra}
        self.write_info(run)
        return run


def warm_start(model: keras.Model, source: str) -> None:
    """A new run that starts from a trained model: every layer with the same name and weight
    shapes takes its weights (a larger model can grow out of a smaller one, e.g. by adding the
    copy head); the rest keep their fresh initialization."""
    path = Path(source)
    donor = load_model(path / MODEL if path.is_dir() else path)
    taken, fresh = [], []
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            found = donor.get_layer(layer.name).get_weights()
        except ValueError:
            found = []
        if [w.shape for w in found] == [w.shape for w in weights]:
            layer.set_weights(found)
            taken.append(layer.name)
        else:
            fresh.append(layer.name)
    if not taken:
        raise UserError(f"init_from {source!r}: no layer matches this model by name and shape; "
                        "start from a run of the same model kind")
    log.info("started from %s: %d layers taken, new: %s", source, len(taken), ", ".join(fresh) or "none")


def _hardware() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {accelerator()}"


class _StepCheckpoint(keras.callbacks.Callback):
    """Saves every `every` batches and keeps count of the batches done in this epoch."""

    def __init__(self, run: Run, state: dict, every: int) -> None:
        super().__init__()
        self.run, self.state, self.every = run, state, every
        self.started = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.state["batch"] += 1
        if self.state["batch"] % self.every == 0:
            self.save()

    def save(self) -> None:
        now = time.monotonic()
        self.state["seconds"] += now - self.started
        self.started = now
        self.run.save(self.model, self.state)


class _LogLines(keras.callbacks.Callback):
    """Plain progress lines when the output is not a terminal (pods, CI, nohup)."""

    def __init__(self, total: int, every: int = 50) -> None:
        super().__init__()
        self.total, self.every, self.started = total, every, time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if (batch + 1) % self.every == 0:
            rate = (batch + 1) / (time.monotonic() - self.started)
            log.info("batch %d/%d  loss %.4f  %.2f batches/s", batch + 1, self.total,
                     (logs or {}).get("loss", float("nan")), rate)


def record_epoch(run: Run, state: dict, model: keras.Model, train_loss: float | None,
                 dev_loss: float) -> None:
    """An epoch's end, the same on one machine and on a cluster's chief: model.keras when the
    dev loss improved, the early-stopping count, and the metrics line. A pretraining epoch's
    dev loss (on titles) only shows how far the model is: its model is not one to keep, and
    patience starts with the titles."""
    stage = phase(run.config, state["epoch"])
    best = state["best_dev_loss"]
    improved = stage == TITLES and (best is None or dev_loss < best)
    if improved:
        save_inference_model(model, run.folder / MODEL)
        run.push(MODEL)
    epoch = state["epoch"] + 1
    if stage == TITLES and run.config.average_last:
        if improved:
            run.keep_weights(model, BEST)
        run.keep_epoch(model, epoch)
    state.update(epoch=epoch, batch=0, best_dev_loss=dev_loss if improved else best,
                 bad_epochs=0 if improved or stage == PRETRAIN else state["bad_epochs"] + 1)
    state["history"].append({"epoch": epoch, "phase": stage, "train_loss": train_loss,
                             "dev_loss": dev_loss, "improved": improved})
    run.write_metrics(state["history"])
    log.info("epoch %d (%s): train loss %s, dev loss %.4f%s", epoch, stage,
             "n/a" if train_loss is None else f"{train_loss:.4f}", dev_loss,
             " (best so far)" if improved else "")


def average_weights(run: Run, state: dict, model: keras.Model, dev: TitleBatches) -> dict | None:
    """model.keras as the mean of the last `average_last` title epochs' weights (epochs late in a
    decaying learning rate wander around one minimum; their mean sits nearer its middle) where
    its dev loss is no worse than the best epoch's, else as the best epoch's weights. Returns
    what run.json records, or None with fewer than two title epochs to average."""
    epochs = averaged_epochs(run.config, state["epoch"])
    if len(epochs) < 2:
        return None
    kept = [run.kept_weights(_epoch_file(epoch)) for epoch in epochs]
    model.set_weights([np.mean(arrays, axis=0).astype(arrays[0].dtype) for arrays in zip(*kept, strict=True)])
    averaged = evaluate_dev(model, dev)
    better = averaged <= state["best_dev_loss"]
    if not better:  # model.keras may hold an earlier command's average: the best epoch's, again
        model.set_weights(run.kept_weights(BEST))
    save_inference_model(model, run.folder / MODEL)
    run.push(MODEL)
    log.info("mean of epochs %s: dev loss %.4f against the best epoch's %.4f: model.keras is %s", epochs,
             averaged, state["best_dev_loss"], "the mean" if better else "the best epoch")
    return {"epochs": epochs, "dev_loss": averaged, "kept": better}


def _callbacks(run: Run, checkpoint: _StepCheckpoint, steps: int) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [checkpoint]
    if not sys.stderr.isatty():
        callbacks.append(_LogLines(steps))
    if keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(str(run.folder / "logs"), update_freq=100))
    return callbacks


def _out_of_time(config: TrainConfig, state: dict) -> bool:
    """A budget for a lent machine: whole epochs only, so the run still ends with a model."""
    return bool(config.max_minutes) and state["seconds"] >= config.max_minutes * 60


def train(config: TrainConfig) -> dict:
    """Train (or resume) the run `config` describes; returns run.json's contents."""
    dataset = open_dataset(config.dataset)
    run = Run(config)
    # Checked before the run folder is written: a config.json left by a failed start would
    # refuse the corrected command as "a different config".
    train_batches, dev_batches = load_batches(dataset, config)
    phases = {PRETRAIN: load_pretrain_batches(dataset, config), TITLES: train_batches}
    run.pull()
    run.recover()
    state = run.start(dataset)
    run.write_metrics(state["history"])  # what a kill left may be ahead of the checkpoint
    keras.mixed_precision.set_global_policy(precision_policy(config))
    keras.utils.set_random_seed(config.seed)
    steps = {name: steps_per_epoch(config, batches) for name, batches in phases.items() if batches}
    model = build_model(config.model, dataset.manifest["vocab_size"])
    epochs = config.pretrain_epochs + config.epochs
    compile_model(model, config, sum(steps[phase(config, epoch)] for epoch in range(epochs)))
    if (run.checkpoint / MODEL).exists():
        # Weights and optimizer state go into the freshly compiled model: `load_model` would
        # lose the optimizer's weight-decay exclusions, which Keras does not save.
        model.optimizer.build(model.trainable_variables)
        model.load_weights(run.checkpoint / MODEL)
    elif config.init_from:
        warm_start(model, config.init_from)
    log.info("%s: %s parameters, %d train / %d dev issues, steps per epoch: %s", config.model.kind,
             f"{model.count_params():,}", train_batches.examples, dev_batches.examples,
             ", ".join(f"{count} ({name})" for name, count in steps.items()))
    checkpoint = _StepCheckpoint(run, state, config.checkpoint_steps)
    verbose = 1 if sys.stderr.isatty() else 0
    try:
        while (state["epoch"] < epochs and state["bad_epochs"] < config.patience
               and not _out_of_time(config, state)):
            epoch, skip = state["epoch"], state["batch"]
            batches, count = phases[phase(config, epoch)], steps[phase(config, epoch)]
            checkpoint.started = time.monotonic()
            if skip < count:
                fit = model.fit(fit_data(batches.epoch(epoch, skip)), steps_per_epoch=count - skip,
                                initial_epoch=epoch, epochs=epoch + 1, verbose=verbose, shuffle=False,
                                callbacks=_callbacks(run, checkpoint, count - skip))
                train_loss = fit.history["loss"][-1]
            else:
                train_loss = None
            record_epoch(run, state, model, train_loss, evaluate_dev(model, dev_batches))
            checkpoint.save()
    except KeyboardInterrupt:
        checkpoint.save()
        log.warning("interrupted: checkpoint saved at epoch %d, batch %d; rerun the same command "
                    "to continue", state["epoch"] + 1, state["batch"])
        raise
    examples = {name: phases[name].examples if config.steps_per_epoch == 0 else count * config.batch_size
                for name, count in steps.items()}
    trained = sum(examples[phase(config, epoch)] for epoch in range(state["epoch"]))
    rate = trained / max(state["seconds"], 1e-9)
    return run.finish(state, {"parameters": model.count_params(), "examples_per_second": round(rate, 1),
                              "pretrain_epochs": min(state["epoch"], config.pretrain_epochs),
                              "stopped_early": state["bad_epochs"] >= config.patience,
                              "out_of_time": _out_of_time(config, state),
                              "average": average_weights(run, state, model, dev_batches)})
