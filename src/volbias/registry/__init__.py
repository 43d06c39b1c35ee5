"""Package data of volbias.data: sha256 lists of the public samples and the paper's cross-validation folds."""
