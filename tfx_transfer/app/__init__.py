"""The application layer: the `tfx-transfer` command line, YAML run configs, the
runner, run directories, plots, the offline demo and hyperparameter search.
Importing this package imports nothing heavy (the CLI answers `--help` at once)."""
