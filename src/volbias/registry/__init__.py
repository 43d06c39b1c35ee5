"""Package data of volbias.data: sha256 lists of the public samples and the authors' cross-validation folds
(from the public code of their MICCAI 2019 Dice/Jaccard paper, JeroenBertels/optimizingdice)."""
