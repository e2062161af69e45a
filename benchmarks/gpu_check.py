"""GPU training throughput of DeepLabV3+ and its fraction of the accelerator's bf16 peak.

Meant for a lent GPU machine: JAX backend, ResNet-50 at output stride 16, 512x512 inputs,
`mixed_bfloat16`, a jitted training step (Keras `stateless_call` + optimizer
`stateless_apply`) on a batch that stays on the device, so host transfers are not timed.

    achieved FLOP/s = 2 x multiply-adds per image x 3 (forward + backward) x img/s
    fraction of peak = achieved FLOP/s / --peak-flops (989e12: H100 SXM dense bf16)

Multiply-adds come from `faceparsing.model.cost.count_multiply_adds` (convolutions and dense layers only).

With `--end-to-end` it then measures, in the same process, what training
really gets, and prints each as img/s and as a fraction of the jitted step:
- `fit` on in-memory uint8 arrays with train.py's compile (loss, AdamW, the
  mIoU metric), with the metric and without it, at `--steps-per-execution`
  1 and 4 (so the cost of each is visible);
- `train.py`'s whole pipeline (`faceparsing.training.trainer.train`) on a
  synthetic set written in the release layout (`--images`, 1024x1024 JPEGs
  and 512x512 part masks), augmentation on, `workers: auto`; the second epoch
  is timed (the first compiles and fills the label cache);
- the same on that set packed at `--image-size` (`data_generator.py pack`;
  `worker_type: auto` then builds batches in worker processes). A packed
  `--data-root` is used as it is (only this row).

Usage:
    python benchmarks/gpu_check.py [--batch-size 16] [--peak-flops 989e12]
    python benchmarks/gpu_check.py --end-to-end [--images 480]
    python benchmarks/gpu_check.py --smoke [--end-to-end]   # tiny model, runs on a CPU
"""

import argparse
import os
import sys
import time

import faceparsing  # noqa: F401  (sets TensorFlow's log level before Keras loads)

os.environ.setdefault("KERAS_BACKEND", "jax")

H100_DENSE_BF16_FLOPS = 989e12


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16, help="size it to the GPU memory")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--peak-flops",
        type=float,
        default=H100_DENSE_BF16_FLOPS,
        help="peak bf16 FLOP/s of the accelerator (default: H100 dense)",
    )
    parser.add_argument("--policy", default="mixed_bfloat16", help="Keras dtype policy")
    # XLA runs dilated convolutions natively; on JAX (CPU) the space-to-batch layers were
    # slower (benchmarks/RESULTS.md), so the stock layers are the default here.
    parser.add_argument("--fast-atrous", action="store_true", help="space-to-batch atrous layers")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 steps (CPU ok)")
    parser.add_argument("--end-to-end", action="store_true", help="also fit and train.py")
    parser.add_argument("--images", type=int, default=480, help="synthetic set for train.py")
    parser.add_argument("--fit-steps", type=int, default=20, help="timed fit steps per row")
    parser.add_argument(
        "--data-root", help="synthetic set folder, or a packed folder (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.backbone, args.image_size, args.batch_size = "mobilenetv2", 32, 2
        # XLA on CPU compiles a bfloat16 graph several times slower than a float32 one.
        args.policy = "float32"
        args.warmup_steps, args.steps = 1, 2
        args.images, args.fit_steps = min(args.images, 12), 2
    return args


def build_model(args):
    from faceparsing.model import deeplabv3plus

    small = {"alpha": 0.35, "aspp_filters": 16, "decoder_filters": 16} if args.smoke else {}
    return deeplabv3plus.DeepLabV3Plus(
        backbone=args.backbone, output_stride=args.output_stride, weights=None,
        input_shape=(args.image_size, args.image_size, 3), fast_atrous=args.fast_atrous,
        **small,
    )  # fmt: skip


def make_train_step(model, optimizer):
    """A jitted (state, images, labels) -> (loss, state) step in the Keras 3 JAX style."""
    import jax
    import keras

    loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_fn(trainable, non_trainable, images, labels):
        logits, non_trainable = model.stateless_call(
            trainable, non_trainable, images, training=True
        )
        return loss_object(labels, logits), non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def train_step(state, images, labels):
        trainable, non_trainable, optimizer_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, images, labels)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_vars)

    return train_step


def time_training(model, args):
    import jax
    import jax.numpy as jnp
    import keras

    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    shape = (args.batch_size, args.image_size, args.image_size)
    key_images, key_labels = jax.random.split(jax.random.PRNGKey(0))
    images = jax.random.uniform(key_images, shape + (3,), jnp.float32, 0, 255)
    labels = jax.random.randint(key_labels, shape, 0, model.num_classes)
    train_step = make_train_step(model, optimizer)
    compile_start = time.perf_counter()
    for _ in range(args.warmup_steps):
        loss, state = train_step(state, images, labels)
    jax.block_until_ready(loss)
    print(f"warm-up (compilation included): {time.perf_counter() - compile_start:.1f} s")
    start = time.perf_counter()
    for _ in range(args.steps):
        loss, state = train_step(state, images, labels)
    jax.block_until_ready(loss)
    return args.steps * args.batch_size / (time.perf_counter() - start), float(loss)


def main(argv=None):
    args = parse_args(argv)
    import jax
    import keras

    from faceparsing.model import cost

    keras.mixed_precision.set_global_policy(args.policy)
    print(f"backend {keras.backend.backend()}, devices {jax.devices()}, policy {args.policy}, "
          f"fast_atrous={args.fast_atrous}")  # fmt: skip
    model = build_model(args)
    multiply_adds = cost.count_multiply_adds(model)
    images_per_second, loss = time_training(model, args)
    flops = 2 * multiply_adds * 3 * images_per_second
    print(
        "| backbone | OS | size | batch | GMACs/img | train img/s | TFLOP/s | peak TFLOP/s "
        "| fraction of peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.backbone} | {args.output_stride} | {args.image_size} | {args.batch_size} "
        f"| {multiply_adds / 1e9:.1f} | {images_per_second:.2f} | {flops / 1e12:.2f} "
        f"| {args.peak_flops / 1e12:.0f} | {flops / args.peak_flops:.1%} |"
    )
    print(f"final loss {loss:.3f}")  # a NaN here means the bf16 step is broken
    if args.end_to_end:
        end_to_end(args, images_per_second)
    return 0


def train_config(args, **overrides):
    """train.py's config for this benchmark's model, batch and precision."""
    from faceparsing import config as config_lib

    small = ["--alpha=0.35", "--aspp_filters=16", "--decoder_filters=16"] if args.smoke else []
    arguments = [
        f"--backbone={args.backbone}", f"--output_stride={args.output_stride}", "--weights=none",
        f"--image_size={args.image_size}", f"--batch_size={args.batch_size}",
        f"--mixed_precision={args.policy}", "--verbose=0", *small,
        *(f"--{key}={value}" for key, value in overrides.items()),
    ]  # fmt: skip
    return config_lib.resolve(None, arguments)


class StepTimer:
    """A Keras callback: img/s of the batches after the first `skip` of each `fit`."""

    def __new__(cls, *args, **kwargs):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self, batch_size, skip):
                super().__init__()
                self.batch_size, self.skip, self.times, self.offset = batch_size, skip, [], 0

            def on_epoch_begin(self, epoch, logs=None):
                self.offset = epoch * self.params.get("steps", 0)

            def on_train_batch_end(self, batch, logs=None):
                # With steps_per_execution > 1 Keras calls this once per execution,
                # with `batch` the last step it ran.
                self.times.append((self.offset + batch, time.perf_counter()))

            def rate(self):
                timed = [(step, when) for step, when in self.times if step >= self.skip]
                steps = timed[-1][0] - timed[0][0]
                return steps * self.batch_size / (timed[-1][1] - timed[0][1])

        return _Timer(*args, **kwargs)


def fit_in_memory(args, metric, steps_per_execution):
    """img/s of `model.fit` on in-memory uint8 arrays, compiled as train.py compiles."""
    import keras
    import numpy as np

    from faceparsing.training import trainer

    config = train_config(args, steps_per_execution=steps_per_execution)
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    model = trainer.build_model(config)
    trainer.compile_model(model, config, steps_per_epoch=1000)
    if not metric:  # the same compile without the train-time mIoU
        model.compile(optimizer=model.optimizer, loss=model.loss,
                      steps_per_execution=steps_per_execution)  # fmt: skip
    # Timed from the end of the first execution (which compiles) to the end of the last.
    steps = steps_per_execution * (1 + -(-args.fit_steps // steps_per_execution))
    rng = np.random.default_rng(0)
    size = (args.batch_size * 4, args.image_size, args.image_size)
    images = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    labels = rng.integers(0, 19, size, dtype=np.uint8)
    repeats = -(-steps // 4)
    images, labels = np.concatenate([images] * repeats), np.concatenate([labels] * repeats)
    timer = StepTimer(args.batch_size, skip=steps_per_execution - 1)
    model.fit(images, labels, batch_size=args.batch_size, epochs=1, steps_per_epoch=steps,
              shuffle=False, verbose=0, callbacks=[timer])  # fmt: skip
    return timer.rate()


def train_pipeline(args, root, run_dir):
    """img/s of train.py's second epoch: the whole pipeline on the release layout."""
    from faceparsing.training import trainer

    steps = args.images // args.batch_size
    config = train_config(
        args, data_root=root, run_dir=run_dir, epochs=2, steps_per_epoch=steps,
        train_split="all", val_split="test", max_val_images=args.batch_size, augment="true",
        workers="auto",
    )  # fmt: skip
    timer = StepTimer(args.batch_size, skip=steps)  # all of epoch 1 (compilation, cold cache)
    build_callbacks = trainer.build_callbacks
    trainer.build_callbacks = lambda *a, **k: [*build_callbacks(*a, **k), timer]
    try:
        trainer.train(config)
    finally:
        trainer.build_callbacks = build_callbacks
    return timer.rate()


def end_to_end(args, step_rate):
    import tempfile

    from faceparsing.data import packed, packing
    from faceparsing.data.loader import worker_count
    from faceparsing.data.synthetic import make_demo_dataset

    rows = [("jitted train step (above)", step_rate)]
    for metric, steps_per_execution in ((True, 1), (False, 1), (True, 4)):
        label = f"fit, in-memory uint8, {'mIoU metric' if metric else 'no metric'}, "
        label += f"steps_per_execution={steps_per_execution}"
        rows.append((label, fit_in_memory(args, metric, steps_per_execution)))
        print(f"{label}: {rows[-1][1]:.1f} img/s", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data_root or f"{scratch}/CelebAMask-HQ"
        workers = worker_count("auto")
        if not packed.is_packed(root):
            started = time.perf_counter()
            make_demo_dataset(root, args.images, seed=0)
            print(f"wrote {args.images} synthetic faces in {time.perf_counter() - started:.0f} s")
            if not args.smoke:  # the smoke run trains once, on the pack (half the time)
                label = (
                    f"train.py pipeline, release layout, {workers} worker threads, augmentation on"
                )
                rows.append((label, train_pipeline(args, root, f"{scratch}/run")))
                print(f"{label}: {rows[-1][1]:.1f} img/s", flush=True)
            started = time.perf_counter()
            packing.pack(root, f"{scratch}/packed", image_size=args.image_size, progress=False)
            print(f"packed them in {time.perf_counter() - started:.0f} s", flush=True)
            root = f"{scratch}/packed"
        label = f"train.py pipeline, packed, {workers} workers (worker_type auto), augmentation on"
        rows.append((label, train_pipeline(args, root, f"{scratch}/run_packed")))
    print("\n| what | img/s | fraction of the jitted step |\n|---|---|---|")
    for label, rate in rows:
        print(f"| {label} | {rate:.1f} | {rate / step_rate:.0%} |")


if __name__ == "__main__":
    sys.exit(main())
