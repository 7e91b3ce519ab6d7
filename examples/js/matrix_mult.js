// matrixMult: multiplies two n×n matrices (default 100) of pseudo-random values and returns
// a checksum, as the paper's workload.
function fl_main(input) {
  const n = Number.isInteger(input.n) && input.n > 0 && input.n <= 1000 ? input.n : 100;
  let seed = 42;
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const a = new Float64Array(n * n).map(next);
  const b = new Float64Array(n * n).map(next);
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      for (let j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j];
    }
  }
  let sum = 0;
  for (const x of c) sum += x;
  return { n, checksum: Math.round(sum * 1000) / 1000 };
}
