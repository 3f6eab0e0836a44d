"""A text-only baseline for the reporting task: how well could a learner that sees only the
words do, given exactly the N in-context (sentence, label) examples the model saw?

The learner is a logistic regression (scikit-learn, C = 1) on a bag of words (binary counts of
lower-cased word tokens, vocabulary from the N examples only) plus the sentence length in
words (standardised on the N examples). If the model reports an axis no better than this, its
"report" may rest on surface features of the sentences rather than on reading its activations.

Scores are expected accuracies per item: 1 right, 0 wrong, 0.5 a coin flip. With no examples
(N = 0) the learner flips a coin (0.5, chance for the two labels; there is no majority to
follow). When the N examples hold one class only it predicts that class. A tie in the fitted
probabilities (identical features under both labels) is a coin flip too.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression


def _features(train_texts: list[str], test_texts: list[str]):
    """(train [n_train, n_features], test [n_test, n_features]): word indicators and standardised length."""
    length_train = np.array([[len(t.split())] for t in train_texts], dtype=float)  # [n_train, 1]
    length_test = np.array([[len(t.split())] for t in test_texts], dtype=float)
    mu, sd = length_train.mean(), length_train.std()
    sd = sd if sd > 0 else 1.0
    train, test = [csr_matrix((length_train - mu) / sd)], [csr_matrix((length_test - mu) / sd)]
    vectorizer = CountVectorizer(binary=True, token_pattern=r"(?u)\b\w+\b")  # keeps one-letter words ("I", "a")
    try:
        train.insert(0, vectorizer.fit_transform(train_texts))  # vocabulary from the examples only
        test.insert(0, vectorizer.transform(test_texts))
    except ValueError:  # no word in any example: length alone
        pass
    return hstack(train).tocsr(), hstack(test).tocsr()


def surface_scores(train_texts, train_labels, test_texts, test_labels) -> np.ndarray:
    """[n_test] expected accuracy of the surface learner fitted on the train items: 1 right, 0
    wrong, 0.5 a coin flip (no train items, or tied probabilities); one train class: that class."""
    train_labels, test_labels = np.asarray(train_labels).ravel(), np.asarray(test_labels).ravel()
    if len(train_texts) != len(train_labels) or len(test_texts) != len(test_labels):
        raise ValueError(f"{len(train_texts)} train texts for {len(train_labels)} labels and {len(test_texts)} test "
                         f"texts for {len(test_labels)} labels: give one label per text.")
    if len(train_labels) == 0:
        return np.full(len(test_labels), 0.5)
    classes = np.unique(train_labels)
    if len(classes) == 1:
        return (test_labels == classes[0]).astype(float)
    x_train, x_test = _features(list(train_texts), list(test_texts))
    proba = LogisticRegression(C=1.0, max_iter=1000).fit(x_train, train_labels).predict_proba(x_test)  # [n_test, n_classes]
    best = np.isclose(proba, proba.max(1, keepdims=True), rtol=0, atol=1e-9)  # argmax set; ties share the credit
    hit = best & (classes[None, :] == test_labels[:, None])
    return hit.sum(1) / best.sum(1)


def surface_accuracy(train_texts, train_labels, test_texts, test_labels) -> float:
    """Accuracy on the test items of the bag-of-words + length logistic regression fitted on the train items."""
    return float(surface_scores(train_texts, train_labels, test_texts, test_labels).mean())


def prompt_surface_scores(texts, labels) -> np.ndarray:
    """[n_items]: the surface score of item i when the learner is fitted on items 0..i-1 of the
    prompt, the same N = i examples the model saw before it."""
    labels = np.asarray(labels).ravel()
    return np.array([surface_scores(texts[:i], labels[:i], texts[i:i + 1], labels[i:i + 1])[0] for i in range(len(texts))])
