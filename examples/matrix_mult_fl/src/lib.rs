//! `matrix_mult` (FunLess ABI): `{"n": N}` (default 100, 1 ≤ N ≤ 500) builds the n×n
//! deterministic matrices A[i][j] = (i*n + j) % 7 + 1 and B[i][j] = (i + 2*j) % 5 + 1,
//! multiplies them (naive O(n³)) and answers
//! `{"n": N, "checksum": <sum of all elements of A·B>, "elapsed_ms": <build + multiply time>}`.

use std::time::Instant;

use fl_sdk::{Value, json};

#[unsafe(no_mangle)]
pub extern "C" fn __invoke(input_len: i32) -> i32 {
    fl_sdk::run(input_len, matrix_mult)
}

const DEFAULT_N: u64 = 100;
const MAX_N: u64 = 500;

fn matrix_mult(args: Value) -> Result<Value, String> {
    let n = fl_sdk::u64_arg(&args, "n", DEFAULT_N)?;
    if !(1..=MAX_N).contains(&n) {
        return Err(format!("`n` must be between 1 and {MAX_N}, got {n}"));
    }
    let started = Instant::now();
    let checksum = checksum(n as usize);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(json!({ "n": n, "checksum": checksum, "elapsed_ms": elapsed_ms }))
}

/// Builds A and B (row-major, n×n), computes C = A·B and returns the sum of all elements of C.
fn checksum(n: usize) -> f64 {
    let a: Vec<f64> = (0..n * n).map(|k| ((k % 7) + 1) as f64).collect(); // k = i*n + j
    let b: Vec<f64> = (0..n * n)
        .map(|k| (((k / n) + 2 * (k % n)) % 5 + 1) as f64)
        .collect();
    let mut c = vec![0.0_f64; n * n];
    for i in 0..n {
        let c_row = &mut c[i * n..(i + 1) * n];
        for k in 0..n {
            let a_ik = a[i * n + k];
            let b_row = &b[k * n..(k + 1) * n];
            for (c_ij, b_kj) in c_row.iter_mut().zip(b_row) {
                *c_ij += a_ik * b_kj;
            }
        }
    }
    c.iter().sum()
}
