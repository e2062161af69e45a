"""The demo model's training step: from the training pipeline against in-memory arrays.

Rows, the same model, compile and batches (a config's training set, `configs/demo.yaml` by
default, with its `pack_cache` and `workers`):
- in memory: `model.fit` on NumPy arrays holding the pipeline's first batches (Keras' array
  adapter; no decoding, no augmentation at step time);
- pipeline: `model.fit` on what `train.py` gives it, the training `CelebAMaskHQ` with the
  config's workers building batches ahead (decoding and augmentation while the model trains).
Both run in this one process, interleaved over the repeats (best kept), after a warm-up fit
that traces the step. The ratio pipeline / in memory is the input path's cost to a user.

Usage:
    python benchmarks/bench_demo.py [--config configs/demo.yaml] [--steps 60] [--repeats 2]
        [--key=value ...]   # config overrides, as train.py takes them (e.g. --data_root=DIR)
    python benchmarks/bench_demo.py --smoke   # tiny, a few seconds (used by the tests)
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import faceparsing  # noqa: F401  (sets TensorFlow's log level before Keras loads)

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--steps", type=int, default=60, help="training steps a row")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    args, overrides = parser.parse_known_args(argv)
    args.overrides = overrides
    return args


def smoke_overrides(folder):
    return [
        f"--data_root={folder}/demo", "--demo_images=24", "--image_size=32", "--batch_size=2",
        "--alpha=0.35", "--aspp_filters=8", "--decoder_filters=8", f"--run_dir={folder}/run",
    ]  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    from faceparsing import config as config_module
    from faceparsing.data.setup import build_datasets, ensure_dataset
    from faceparsing.training import trainer

    with tempfile.TemporaryDirectory() as temp:
        overrides = [*(smoke_overrides(temp) if args.smoke else []), *args.overrides]
        steps, repeats = (3, 1) if args.smoke else (args.steps, args.repeats)
        config = config_module.resolve(args.config, [*overrides, f"--steps_per_epoch={steps}"])
        ensure_dataset(config)
        train_data, _ = build_datasets(config)
        model = trainer.build_model(config)
        trainer.compile_model(model, config, steps)
        batches = [train_data.batch(*train_data.maker.locate(index)) for index in range(steps)]
        arrays = [__import__("numpy").concatenate(part) for part in zip(*batches, strict=True)]

        def in_memory():
            model.fit(*arrays[:2], batch_size=config.batch_size, epochs=1, shuffle=False,
                      verbose=0)  # fmt: skip

        def pipeline():
            model.fit(train_data, epochs=1, shuffle=False, verbose=0)

        in_memory()  # warm-up: traces the step
        best = {}
        with train_data:  # its workers stop at the end
            pipeline()
            for _ in range(repeats):
                for name, run in (("in memory", in_memory), ("pipeline", pipeline)):
                    start = time.perf_counter()
                    run()
                    best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
        print(
            f"{config.backbone} alpha {config.alpha}, {config.image_size}x{config.image_size}, "
            f"batch {config.batch_size}, {steps} steps a row, best of {repeats}; data "
            f"{train_data.layout.root} ({train_data.layout.kind}), {train_data.num_workers} "
            f"worker {train_data.worker_type}; "
            f"load average {' '.join(f'{load:.1f}' for load in os.getloadavg())}"
        )
        print("| feed | ms a step |\n|---|---|")
        for name, seconds in best.items():
            print(f"| {name} | {1000 * seconds / steps:.1f} |")
        print(f"\npipeline / in memory = {best['pipeline'] / best['in memory']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
