"""The shared training loop: alignment through augmentation, resume, schedules, NaN guard."""

from __future__ import annotations

import gc
import json
import weakref

import keras
import numpy as np
import pytest

from cifar_kedro import training
from cifar_kedro.pipelines.data_processing.nodes import split_train_validation
from cifar_kedro.pipelines.data_processing.schema import DataProcessingParams
from cifar_kedro.schemas import Augmentation, Schedule
from tests.conftest import runtime, stage

# Ten well-separated colours; an image's class is its colour.
PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [0, 0, 0], [255, 255, 255]],
    dtype=np.uint8,
)
STUDY_AUGMENTATION = Augmentation(horizontal_flip=True, rotation_degrees=15, shift=0.1, fill_mode="nearest")
RESNET9_AUGMENTATION = Augmentation(horizontal_flip=True, shift=0.125, fill_mode="reflect", interpolation="nearest",
                                    cutout=8)
RUNTIME = runtime()
FROZEN = dict(optimizer="sgd", learning_rate=0.0)  # weights stay fixed; only the data moves


def colour_images(labels: np.ndarray) -> np.ndarray:
    """Plain images filled with their label's colour: any flip, rotation or shift keeps the colour."""
    return np.broadcast_to(PALETTE[labels][:, None, None, :], (len(labels), 32, 32, 3)).copy()


def colour_oracle() -> keras.Model:
    """A model that classifies by nearest palette colour (fixed weights).

    Trained behind real augmentation, its accuracy is 1.0 exactly when every image arrives with
    its own label.
    """
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = keras.layers.GlobalMaxPooling2D()(keras.layers.Rescaling(1 / 255)(inputs))  # cutout can only darken
    dense = keras.layers.Dense(10, activation="softmax")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    colours = PALETTE.astype("float32") / 255
    dense.set_weights([50 * colours.T, -25 * (colours**2).sum(axis=1)])  # nearest colour, sharpened
    return model


@pytest.mark.parametrize("aug_config", [STUDY_AUGMENTATION, RESNET9_AUGMENTATION], ids=["study", "resnet9"])
def test_images_and_labels_stay_aligned_through_split_shuffle_and_augmentation(aug_config):
    labels = np.random.default_rng(0).integers(0, 10, 600)
    split = DataProcessingParams(validation_fraction=0.2, seed=1, sample_images_per_class=1)
    train, validation = split_train_validation({"images": colour_images(labels), "labels": labels},
                                               [str(n) for n in range(10)], split)
    history = training.fit(
        colour_oracle(),
        (train["images"], train["labels"]),
        (validation["images"], validation["labels"]),
        stage(epochs=2, augmentation=aug_config, **FROZEN),
        name="alignment",
        runtime=RUNTIME,
    )
    for record in history:
        assert record["accuracy"] == 1.0 and record["val_accuracy"] == 1.0, record


def test_the_oracle_would_notice_labels_shuffled_apart_from_images():
    labels = np.random.default_rng(0).integers(0, 10, 200)
    shuffled = np.random.default_rng(1).permutation(labels)
    history = training.fit(
        colour_oracle(),
        (colour_images(labels), shuffled),
        (colour_images(labels), shuffled),
        stage(augmentation=STUDY_AUGMENTATION, **FROZEN),
        name="misaligned",
        runtime=RUNTIME,
    )
    assert history[0]["accuracy"] < 0.3


def tiny_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def tiny_data(n: int = 128):
    labels = np.random.default_rng(0).integers(0, 10, n)
    return colour_images(labels), labels


SGD = dict(optimizer="sgd", optimizer_options={"momentum": 0.9})
ONE_CYCLE = Schedule(knots=[[0, 0.0], [0.5, 0.4], [1, 0.0]])  # fractions of the stage
ONE_CYCLE_FIT = dict(**SGD, learning_rate=ONE_CYCLE)


def test_learning_rate_follows_the_one_cycle_recipe():
    x, y = tiny_data()
    history = training.fit(tiny_model(), (x, y), (x, y), stage(epochs=4, **ONE_CYCLE_FIT), name="schedule",
                           runtime=RUNTIME)
    # Recorded at the end of each epoch: 0 → 0.4 at half the stage → 0 at its end, linear in between.
    np.testing.assert_allclose([r["learning_rate"] for r in history], [0.2, 0.4, 0.2, 0.0], atol=1e-6)


@pytest.mark.parametrize("epochs", [1, 3, 7, 10])
def test_a_schedule_follows_the_stage_length_and_ends_annealed(epochs):
    """Shortening a recipe (epochs=10 of a 24-epoch one-cycle) must not leave the rate high."""
    schedule = Schedule(knots=[[0, 0.0], [0.2083, 0.4], [1, 0.0]])  # Page's 0 → 0.4 (epoch 5 of 24) → 0
    x, y = tiny_data(64)
    history = training.fit(tiny_model(), (x, y), (x, y), stage(epochs=epochs, **SGD, learning_rate=schedule),
                           name=f"anneal{epochs}", runtime=RUNTIME)
    assert len(history) == epochs
    assert history[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-7)  # the schedule's end value
    steps_per_epoch = 2
    for record in history:  # every epoch ends where the knots put that fraction of the stage
        fraction = record["epoch"] * steps_per_epoch / (epochs * steps_per_epoch)
        assert record["learning_rate"] == pytest.approx(schedule.at(fraction), abs=0.4 / (epochs * steps_per_epoch))


def test_a_budget_yields_the_epochs_its_measured_throughput_allows_and_ends_annealed(monkeypatch, tmp_path):
    # This machine "measures" 7 s an epoch: a 1-minute budget, less the moment the set-up takes,
    # holds 8 epochs (56 s); the schedule, in fractions of the stage, follows those 8.
    monkeypatch.setattr(training, "measure_epoch_seconds", lambda *args: 7.0)
    x, y = tiny_data(64)
    budget = stage(epochs=2, **ONE_CYCLE_FIT, budget_minutes=1.0)
    history = training.fit(tiny_model(), (x, y), (x, y), budget, name="budget", runtime=RUNTIME, checkpoint_dir=tmp_path)
    assert len(history) == 8  # not the stage's 2 epochs
    np.testing.assert_allclose([r["learning_rate"] for r in history[3::4]], [0.4, 0.0], atol=1e-6)  # peak at 4 of 8, annealed
    (chosen,) = tmp_path.glob("budget-*/budget.json")
    assert json.loads(chosen.read_text()) == {"budget_minutes": 1.0, "epochs": 8, "epoch_seconds": 7.0}


def test_measuring_the_throughput_leaves_the_weights_as_they_were():
    model = tiny_model()
    x, y = tiny_data(64)
    before = [w.copy() for w in model.get_weights()]
    seconds = training.measure_epoch_seconds(model, stage(batch_size=16, **ONE_CYCLE_FIT), RUNTIME, x, 64)
    assert 0 < seconds < 60
    for weight, saved in zip(model.get_weights(), before):
        np.testing.assert_array_equal(weight, saved)


class StopAfter(keras.callbacks.Callback):
    """Simulates a run killed in the middle of the epoch after ``epoch`` (1-based)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) > self.epoch * 4 + 1:  # 4 batches an epoch
            raise KeyboardInterrupt(f"killed during epoch {self.epoch + 1}")


class CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


class Snapshots(keras.callbacks.Callback):
    """The model's weights at the start (``began[e]``) and end (``ended[e]``) of each epoch (0-based)."""

    def __init__(self):
        super().__init__()
        self.began, self.ended = {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.began[epoch] = [np.array(w) for w in self.model.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        self.ended[epoch] = [np.array(w) for w in self.model.get_weights()]


def test_an_interrupted_fit_resumes_from_its_last_finished_epoch(tmp_path):
    x, y = tiny_data()
    args = dict(name="resume", runtime=RUNTIME, checkpoint_dir=tmp_path)
    one_cycle = stage(epochs=4, **ONE_CYCLE_FIT)
    first, killed_at = tiny_model(), Snapshots()
    with pytest.raises(KeyboardInterrupt):
        training.fit(first, (x, y), (x, y), one_cycle, callbacks=[killed_at, StopAfter(3)], **args)
    logged = json.loads(next(tmp_path.glob("resume-*/epochs.json")).read_text())
    assert [r["epoch"] for r in logged] == [1, 2, 3]

    counter, resumed_at = CountBatches(), Snapshots()
    second = tiny_model()  # a fresh process builds the same weights from the same seed
    history = training.fit(second, (x, y), (x, y), one_cycle, callbacks=[counter, resumed_at], **args)
    assert counter.batches == 4  # only epoch 4 (4 batches of 32) was trained again
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[:3] == logged
    # The optimizer's step counter came back too: the schedule continued where it stopped.
    assert history[3]["learning_rate"] == pytest.approx(0.0, abs=1e-6)
    assert int(keras.ops.convert_to_numpy(second.optimizer.iterations)) == 16
    # And the weights came back: epoch 4 began on exactly the weights the killed run ended epoch 3 with.
    for restored, saved in zip(resumed_at.began[3], killed_at.ended[2]):
        np.testing.assert_array_equal(restored, saved)


def test_a_finished_stage_is_not_trained_again(tmp_path):
    x, y = tiny_data()
    args = dict(name="done", runtime=RUNTIME, checkpoint_dir=tmp_path)
    two_epochs = stage(epochs=2, **ONE_CYCLE_FIT)
    model = tiny_model()
    history = training.fit(model, (x, y), (x, y), two_epochs, **args)
    counter = CountBatches()
    again = tiny_model()
    assert training.fit(again, (x, y), (x, y), two_epochs, callbacks=[counter], **args) == history
    assert counter.batches == 0
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Other parameters, another starting model or another seed are another stage, trained afresh.
    training.fit(tiny_model(), (x, y), (x, y), stage(epochs=3, **ONE_CYCLE_FIT), **args)
    training.fit(tiny_model(seed=5), (x, y), (x, y), two_epochs, **args)
    training.fit(tiny_model(), (x, y), (x, y), two_epochs, **{**args, "runtime": runtime(seed=1)})
    assert len(list(tmp_path.iterdir())) == 4


class PoisonWeights(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            kernel = self.model.layers[-1].kernel
            kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    x, y = tiny_data()
    with pytest.raises(training.TrainingDivergedError, match=r"stage 'nan'.*epoch 1\..*learning rate"):
        training.fit(tiny_model(), (x, y), (x, y), stage(epochs=2, learning_rate=0.01), name="nan", runtime=RUNTIME,
                     checkpoint_dir=tmp_path, callbacks=[PoisonWeights()])
    assert not list(tmp_path.iterdir())  # no checkpoint of the broken weights to resume from


def test_evaluate_is_plain_cross_entropy_and_accuracy():
    model = tiny_model()
    x, y = tiny_data(64)
    probabilities = model.predict(x, verbose=0)
    metrics = training.evaluate(model, {"images": x, "labels": y}, batch_size=16)
    assert metrics["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == y))
    assert metrics["loss"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(64), y])), rel=1e-5)


def test_a_stage_that_ends_far_below_its_best_validation_warns(caplog):
    history = [{"epoch": 1, "accuracy": 0.75, "val_accuracy": 0.75}, {"epoch": 2, "accuracy": 0.9, "val_accuracy": 0.72},
               {"epoch": 3, "accuracy": 0.99, "val_accuracy": 0.5}]
    with caplog.at_level("WARNING", logger="cifar_kedro.training"):
        training.warn_if_validation_fell("train", history[:2])  # 3 points down: within the noise
        assert not caplog.records
        training.warn_if_validation_fell("train", history)
    [record] = caplog.records
    assert "ended at 50.0% validation accuracy, 25.0 points below its best (75.0% at epoch 1)" in record.getMessage()


def test_batches_are_a_seeded_fresh_permutation_of_the_pairs_each_epoch():
    x = np.arange(50, dtype="float32")[:, None] * np.ones((1, 3), "float32")  # row i holds i
    y = np.arange(50) % 10
    batches = training.Batches(x, y, batch_size=8, num_classes=10, seed=3)
    assert batches.steps == 7 and batches.num_batches is None  # endless; the last batch of an epoch holds 2

    def epoch(b, number):
        xs, ys = zip(*(b[number * b.steps + i] for i in range(b.steps)))
        rows = np.concatenate(xs)[:, 0].astype(int)
        np.testing.assert_array_equal(np.concatenate(ys).argmax(axis=1), rows % 10)  # labels stay with their rows
        return rows

    first = epoch(batches, 0)
    assert sorted(first) == list(range(50)) and list(first) != list(range(50))
    second = epoch(batches, 1)
    assert sorted(second) == list(range(50)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(epoch(training.Batches(x, y, batch_size=8, num_classes=10, seed=3), 0), first)


def test_micro_batches_take_the_same_steps_as_whole_batches():
    """Slices of a batch average their gradients into one step: with no BatchNormalization the
    weights end where whole batches take them — schedule, momentum and weight decay included."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 96)

    def trained(**fields):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 3), dtype="uint8")
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Dense(16, "relu")(x)))
        stage_ = stage(**{"epochs": 2, "batch_size": 16, "learning_rate": Schedule(knots=[[0, 0.5], [1, 0.0]]),
                          "optimizer_options": {"momentum": 0.9, "weight_decay": 0.01}, **fields})
        training.fit(model, (images, labels), (images[:16], labels[:16]), stage_, name="micro", runtime=RUNTIME)
        return model.get_weights()

    whole, sliced = trained(), trained(micro_batch_size=4)
    assert np.abs(whole[0] - trained(batch_size=8)[0]).max() > 1e-3  # the comparison can tell steps apart
    for a, b in zip(whole, sliced):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_micro_batch_that_does_not_divide_the_batch_is_refused():
    with pytest.raises(ValueError, match="micro_batch_size 300 must divide batch_size 2000"):
        stage(batch_size=2000, micro_batch_size=300)


def test_fit_lets_go_of_its_training_arrays():
    """Cached activations are a GB: once ``fit`` returns nothing may keep them. (On TensorFlow the
    generator Keras hands to ``tf.data`` outlives ``fit``, with the ``Batches`` it reads.)"""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 64)
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    kept = weakref.ref(images)
    training.fit(model, (images, labels), (images[:16], labels[:16]), stage(epochs=1, batch_size=16),
                 name="release", runtime=RUNTIME)
    del images
    gc.collect()
    assert kept() is None
