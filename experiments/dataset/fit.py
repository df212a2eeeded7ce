"""Ordinary least squares with standard errors and 95% intervals, and Student's t: statistics only.

Rules: data in, numbers out: no I/O, no clock, standard library only (scipy is not a dependency,
numpy only comes with matplotlib, and a fit of four coefficients over a hundred points needs
neither). The t quantile is found by bisection on Student's t CDF, written with the regularized
incomplete beta function (its continued fraction, evaluated by the modified Lentz method; log-gamma
from :func:`math.lgamma`); the tests check it against printed tables. The fit solves by QR
(modified Gram-Schmidt, run twice) on columns scaled to unit length, never through the normal
equations: a column of table sizes (10^4) beside the constant 1 squares the condition number there.

Formulas, for a design ``X`` (n rows, k terms) and observations ``y``: coefficients
``beta = argmin |y - X beta|``; residual variance ``s^2 = |y - X beta|^2 / (n - k)``; covariance
``s^2 (X'X)^-1``; a coefficient's interval ``beta_j +- t(0.975, n - k) se_j``. At a new point ``x0``:
the fitted mean's interval uses ``se^2 = x0' cov x0``, a new observation's (the prediction interval)
``se^2 = s^2 + x0' cov x0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

#: The level of every interval this module reports unless told otherwise.
LEVEL = 0.95


# --- Student's t ----------------------------------------------------------------------------------
def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz), converging fast
    for ``x < (a + 1) / (a + b + 2)``."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
                          -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            step = c * d
            h *= step
        if abs(step - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (x={x}, a={a}, b={b})")


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """``I_x(a, b)``, the regularized incomplete beta function, for ``0 <= x <= 1`` and ``a, b > 0``."""
    if not 0.0 <= x <= 1.0 or a <= 0 or b <= 0:
        raise ValueError(f"I_x(a, b) needs 0 <= x <= 1 and a, b > 0 (x={x}, a={a}, b={b})")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The fraction converges on one side of the mean; the symmetry I_x(a, b) = 1 - I_(1-x)(b, a) covers the other.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(x, a, b) / a
    return 1.0 - front * _beta_continued_fraction(1.0 - x, b, a) / b


def student_t_cdf(t: float, dof: float) -> float:
    """P(T <= t) for Student's t with ``dof`` degrees of freedom."""
    if dof <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {dof}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * regularized_incomplete_beta(dof / (dof + t * t), dof / 2.0, 0.5)
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, dof: float) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom (``t(0.975, 10)`` = 2.228139),
    by bisection on :func:`student_t_cdf` to a relative 1e-13."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, dof)
    low, high = 0.0, 1.0
    while student_t_cdf(high, dof) < p:  # one degree of freedom reaches 63.66 at 0.995: a few doublings
        low, high = high, high * 2.0
    while high - low > 1e-13 * high:
        middle = (low + high) / 2.0
        if student_t_cdf(middle, dof) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


# --- least squares --------------------------------------------------------------------------------
class FitError(ValueError):
    """The data cannot give the fit asked for (too few points, or a term the data does not vary)."""


@dataclass(frozen=True)
class Interval:
    """A value with the ends of its interval at ``level`` (0.95: 95%)."""

    value: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


@dataclass(frozen=True)
class Fit:
    """An ordinary least-squares fit: ``coefficients[j]`` multiplies ``terms[j]``.

    ``standard_errors`` and ``covariance`` are the usual OLS estimates (residual variance times
    ``(X'X)^-1``); ``dof`` = n - k; ``residual_sd`` = s; ``r2`` the coefficient of determination."""

    terms: tuple[str, ...]
    coefficients: tuple[float, ...]
    standard_errors: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    n: int
    dof: int
    residual_sd: float
    r2: float

    def t_value(self, level: float = LEVEL) -> float:
        """The two-sided Student's t multiplier for this fit's degrees of freedom."""
        return student_t_quantile(0.5 + level / 2.0, self.dof)

    def coefficient(self, term: str, level: float = LEVEL) -> Interval:
        """``term``'s coefficient with its confidence interval."""
        j = self.terms.index(term)
        half = self.t_value(level) * self.standard_errors[j]
        return Interval(self.coefficients[j], self.coefficients[j] - half, self.coefficients[j] + half, level)

    def predict(self, x: Sequence[float], level: float = LEVEL) -> Prediction:
        """The fitted value at the row ``x`` (one value per term), with the interval of the fitted
        mean (``mean``) and of one new observation there (``new``, the prediction interval)."""
        if len(x) != len(self.terms):
            raise ValueError(f"a row of {len(self.terms)} values is needed ({', '.join(self.terms)}), got {len(x)}")
        value = sum(b * v for b, v in zip(self.coefficients, x))
        mean_variance = sum(x[i] * self.covariance[i][j] * x[j] for i in range(len(x)) for j in range(len(x)))
        mean_variance = max(mean_variance, 0.0)  # rounding can leave -1e-30 where it is 0
        t = self.t_value(level)
        mean_half = t * math.sqrt(mean_variance)
        new_half = t * math.sqrt(mean_variance + self.residual_sd ** 2)
        return Prediction(value, Interval(value, value - mean_half, value + mean_half, level),
                          Interval(value, value - new_half, value + new_half, level))


@dataclass(frozen=True)
class Prediction:
    """A fitted value with the interval of the fitted mean and the prediction interval."""

    value: float
    mean: Interval
    new: Interval


def _dot(u: Sequence[float], v: Sequence[float]) -> float:
    return math.fsum(a * b for a, b in zip(u, v))


def ols(rows: Sequence[Sequence[float]], ys: Sequence[float], terms: Sequence[str]) -> Fit:
    """Fit ``ys`` on ``rows`` (one row of ``len(terms)`` values per observation; put 1.0 in a column
    for an intercept) by ordinary least squares. Raises :class:`FitError` when there are not more
    observations than terms, or a column is constant zero or a combination of the others."""
    n, k = len(rows), len(terms)
    if len(ys) != n:
        raise FitError(f"{n} rows but {len(ys)} observations")
    if any(len(row) != k for row in rows):
        raise FitError(f"every row needs {k} values ({', '.join(terms)})")
    if n <= k:
        raise FitError(f"{n} observations cannot fit {k} terms with an error estimate: at least {k + 1} are needed")
    columns = [[float(row[j]) for row in rows] for j in range(k)]
    scales = [math.sqrt(_dot(column, column)) for column in columns]
    for term, scale in zip(terms, scales):
        if scale == 0.0:
            raise FitError(f"the data never varies {term} from 0: it cannot be fitted")
    # Modified Gram-Schmidt on unit-length columns, each orthogonalized twice (enough for k = 4).
    q: list[list[float]] = []
    r = [[0.0] * k for _ in range(k)]
    for j in range(k):
        v = [value / scales[j] for value in columns[j]]
        for _ in range(2):
            for i in range(j):
                projection = _dot(q[i], v)
                r[i][j] += projection
                v = [a - projection * b for a, b in zip(v, q[i])]
        norm = math.sqrt(_dot(v, v))
        if norm < 1e-10:
            raise FitError(f"{terms[j]} is a combination of {', '.join(terms[:j])} in this data: vary it independently")
        r[j][j] = norm
        q.append([a / norm for a in v])
    # R beta_scaled = Q'y, by back substitution; then beta_j = beta_scaled_j / scale_j.
    qty = [_dot(column, ys) for column in q]
    scaled = [0.0] * k
    for j in reversed(range(k)):
        scaled[j] = (qty[j] - sum(r[j][i] * scaled[i] for i in range(j + 1, k))) / r[j][j]
    coefficients = [scaled[j] / scales[j] for j in range(k)]
    residuals = [y - _dot(coefficients, row) for row, y in zip(rows, ys)]
    residual_ss = math.fsum(e * e for e in residuals)
    dof = n - k
    variance = residual_ss / dof
    # (X'X)^-1 in the scaled columns is R^-1 R^-T; R^-1 by back substitution, column by column.
    r_inverse = [[0.0] * k for _ in range(k)]
    for j in range(k):
        r_inverse[j][j] = 1.0 / r[j][j]
        for i in reversed(range(j)):
            r_inverse[i][j] = -sum(r[i][m] * r_inverse[m][j] for m in range(i + 1, j + 1)) / r[i][i]
    covariance = tuple(
        tuple(variance * _dot(r_inverse[i], r_inverse[j]) / (scales[i] * scales[j]) for j in range(k)) for i in range(k))
    mean_y = math.fsum(ys) / n
    total_ss = math.fsum((y - mean_y) ** 2 for y in ys)
    return Fit(
        terms=tuple(terms),
        coefficients=tuple(coefficients),
        standard_errors=tuple(math.sqrt(max(covariance[j][j], 0.0)) for j in range(k)),
        covariance=covariance,
        n=n,
        dof=dof,
        residual_sd=math.sqrt(variance),
        r2=1.0 - residual_ss / total_ss if total_ss > 0 else 1.0,
    )


__all__ = ["LEVEL", "Fit", "FitError", "Interval", "Prediction", "ols", "regularized_incomplete_beta",
           "student_t_cdf", "student_t_quantile"]
