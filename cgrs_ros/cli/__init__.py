"""Command-line tools over the core: cgrs-index, cgrs-query, cgrs-eval, cgrs-submit, cgrs-score, cgrs-demo."""
