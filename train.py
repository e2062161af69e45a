"""Train DeepLabV3+ for face parsing on CelebAMask-HQ (or the synthetic demo set).

Usage:
    python train.py --config configs/demo.yaml [--key=value ...] [--print_config]

Every setting has a default in `faceparsing/config.py` (`TrainConfig`); the YAML
file changes some and `--key=value` overrides any. The run folder (`run_dir`)
receives the resolved `config.yaml`, `metrics.csv`, `best.keras` (best
validation mIoU), `last.keras`, `backup/`, `curves.png` and `summary.json`.
Rerunning the same command after a crash or Ctrl-C resumes after the last
completed epoch. The steps themselves are `faceparsing.training.trainer.train`,
one flow for one device, several devices (--distribute) and several hosts: with
Keras' launcher variables (KERAS_DISTRIBUTION_*) and --distribute=data_parallel,
this is one process of a multi-machine job (`faceparsing.training.multihost`).

Exit status: 0 done, 1 the loss became NaN/inf, 2 a usage error (one line on
stderr; FACEPARSING_DEBUG=1 shows the traceback), 130 interrupted.
"""

import json
import sys
import time

from faceparsing import cli
from faceparsing import config as config_lib
from faceparsing.training import multihost, trainer


def parse_args(argv):
    parser = cli.ArgumentParser(
        description="Train DeepLabV3+ on CelebAMask-HQ.",
        epilog="Any config key can be overridden: --epochs=5 --backbone=mobilenetv2 ...",
    )
    parser.add_argument("--config", help="YAML file with the keys to change (see configs/)")
    parser.add_argument(
        "--print_config", action="store_true", help="print the resolved config and exit"
    )
    return parser.parse_known_args(argv)


def run(args, overrides):
    config = config_lib.resolve(args.config, overrides)
    if args.print_config:
        print(json.dumps(config_lib.to_dict(config), indent=2))
        return 0
    started = time.monotonic()
    summary = trainer.train(config)
    print_summary(summary, config.run_dir)
    print(f"Done in {time.monotonic() - started:.0f}s.")
    return 0


def print_summary(summary, run_dir):
    print(f"Best val_miou {summary['best_val_miou']:.4f} at epoch {summary['best_epoch']}.")
    print(
        f"Checkpoints: {summary['best_checkpoint']} (best), {summary['last_checkpoint']} (last); "
        f"metrics: {run_dir}/metrics.csv; curves: {run_dir}/curves.png"
    )


def main(argv=None):
    args, overrides = parse_args(argv)
    return multihost.run_and_leave(train_command, args, overrides)


def train_command(args, overrides):
    try:
        return cli.run_command(
            run,
            args,
            overrides,
            exit_codes=[(trainer.TrainingDivergedError, 1), (multihost.PeerProcessError, 1)],
        )
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Rerun the same command to resume after the last completed epoch.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
