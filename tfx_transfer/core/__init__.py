"""What every part of the toolkit shares: class metadata, label maps, weights,
preprocessing, saving, the atomic writer, and the only doors to Keras internals
(`compat`) and functional-graph internals (`graph`). Importing this package
imports nothing heavy."""
