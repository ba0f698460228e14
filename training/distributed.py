"""Training across the workers of a cluster with `tf.distribute.MultiWorkerMirroredStrategy`.

Keras 3.15's `fit` fails under this strategy (it reduces per-replica values and scalar losses
with `strategy.reduce`), so the step is written out: every replica takes its own batch, its
loss (TitleLoss, a mean over its real title tokens) is weighted by its share of all replicas'
tokens so that the sum over replicas is the mean over every token of the global batch, and the
optimizer sums the replicas' gradients. (Keras clips each replica's gradient before that sum, so
`clip_norm` bounds each replica's share rather than the whole gradient as on one machine.)

Every worker trains on its own shards and runs the same number of steps, derived from the
manifest's shard sizes: a worker that stopped early would leave the others waiting in an
all-reduce forever. The chief writes the run directory as `summarizer.train` does (config.json,
run.json, metrics.jsonl, model.keras, and a checkpoint every `checkpoint_steps` steps and at
every epoch end); the other workers write nothing. The run directory is on shared storage (a
volume every pod mounts, or gs://), so a restarted job resumes: every worker loads the last
checkpoint and skips the steps it covers, and all continue in lockstep.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from summarizer import storage
from summarizer.batches import TitleBatches
from summarizer.dataset import Dataset, open_dataset
from summarizer.errors import UserError
from summarizer.models import TitleLoss, build_model
from summarizer.train import (
    MODEL,
    Run,
    compile_model,
    fit_data,
    load_batches,
    precision_policy,
    record_epoch,
)
from summarizer.train_config import TrainConfig
from training.cluster import Cluster

log = logging.getLogger(__name__)
LOG_EVERY = 50  # steps between progress lines
SUM = tf.distribute.ReduceOp.SUM


def lockstep_steps(dataset: Dataset, config: TrainConfig, cluster: Cluster, local_replicas: int) -> int:
    """The steps every worker runs in an epoch: as many as the worker with the fewest train
    batches can feed (a step takes one batch per local replica), at most `steps_per_epoch`.
    Every worker computes it from the manifest alone, so all agree without talking."""
    examples = [sum(shard["rows"] for shard in dataset.shards("train", worker, cluster.workers))
                for worker in range(cluster.workers)]
    fewest = min(-(-count // config.batch_size) for count in examples) // local_replicas
    if fewest < 1:
        shards = len(dataset.shards("train"))
        raise UserError(f"{config.dataset}: worker {examples.index(min(examples))} of {cluster.workers} gets "
                        f"{min(examples)} train issues ({shards} train shards, {local_replicas} replicas "
                        "per worker); prepare with --shards at least the number of workers")
    return min(config.steps_per_epoch or fewest, fewest)


def _fresh_state() -> dict:
    return {"epoch": 0, "batch": 0, "best_dev_loss": None, "bad_epochs": 0, "seconds": 0.0, "history": []}


def _start_run(config: TrainConfig, dataset: Dataset, cluster: Cluster) -> tuple[Run, dict]:
    """The chief's run directory and the state to go on from: its last checkpoint's after a
    restart, which only the same number of workers can resume (each reads its own shards)."""
    run = Run(config)
    run.pull()
    run.recover()
    info_file = run.folder / "run.json"
    if (run.checkpoint / "state.json").exists():  # checked before `start` records this attempt
        workers = json.loads(info_file.read_text()).get("workers")
        if workers != cluster.workers:
            trained = f"{workers} workers" if workers else "one machine (issue-summarizer train)"
            raise UserError(f"{config.output} holds a checkpoint of a run on {trained}, not on "
                            f"{cluster.workers}; resume it on as many, or pass a new output folder")
        return run, run.start(dataset)
    state = run.start(dataset)
    for stale in ("metrics.jsonl", MODEL):  # what a run that never reached a checkpoint left
        (run.folder / stale).unlink(missing_ok=True)
    run.write_info(json.loads(info_file.read_text()) | {"workers": cluster.workers})
    return run, state


def _saved_state(config: TrainConfig) -> tuple[dict, Path | None]:
    """A non-chief worker's view of the last checkpoint, read without writing to the run (a
    gs:// run is fetched into a private folder)."""
    private = Path(tempfile.mkdtemp(prefix="run-")) if storage.is_gcs(config.output) else None
    saved = Run(config, local=private).saved()
    return saved if saved else (_fresh_state(), None)


def _mean_loss(per_token: TitleLoss, targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """The mean over real title tokens. With reduction "none", Keras does not divide the
    loss by the number of replicas as it does for a mean inside a strategy."""
    return tf.reduce_mean(per_token(targets, logits))


def _train_step(strategy: tf.distribute.Strategy, model: keras.Model,
                per_token: TitleLoss) -> tf.types.experimental.Function:
    """One step on every replica; returns the global loss and the examples trained on."""

    def replica_step(inputs: tuple[tf.Tensor, tf.Tensor], targets: tf.Tensor) -> tf.Tensor:
        tokens = tf.cast(tf.math.count_nonzero(targets), tf.float32)
        all_tokens = tf.distribute.get_replica_context().all_reduce(SUM, tokens)
        with tf.GradientTape() as tape:
            loss = _mean_loss(per_token, targets, model(inputs, training=True)) * tokens / all_tokens
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply(grads, model.trainable_variables)
        return tf.stack([loss, tf.cast(tf.shape(targets)[0], tf.float32)])

    @tf.function
    def step(iterator: tf.distribute.DistributedIterator) -> tf.Tensor:
        return strategy.reduce(SUM, strategy.run(replica_step, args=next(iterator)), axis=None)

    return step


def _agree(strategy: tf.distribute.Strategy) -> tf.types.experimental.Function:
    """Whether any worker raised its flag, on every worker: how the chief's decision to stop
    early (it alone scores dev) reaches the others."""

    @tf.function
    def agree(flag: tf.Tensor) -> tf.Tensor:
        # tf.identity places the flag on the replica's device, which all_reduce needs.
        per_replica = strategy.run(
            lambda: tf.distribute.get_replica_context().all_reduce(SUM, tf.identity(flag)))
        return strategy.experimental_local_results(per_replica)[0] > 0

    return agree


def _dev_scorer(model: keras.Model, per_token: TitleLoss) -> Callable[[TitleBatches], float]:
    """Dev loss as Keras `evaluate` reports it: batch losses averaged with batch sizes as
    weights. Runs on the chief alone, outside the strategy's collectives."""
    ids = tf.TensorSpec((None, None), tf.int32)

    @tf.function(input_signature=[ids, ids, ids])
    def batch_loss(body: tf.Tensor, title_in: tf.Tensor, title_out: tf.Tensor) -> tf.Tensor:
        return _mean_loss(per_token, title_out, model((body, title_in), training=False))

    def score(batches: TitleBatches) -> float:
        total = rows = 0.0
        for (body, title_in), title_out in batches.epoch(0):
            total += float(batch_loss(body, title_in, title_out)) * len(body)
            rows += len(body)
        return total / rows

    return score


def train_multiworker(config: TrainConfig, cluster: Cluster) -> dict | None:
    """Train as this cluster member; the chief returns run.json's contents, the others None."""
    if keras.backend.backend() != "tensorflow":
        raise UserError(f"multi-worker training needs the TensorFlow backend, not "
                        f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow")
    if config.pretrain_epochs or config.average_last:
        raise UserError("pretrain_epochs and average_last are for issue-summarizer train (one machine); "
                        "a cluster run needs both at 0")
    dataset = open_dataset(config.dataset)
    lockstep_steps(dataset, config, cluster, 1)  # the same error on every worker, before any waits
    if cluster.is_chief:
        run, state = _start_run(config, dataset, cluster)
        checkpoint: Path | None = run.checkpoint / MODEL if (run.checkpoint / MODEL).exists() else None
    else:
        run, (state, checkpoint) = None, _saved_state(config)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    steps = lockstep_steps(dataset, config, cluster, strategy.num_replicas_in_sync // cluster.workers)
    keras.mixed_precision.set_global_policy(precision_policy(config))
    keras.utils.set_random_seed(config.seed)
    train_batches, dev_batches = load_batches(dataset, config, cluster.index, cluster.workers)
    with strategy.scope():
        model = build_model(config.model, dataset.manifest["vocab_size"])
        compile_model(model, config, steps * config.epochs)
        model.optimizer.build(model.trainable_variables)  # no variables may be made inside a step
    if checkpoint is not None:
        model.load_weights(checkpoint)  # weights and optimizer state, the same file on every worker
        log.info("resuming at epoch %d, step %d", state["epoch"] + 1, state["batch"])
    per_token = TitleLoss(config.label_smoothing, reduction="none")
    step, score = _train_step(strategy, model, per_token), _dev_scorer(model, per_token)
    agree = _agree(strategy)
    log.info("worker %d of %d (%d replicas in all): %s parameters, %d train issues here, %d steps "
             "per epoch", cluster.index, cluster.workers, strategy.num_replicas_in_sync,
             f"{model.count_params():,}", train_batches.examples, steps)
    replicas = strategy.num_replicas_in_sync // cluster.workers
    examples, began, stopped = 0.0, time.monotonic(), False
    clock = began

    def save() -> None:  # the chief's checkpoint, with the training time so far
        nonlocal clock
        state["seconds"] += time.monotonic() - clock
        clock = time.monotonic()
        if run is not None:
            run.save(model, state)

    while state["epoch"] < config.epochs and not stopped:
        epoch, skip = state["epoch"], state["batch"]
        iterator = iter(strategy.distribute_datasets_from_function(
            lambda _, epoch=epoch, skip=skip: fit_data(train_batches.epoch(epoch, skip * replicas))))
        losses = []
        for done in range(skip + 1, steps + 1):
            loss, rows = (float(value) for value in step(iterator))
            losses.append(loss)
            examples += rows
            state["batch"] = done
            if done % LOG_EVERY == 0 or done == steps:
                log.info("epoch %d step %d/%d loss %.4f", epoch + 1, done, steps, loss)
            if done % config.checkpoint_steps == 0 and done < steps:
                save()
        train_loss = float(sum(losses) / len(losses)) if losses else None
        if run is not None:
            record_epoch(run, state, model, train_loss, score(dev_batches))
        else:
            state.update(epoch=epoch + 1, batch=0)
        save()
        stopped = bool(agree(tf.constant(float(state["bad_epochs"] >= config.patience))))
    if run is None:
        return None
    return run.finish(state, {"parameters": model.count_params(),
                              "examples_per_second": round(examples / max(time.monotonic() - began, 1e-9), 1),
                              "stopped_early": state["bad_epochs"] >= config.patience})
