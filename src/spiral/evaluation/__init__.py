"""Evaluation: Kuhn exploitability, win rates against fixed opponents, small statistics helpers."""
