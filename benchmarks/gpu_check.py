"""GPU training throughput of DeepLabV3+ and its fraction of the accelerator's bf16 peak.

Meant for a lent GPU machine: JAX backend, ResNet-50 at output stride 16, 512x512 inputs,
`mixed_bfloat16`, a jitted training step (Keras `stateless_call` + optimizer
`stateless_apply`) on a batch that stays on the device, so host transfers are not timed.

    achieved FLOP/s = 2 x multiply-adds per image x 3 (forward + backward) x img/s
    fraction of peak = achieved FLOP/s / --peak-flops (989e12: H100 SXM dense bf16)

Multiply-adds come from `faceparsing.model.cost.count_multiply_adds` (convolutions and dense layers only).

Usage:
    python benchmarks/gpu_check.py [--batch-size 16] [--peak-flops 989e12]
    python benchmarks/gpu_check.py --smoke   # tiny model, 2 steps, runs on a CPU
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
    args = parser.parse_args(argv)
    if args.smoke:
        args.backbone, args.image_size, args.batch_size = "mobilenetv2", 32, 2
        # XLA on CPU compiles a bfloat16 graph several times slower than a float32 one.
        args.policy = "float32"
        args.warmup_steps, args.steps = 1, 2
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
