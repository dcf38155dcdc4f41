"""Thought diagnostics of think mode: the collapse detectors of the paper and its follow-ups, computed on the
thoughts that the think readout (spiral.evaluation.exploitability.think_readout) samples.

  length          mean thought length in tokens; empty_share: thoughts with no token
  distinct_share  distinct thought texts / thoughts
  card_accuracy   a bag-of-tokens logistic regression recovering the player's card (J, Q, K) from the thought
                  alone, 4-fold cross-validated (held out); chance is 1/3
  tv              mean total-variation distance between P(move | thought) and the information set's average:
                  how much the thought moves the action (0: the thought does not matter)
"""

from __future__ import annotations


def diagnostics(tokens: list[list[int]], texts: list[str], cards: list[str], moves: list[float],
                means: list[float], seed: int = 0) -> dict[str, float]:  # fmt: skip
    """The diagnostics of thoughts `tokens` (decoded `texts`) played with `cards`; `moves[i]` is P(bet or call)
    after thought i and `means[i]` that of its information set averaged over its thoughts."""
    n = len(tokens)
    return {
        "length": sum(len(t) for t in tokens) / n,
        "empty_share": sum(not t for t in tokens) / n,
        "distinct_share": len(set(texts)) / n,
        "card_accuracy": card_accuracy(tokens, cards, seed),
        "tv": sum(abs(m - a) for m, a in zip(moves, means, strict=True)) / n,  # two moves: TV = |p - q|
    }


def card_accuracy(thoughts: list[list[int]], cards: list[str], seed: int = 0, folds: int = 4) -> float:
    """Held-out accuracy of a bag-of-tokens logistic regression that predicts the card from the thought
    (4-fold stratified cross-validation). Thoughts that say nothing give the majority rate (1/3 here)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    docs = [" ".join(f"t{t}" for t in th) for th in thoughts]
    if not any(docs):
        counts = {c: cards.count(c) for c in set(cards)}
        return max(counts.values()) / len(cards)
    x = CountVectorizer(token_pattern=r"\S+", binary=True).fit_transform(docs)
    folds = min(folds, *(cards.count(c) for c in set(cards)))
    if folds < 2:
        return float("nan")
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(LogisticRegression(max_iter=2000), x, cards, cv=split).mean())
