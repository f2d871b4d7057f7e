"""Names of the encoder's AUC metrics, apart from ``evaluator.auc`` so the argument checks can
read them without importing the evaluator package (which imports the trainer's checks)."""

AUC_METRICS = (
    "roc_auc",
    "auc_rival",
    "roc_auc_neutral",
    "roc_auc_other",
    "min_auc_n_o",
    "class_exclusivity",
    "encoding_e",
)
