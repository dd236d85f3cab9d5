"""The `tfx-transfer` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfx-transfer", description="Transfer learning on images with Keras 3."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="run the offline demo on the embedded data")
    demo.add_argument("--workdir", default="runs/demo", help="where outputs go (runs/demo)")
    demo.add_argument(
        "--export-dir",
        default="saved_models/shapes92",
        help="where SavedModel versions go (saved_models/shapes92)",
    )
    demo.add_argument("--tiny", action="store_true", help="tiny settings, for a smoke test")
    commands.add_parser("backbones", help="list the registered backbones")
    args = parser.parse_args(argv)

    import tfx_transfer as tt

    if args.version:
        print(f"tfx-transfer {tt.__version__}")
        return 0
    if args.command == "backbones":
        return _print_backbones(tt)
    if args.command == "demo":
        return _run_demo(args)
    parser.print_help()
    return 2


def _print_backbones(tt) -> int:
    from tfx_transfer.backbones import describe

    rows = [describe(tt.get_backbone_spec(name)) for name in tt.list_backbones()]
    header = f"{'name':<22}{'default':>8}{'min':>5}  {'aligned':<8}P3 / P4 / P5"
    print(header)
    for row in rows:
        print(
            f"{row['name']:<22}{row['default_size']:>8}{row['min_size']:>5}  "
            f"{'yes' if row['features_aligned'] else 'no':<8}{row['P3']} / {row['P4']} / {row['P5']}"
        )
    return 0


def _run_demo(args) -> int:
    from tfx_transfer.demo import DemoSettings, run_demo

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


if __name__ == "__main__":
    sys.exit(main())
