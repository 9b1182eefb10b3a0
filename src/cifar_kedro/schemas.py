"""Typed parameters: the building blocks the pipelines' schemas share.

Every pipeline's nodes take their ``params:<pipeline>`` input type-hinted with a Pydantic model
(``pipelines/<name>/schema.py``), so Kedro's own parameter validation (``kedro.validation``) turns
the merged parameters into checked, immutable objects before any node runs. The models forbid
unknown keys: a misspelt or misplaced key stops the run instead of being ignored. The messages a
person sees, with where each bad key was set, come from ``cifar_kedro.parameters``.

One source of truth: every value the study uses is written in ``conf/base``; a schema gives types
and bounds, and sets a default only where leaving a key out means "off" (an augmentation step, an
optimizer option, Lookahead, test-time augmentation). Deleting a key from the YAML is then an
error, never a silent change of experiment (tests/test_parameters.py checks it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
Rate = Annotated[float, Field(ge=0.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class Params(BaseModel):
    """Base of every parameter block: unknown keys are errors, values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(Params):
    """A piecewise-linear learning rate over one training stage.

    ``knots`` are ``[fraction of the stage, rate]`` pairs from fraction 0 to fraction 1, so the
    shape follows the stage's length: ``[[0, 0], [0.2, 0.4], [1, 0]]`` warms up over the first
    fifth of the epochs and ends at 0 whether the stage runs 10 epochs or 24.
    """

    knots: list[tuple[Annotated[float, Field(ge=0.0, le=1.0)], Rate]] = Field(min_length=2)

    @model_validator(mode="after")
    def _spans_the_stage(self) -> Schedule:
        fractions = [fraction for fraction, _ in self.knots]
        if fractions[0] != 0.0 or fractions[-1] != 1.0 or fractions != sorted(fractions):
            raise ValueError(
                f"knots must start at fraction 0, end at fraction 1 and increase; got fractions {fractions} "
                "(each knot is [fraction of the stage's epochs, learning rate])"
            )
        return self

    def at(self, fraction: float) -> float:
        """The rate at ``fraction`` of the stage (linear between knots)."""
        for (f0, r0), (f1, r1) in zip(self.knots, self.knots[1:]):
            if fraction <= f1:
                return r0 + (r1 - r0) * (fraction - f0) / max(f1 - f0, 1e-12)
        return self.knots[-1][1]


LearningRate = Rate | Schedule


class Muon(Params):
    """Muon (K. Jordan, 2024) for the convolution filters, as airbench94_muon uses it: each step the
    filter's momentum (``momentum``, Nesterov or not) is orthogonalized by ``newton_schulz_steps``
    Newton-Schulz iterations and taken at ``learning_rate``; the filter is first rescaled to norm
    √(output channels), which stands in for weight decay. ``variables`` are path substrings; one that
    matches no trainable variable stops the run. The other variables keep the plain optimizer."""

    variables: list[str] = Field(min_length=1)
    learning_rate: LearningRate
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)]
    nesterov: bool
    newton_schulz_steps: PositiveInt


class Optimizer(Params):
    """Which optimizer, its learning rate (a number, or a ``Schedule`` over the stage) and its options.
    An option left out is off."""

    name: Literal["adam", "adamw", "sgd"]
    learning_rate: LearningRate
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # sgd only
    nesterov: bool = False  # sgd only
    # Decoupled weight decay (scaled by the learning rate), as Keras applies it.
    weight_decay: Rate | None = None
    # Learning-rate multipliers by variable path (a substring of it): {beta: 64} lets the
    # BatchNorm offsets learn 64 times faster (airbench's bias_scaler). A pattern that matches no
    # trainable variable stops the run (training.ScaledLearningRates).
    lr_scales: dict[str, Rate] = {}
    # Variables (by path substring) that train for this many epochs and then stay put, weight
    # decay included (airbench's whitening bias, 3 epochs).
    trains_for_epochs: dict[str, PositiveInt] = {}
    # Muon for the variables it names (sgd only); the others train with this optimizer.
    muon: Muon | None = None

    @model_validator(mode="after")
    def _options_fit_the_optimizer(self) -> Optimizer:
        if self.name != "sgd" and (self.momentum or self.nesterov or self.muon):
            raise ValueError(f"momentum, nesterov and muon apply to name: sgd only, not to name: {self.name}")
        return self


class Lookahead(Params):
    """Lookahead with an EMA of the weights (airbench): every ``every`` steps the weights move to
    an exponential average of themselves, whose decay ramps up as ``decay × (step / total)^power``;
    training ends on the average."""

    every: PositiveInt
    decay: Annotated[float, Field(gt=0.0, le=1.0)]  # airbench: 0.95 ** 5 = 0.7738
    power: Annotated[float, Field(ge=0.0)]


class Augmentation(Params):
    """Training-time augmentation (see ``cifar_kedro.augmentation``). A step left out is off (its
    default is 0 / false); the interpolation and fill apply to rotation and shift."""

    horizontal_flip: bool = False  # each image mirrored with probability ½ in every epoch
    alternating_flip: bool = False  # each image mirrored in every other epoch (airbench)
    rotation_degrees: Annotated[float, Field(ge=0.0, le=180.0)] = 0.0
    shift: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # fraction of height and width
    fill_mode: Literal["reflect", "wrap", "constant", "nearest"] = "nearest"
    interpolation: Literal["nearest", "bilinear"] = "bilinear"
    cutout: Annotated[int, Field(ge=0)] = 0  # side in pixels of one erased square

    @model_validator(mode="after")
    def _one_kind_of_flip(self) -> Augmentation:
        if self.horizontal_flip and self.alternating_flip:
            raise ValueError("horizontal_flip and alternating_flip exclude each other: choose one")
        return self

    @property
    def active(self) -> bool:
        return bool(self.horizontal_flip or self.alternating_flip or self.rotation_degrees or self.shift or self.cutout)


MixedPrecision = Literal["float32", "mixed_float16", "mixed_bfloat16"]
JitCompile = bool | Literal["auto"]


def _distribution_runs_here(value: str) -> str:
    import keras

    if value != "none" and keras.config.backend() != "jax":
        raise ValueError(
            f"distribution: {value} runs on the JAX backend (Keras' distribution API), and this run's Keras "
            f"backend is {keras.config.backend()}: start the run with KERAS_BACKEND=jax, or set distribution: none"
        )
    return value


# ``data_parallel``: every device available (keras.distribution.list_devices()) holds a copy of
# the weights and takes an equal share of each batch; ``batch_size`` stays the global batch.
Distribution = Annotated[Literal["none", "data_parallel"], AfterValidator(_distribution_runs_here)]


class Runtime(Params):
    """Run-wide state (conf/base/parameters_runtime.yml), set once before the run by
    ``hooks.RuntimeHooks`` (``cifar_kedro.runtime.apply``); no node changes it."""

    seed: int  # each stage (a model's build, each training stage) seeds itself from this and its name
    precision: MixedPrecision  # Keras' global dtype policy
    distribution: Distribution
    jit_compile: JitCompile  # XLA for the compiled train/predict steps
    deterministic_ops: bool  # TensorFlow: deterministic kernels (tf.config.experimental.enable_op_determinism)


class Stage(Params):
    """One training stage, the same shape in every pipeline: how long, on which batches, with which
    optimizer and learning rate, on which augmented images; optionally Lookahead."""

    epochs: PositiveInt
    batch_size: PositiveInt
    optimizer: Optimizer
    # Minutes of this machine in place of ``epochs``: the first steps measure the throughput and the
    # epochs follow (training.fit); the schedule, in fractions of the stage, follows them. None: off.
    budget_minutes: Annotated[float, Field(gt=0.0)] | None = None
    label_smoothing: Fraction = 0.0  # 0: off
    augmentation: Augmentation = Augmentation()  # nothing listed: off
    lookahead: Lookahead | None = None  # None: off
    # Memory, not the recipe: each batch runs as slices of this many images whose gradients are
    # averaged into one optimizer step (Keras' gradient_accumulation_steps), so the activations held
    # at once shrink by batch_size / micro_batch_size. BatchNormalization normalizes each slice on its
    # own. None: whole batches.
    micro_batch_size: PositiveInt | None = None

    @model_validator(mode="after")
    def _micro_batches_divide_the_batch(self) -> "Stage":
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(f"micro_batch_size {self.micro_batch_size} must divide batch_size {self.batch_size}, "
                             "so that every optimizer step averages the same number of slices; pick a divisor.")
        return self

    @property
    def step_batch_size(self) -> int:
        """Images per forward and backward pass: ``micro_batch_size`` or the whole batch."""
        return self.micro_batch_size or self.batch_size
