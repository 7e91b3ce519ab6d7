"""matrix_mult: {"n": N} (default 100, 1 ≤ N ≤ 500) builds the n×n matrices
A[i][j] = (i*n + j) % 7 + 1 and B[i][j] = (i + 2*j) % 5 + 1, multiplies them (naive O(n³),
pure Python) and answers {"n": N, "checksum": <sum of all elements of A·B>,
"elapsed_ms": <build + multiply time>}: the same numbers as the Rust matrix_mult."""

import time
from operator import mul

DEFAULT_N = 100
MAX_N = 500


def main(args: dict) -> dict:
    n = args.get("n")
    if n is None:
        n = DEFAULT_N
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be a non-negative integer, got {n!r}")
    if not 1 <= n <= MAX_N:
        raise ValueError(f"`n` must be between 1 and {MAX_N}, got {n}")
    started = time.perf_counter()
    checksum = product_checksum(n)
    elapsed_ms = (time.perf_counter() - started) * 1000
    return {"n": n, "checksum": checksum, "elapsed_ms": elapsed_ms}


def product_checksum(n: int) -> float:
    """The sum of all elements of A·B."""
    a = [[float((i * n + j) % 7 + 1) for j in range(n)] for i in range(n)]
    b = [[float((i + 2 * j) % 5 + 1) for j in range(n)] for i in range(n)]
    columns = list(zip(*b))
    total = 0.0
    for row in a:
        # C[i][j] = Σk A[i][k]·B[k][j]: row i of A against column j of B.
        for column in columns:
            total += sum(map(mul, row, column))
    return total
