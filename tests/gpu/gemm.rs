//! The one GEMM kernel against ndarray in f64, for every transpose combination, with and without
//! bias and accumulation, at sizes that are not multiples of its 64x64x16 tiles.

use super::{gpu, seed};
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnn_wgpu::gpu::gemm::matmul;

fn random(rows: usize, cols: usize, rng: &mut StdRng) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
}

fn to64(a: &Array2<f32>) -> Array2<f64> {
    a.mapv(|v| v as f64)
}

/// f32 sums of K products against f64: error grows like sqrt(K) * 2^-24.
const TOLERANCE: f64 = 1e-5;

#[test]
fn gemm_matches_ndarray_at_awkward_sizes() {
    let mut rng = StdRng::seed_from_u64(seed(7));
    let shapes = [
        (1, 1, 1),
        (1, 3, 17),
        (3, 17, 65),
        (65, 3, 257),
        (17, 257, 3),
        (130, 67, 129),
        (64, 64, 16),
        (2, 1, 300),
    ];
    let mut failures = Vec::new();
    for (m, n, k) in shapes {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for (with_bias, accumulate) in [(false, false), (true, false), (true, true)] {
                    let a = if trans_a {
                        random(k, m, &mut rng)
                    } else {
                        random(m, k, &mut rng)
                    };
                    let b = if trans_b {
                        random(n, k, &mut rng)
                    } else {
                        random(k, n, &mut rng)
                    };
                    let bias: Array1<f32> =
                        Array1::from_shape_fn(n, |_| rng.random_range(-1.0..1.0));
                    let c0 = random(m, n, &mut rng);
                    let got = matmul(
                        gpu(),
                        a.view(),
                        trans_a,
                        b.view(),
                        trans_b,
                        with_bias.then(|| bias.as_slice().unwrap()),
                        accumulate.then(|| c0.view()),
                    )
                    .unwrap();
                    let (a64, b64) = (to64(&a), to64(&b));
                    let op_a = if trans_a { a64.t().to_owned() } else { a64 };
                    let op_b = if trans_b { b64.t().to_owned() } else { b64 };
                    let mut want = op_a.dot(&op_b);
                    if with_bias {
                        want += &bias.mapv(|v| v as f64);
                    }
                    if accumulate {
                        want += &to64(&c0);
                    }
                    let diff = (&to64(&got) - &want).mapv(|d| d * d).sum().sqrt();
                    let norm = want.mapv(|d| d * d).sum().sqrt();
                    let rel = diff / norm;
                    // written so that a NaN fails too
                    if rel.is_nan() || rel > TOLERANCE {
                        let (worst, _) = (&to64(&got) - &want)
                            .indexed_iter()
                            .map(|(ix, d)| (ix, d.abs()))
                            .fold(((0, 0), -1.0), |acc, x| if x.1 > acc.1 { x } else { acc });
                        failures.push(format!(
                            "m={m} n={n} k={k} trans_a={trans_a} trans_b={trans_b} bias={with_bias} \
                             accumulate={accumulate}: rel err {rel:.3e}, worst {worst:?}: gpu {} want {}",
                            got[worst], want[worst]
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "||gpu - cpu|| / ||cpu|| > {TOLERANCE:e}:\n{}",
        failures.join("\n")
    );
}
