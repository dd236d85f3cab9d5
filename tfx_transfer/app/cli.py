"""The `tfx-transfer` command.

    tfx-transfer demo                         the offline 90 -> 92 demo
    tfx-transfer train CONFIG.yaml            a run from a YAML config
    tfx-transfer tune CONFIG.yaml             a hyperparameter search over its `tune` section
    tfx-transfer expand MODEL OUT --new-classes kite,drone [--separate-branch]
    tfx-transfer refine MODEL OUT --classes kite          only these classes' columns train
    tfx-transfer drop MODEL OUT --classes kite            remove classes
    tfx-transfer reorder MODEL OUT --label-map MAP.json   classes in another label map's order
    tfx-transfer merge MODEL_A MODEL_B OUT [--rename kite=kite_b]
    tfx-transfer evaluate MODEL DATA_DIR [--reference BASE]
    tfx-transfer export MODEL EXPORT_DIR [--version N]
    tfx-transfer predict MODEL IMAGE...
    tfx-transfer lr-find MODEL DATA_DIR --plot lr.png
    tfx-transfer backbones

A user's mistake (a bad config, a missing file, an unknown class) ends with a
one-line `error: ...` and exit status 2 (1 for a failure while running), never
a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_FAILED = 1
LIGHT_COMMANDS = ("backbones",)  # answer without TensorFlow
CONFIG_COMMANDS = ("train", "tune")  # their YAML config is checked before TensorFlow loads


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.show_version:
        from tfx_transfer import __version__

        print(f"tfx-transfer {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from tfx_transfer.app.run_config import ConfigError, load_run_config

    try:
        if args.command in CONFIG_COMMANDS:  # a mistake is reported before TensorFlow loads
            args.run_config = load_run_config(args.config)
        if not args.verbose and args.command not in LIGHT_COMMANDS:
            quiet_tensorflow()
        return args.handler(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError, NotADirectoryError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


def quiet_tensorflow() -> None:
    """Imports TensorFlow and Keras with the process's standard error closed, so that
    their C++ start-up log (oneDNN, CPU instructions, CUDA not found), written before
    any log level applies, is not shown. An import error is still raised."""
    if "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # and the later "failed call to cuInit"
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfx-transfer", description="Transfer learning on images with Keras 3."
    )
    parser.add_argument(
        "--version", dest="show_version", action="store_true", help="print the version and exit"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's start-up messages (oneDNN, CPU features, CUDA)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the offline 90 -> 92 demo on the embedded data")
    demo.add_argument("--workdir", default="runs/demo", help="where outputs go (runs/demo)")
    demo.add_argument(
        "--export-dir",
        default="saved_models/shapes92",
        help="where SavedModel versions go (saved_models/shapes92)",
    )
    demo.add_argument("--tiny", action="store_true", help="tiny settings, for a smoke test")
    demo.set_defaults(handler=_demo)

    train = commands.add_parser("train", help="run a YAML config (see examples/configs/)")
    train.add_argument("config", help="the YAML config file")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=_train)

    tune = commands.add_parser("tune", help="search hyperparameters (the config's tune section)")
    tune.add_argument("config", help="a YAML run config with a `tune` section")
    tune.add_argument("--max-trials", type=int, help="override tune.max_trials")
    tune.add_argument("--overwrite", action="store_true", help="start afresh, do not resume")
    tune.set_defaults(handler=_tune)

    expand = commands.add_parser("expand", help="add classes to a saved model")
    expand.add_argument("model", help="a .keras model (or 'base' for the shipped base model)")
    expand.add_argument("output", help="where the expanded .keras model goes")
    expand.add_argument("--new-classes", required=True, help="comma-separated new class names")
    expand.add_argument(
        "--init", default="glorot_uniform", help="glorot_uniform, zeros, mean or imprint"
    )
    expand.add_argument(
        "--examples", help="an image folder with a subfolder per new class (for --init imprint)"
    )
    expand.add_argument("--freeze-old", action="store_true", help="keep old columns fixed")
    expand.add_argument(
        "--separate-branch",
        action="store_true",
        help="give the new classes their own copy of the hidden layers",
    )
    expand.set_defaults(handler=_expand)

    for name, handler, text in (
        ("refine", _refine, "make only some classes' columns trainable (all else frozen)"),
        ("drop", _drop, "remove classes from a saved model"),
    ):
        command = _model_to_model(commands, name, text, handler)
        command.add_argument("--classes", required=True, help="comma-separated class names")

    reorder = _model_to_model(
        commands, "reorder", "put the classes in another label map's order", _reorder
    )
    order = reorder.add_mutually_exclusive_group(required=True)
    order.add_argument("--label-map", help='a JSON label map {"classes": [{"id", "name"}, ...]}')
    order.add_argument("--order", help="every class name, comma-separated, in the new order")

    merge = commands.add_parser("merge", help="join two heads trained on the same backbone")
    merge.add_argument("model_a", help="a .keras model (its classes come first)")
    merge.add_argument("model_b", help="a .keras model on the same backbone weights")
    merge.add_argument("output", help="where the merged .keras model goes")
    merge.add_argument("--rename", help="new names for model_b's classes: old=new,old2=new2")
    merge.set_defaults(handler=_merge)

    evaluate = commands.add_parser("evaluate", help="accuracy, per class, old vs new")
    evaluate.add_argument("model", help="a .keras model")
    evaluate.add_argument("data", help="an image folder, a subfolder per class")
    evaluate.add_argument("--reference", help="the model before expansion (.keras or 'base')")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--json", help="also write the full report to this file")
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser("export", help="export a versioned SavedModel for TF Serving")
    export.add_argument("model", help="a .keras model")
    export.add_argument("export_dir", help="the model's directory; versions go inside")
    export.add_argument("--version", type=int, help="version number (default: the next one)")
    export.set_defaults(handler=_export)

    predict = commands.add_parser("predict", help="top classes of some images")
    predict.add_argument("model", help="a .keras model")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--top-k", type=int, default=5)
    predict.set_defaults(handler=_predict)

    lr_find = commands.add_parser("lr-find", help="learning-rate range test with a plot")
    lr_find.add_argument("model", help="a .keras model")
    lr_find.add_argument("data", help="an image folder, a subfolder per class")
    lr_find.add_argument("--plot", default="lr_find.png", help="where the curve goes")
    lr_find.add_argument("--batch-size", type=int, default=32)
    lr_find.add_argument("--steps", type=int, default=100, help="steps of the range test")
    lr_find.set_defaults(handler=_lr_find)

    backbones = commands.add_parser("backbones", help="the registered backbones")
    backbones.set_defaults(handler=_backbones)
    return parser


def _model_to_model(commands, name: str, text: str, handler) -> argparse.ArgumentParser:
    """A subcommand reading MODEL and writing OUTPUT, both .keras files."""
    command = commands.add_parser(name, help=text)
    command.add_argument("model", help="a .keras model (or 'base' for the shipped base model)")
    command.add_argument("output", help="where the new .keras model goes")
    command.set_defaults(handler=handler)
    return command


def _demo(args) -> int:
    from tfx_transfer.app.demo import DemoSettings, run_demo

    settings = DemoSettings.tiny() if args.tiny else DemoSettings()
    report = run_demo(args.workdir, settings, args.export_dir)
    print(
        f"\n90 -> 92 classes: kernel {report['kernel'][0]}x{report['kernel'][1]}, "
        f"new classes {report['classes']['new']}, old columns frozen.\n"
        f"Test set: {report['test_images_per_class']} images per class.\n"
    )
    print("| model | old-class accuracy | new-class accuracy |")
    print("|---|---|---|")
    print(f"| base model (90 classes) | {report['reference_old_accuracy']:.3f} | - |")
    print(
        f"| expanded (92 classes) | {report['old_accuracy']:.3f} | {report['new_accuracy']:.3f} |"
    )
    print(f"\nchange on old classes: {100 * report['old_accuracy_change']:+.1f} points")
    print(
        f"example: {report['example_prediction']['file']} -> {report['example_prediction']['top2']}"
    )
    print(f"model: {report['model']}; SavedModel for TF Serving: {report['export']}")
    print(f"report: {args.workdir}/report.json ({report['seconds']} s)")
    return 0


def _train(args) -> int:
    from tfx_transfer.app.runner import run_training

    result = run_training(args.run_config, verbose=0 if args.quiet else "auto")
    for key, value in result["summary"].items():
        if value is not None:
            print(f"{key:<24}{value:.4f}" if isinstance(value, float) else f"{key:<24}{value}")
    print(f"run directory: {result['run_dir']} (report.md, plots/, checkpoints/, logs/)")
    print(f"model: {result['model']}")
    if result["export"]:
        print(f"SavedModel for TF Serving: {result['export']}")
    return 0


def _tune(args) -> int:
    from tfx_transfer.app.run_config import ConfigError
    from tfx_transfer.app.tuning import tune

    config = args.run_config
    if config.tune is None:
        raise ConfigError(f"{args.config}: no `tune` section (its `space` says what to search)")
    options = {"overwrite": True} if args.overwrite else {}
    try:
        result = tune(config, max_trials=args.max_trials, **options)
    except ConfigError as error:  # the search space and settings, checked before any trial
        raise ConfigError(f"{args.config}: {error}") from None
    if result is None:
        print("worker: the chief's trials are done")
        return 0
    print(result.table(), end="")
    print(f"best trial {result.best_trial}: {result.objective} = {result.best_value:.4f}")
    print(f"best config: {result.best_yaml} (tfx-transfer train runs it)")
    print(f"trials: {result.csv}, {result.markdown}; plot: {result.plot}")
    return 0


def _load(path: str):
    import tfx_transfer as tt

    if path == "base":
        return tt.demo.base_model()
    if not Path(path).exists():
        raise FileNotFoundError(f"Model file not found: {path}")
    return tt.load_model(path)


def _image_size(model) -> int:
    return int(model.input_shape[1])


def _expand(args) -> int:
    import tfx_transfer as tt

    model = _load(args.model)
    names = _names(args.new_classes)
    examples = None
    if args.init == "imprint":
        if not args.examples:
            raise ValueError("--init imprint needs --examples FOLDER (a subfolder per new class).")
        examples = {name: sorted(_images_of(Path(args.examples) / name)) for name in names}
    expanded = tt.expand_classes(
        model,
        new_class_names=names,
        init=args.init,
        freeze_old=args.freeze_old,
        examples=examples,
        separate_branch=args.separate_branch,
    )
    return _save(expanded, args.output)


def _refine(args) -> int:
    import tfx_transfer as tt

    return _save(tt.refine_classes(_load(args.model), _names(args.classes)), args.output)


def _drop(args) -> int:
    import tfx_transfer as tt

    return _save(tt.drop_classes(_load(args.model), _names(args.classes)), args.output)


def _reorder(args) -> int:
    import tfx_transfer as tt

    order = tt.LabelMap.load(args.label_map) if args.label_map else _names(args.order)
    return _save(tt.reorder_classes(_load(args.model), order), args.output)


def _merge(args) -> int:
    import tfx_transfer as tt

    rename = {}
    for pair in _names(args.rename or ""):
        old, separator, new = pair.partition("=")
        if not separator or not old.strip() or not new.strip():
            raise ValueError(f"--rename takes old=new pairs; got {pair!r}.")
        rename[old.strip()] = new.strip()
    merged = tt.merge_heads(_load(args.model_a), _load(args.model_b), rename=rename)
    return _save(merged, args.output)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _save(model, path: str) -> int:
    """Saves a class operation's result and says what it holds."""
    import tfx_transfer as tt

    model.save(path)
    located = tt.surgery.locate_classifier(model)
    shapes = [kernel.shape for kernel, _ in located.level_weights()]
    if len(shapes) == 1:
        kernels = f"kernel {shapes[0]}"
    else:
        kernels = "kernels " + ", ".join(
            f"{layer.name} {shape}" for layer, shape in zip(located.layers, shapes)
        )
    print(f"{path}: {tt.class_info(model).num_classes} classes ({kernels})")
    return 0


def _images_of(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"No example folder for class {folder.name!r}: {folder}")
    return [str(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]


def _evaluate(args) -> int:
    import tfx_transfer as tt

    model = _load(args.model)
    reference = _load(args.reference) if args.reference else None
    data = tt.data.image_folder(
        args.data, image_size=_image_size(model), batch_size=args.batch_size
    )
    data = tt.data.align_labels(data, tt.class_info(model).class_names)
    report = tt.evaluate(model, data.train, reference=reference)
    print(report.table())
    if args.json:
        Path(args.json).write_text(report.to_json(indent=2))
        print(f"report: {args.json}")
    return 0


def _export(args) -> int:
    import tfx_transfer as tt

    path = tt.export_saved_model(_load(args.model), args.export_dir, version=args.version)
    print(f"SavedModel: {path}")
    return 0


def _predict(args) -> int:
    import tfx_transfer as tt

    for path in args.images:
        if not Path(path).is_file():
            raise FileNotFoundError(f"Image not found: {path}")
    results = tt.predict_images(_load(args.model), args.images, top_k=args.top_k)
    for path, top in zip(args.images, results):
        print(json.dumps({"image": path, "top": top}))
    return 0


def _lr_find(args) -> int:
    import tfx_transfer as tt

    model = _load(args.model)
    data = tt.data.image_folder(
        args.data, image_size=_image_size(model), batch_size=args.batch_size, seed=0
    )
    data = tt.data.align_labels(data, tt.class_info(model).class_names)
    result = tt.lr_find(model, data.train, steps=args.steps)
    path = tt.plots.plot_lr_find(result, args.plot)
    print(f"suggested learning rate: {result.suggestion:.2e}")
    print(f"curve: {path}")
    return 0


def _backbones(args) -> int:
    from tfx_transfer.backbones.registry import describe, get_backbone_spec, list_backbones

    print(f"{'name':<22}{'default':>8}{'min':>5}{'params':>8}  {'aligned':<8}P3 / P4 / P5")
    for name in list_backbones():
        row = describe(get_backbone_spec(name))
        print(
            f"{row['name']:<22}{row['default_size']:>8}{row['min_size']:>5}"
            f"{row['parameters'] / 1e6:>7.1f}M  {'yes' if row['features_aligned'] else 'no':<8}"
            f"{row['P3']} / {row['P4']} / {row['P5']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
