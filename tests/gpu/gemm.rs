//! The GEMM kernels against ndarray in f64, for every transpose combination, with and without
//! bias and accumulation, at sizes that are not multiples of any tile or block: the kernel
//! `matmul` picks for the adapter, then every entry point forced, on matrices placed inside
//! larger NaN-padded buffers (unaligned offsets and strides) that must stay untouched.

use super::{gpu, seed};
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnn_wgpu::gpu::gemm::{matmul, matmul_using, split_parts, GemmKernel, MatmulRun, Placement};
use rnn_wgpu::gpu::Gpu;

pub(super) fn random(rows: usize, cols: usize, rng: &mut StdRng) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
}

pub(super) fn to64(a: &Array2<f32>) -> Array2<f64> {
    a.mapv(|v| v as f64)
}

/// f32 sums of K products against f64: error grows like sqrt(K) * 2^-24.
const TOLERANCE: f64 = 1e-5;

/// One product's operands and the f64 reference.
pub(super) struct Case {
    pub(super) label: String,
    pub(super) a: Array2<f32>,
    pub(super) trans_a: bool,
    pub(super) b: Array2<f32>,
    pub(super) trans_b: bool,
    pub(super) bias: Option<Array1<f32>>,
    pub(super) c0: Option<Array2<f32>>,
    pub(super) want: Array2<f64>,
}

/// Every transpose combination and (bias, accumulate) configuration of one shape.
pub(super) fn cases((m, n, k): (usize, usize, usize), rng: &mut StdRng) -> Vec<Case> {
    let mut out = Vec::new();
    for trans_a in [false, true] {
        for trans_b in [false, true] {
            for (with_bias, accumulate) in [(false, false), (true, false), (true, true)] {
                let a = if trans_a {
                    random(k, m, rng)
                } else {
                    random(m, k, rng)
                };
                let b = if trans_b {
                    random(n, k, rng)
                } else {
                    random(k, n, rng)
                };
                let bias: Array1<f32> = Array1::from_shape_fn(n, |_| rng.random_range(-1.0..1.0));
                let c0 = random(m, n, rng);
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
                out.push(Case {
                    label: format!(
                        "m={m} n={n} k={k} trans_a={trans_a} trans_b={trans_b} \
                         bias={with_bias} accumulate={accumulate}"
                    ),
                    a,
                    trans_a,
                    b,
                    trans_b,
                    bias: with_bias.then_some(bias),
                    c0: accumulate.then_some(c0),
                    want,
                });
            }
        }
    }
    out
}

/// `case` through `matmul_using` on `gpu` with the entry point and K-chunk `kernel`, its
/// matrices placed as `placement` says.
pub(super) fn run_case(
    gpu: &Gpu,
    kernel: (GemmKernel, Option<usize>),
    placement: Placement,
    case: &Case,
) -> MatmulRun {
    matmul_using(
        gpu,
        kernel,
        placement,
        (case.a.view(), case.trans_a),
        (case.b.view(), case.trans_b),
        case.bias.as_ref().map(|v| v.as_slice().unwrap()),
        case.c0.as_ref().map(|c| c.view()),
    )
    .unwrap()
}

/// `None` when `got` is within tolerance of the reference, else what went wrong.
pub(super) fn mismatch(case: &Case, got: &Array2<f32>) -> Option<String> {
    let diff = (&to64(got) - &case.want).mapv(|d| d * d).sum().sqrt();
    let norm = case.want.mapv(|d| d * d).sum().sqrt();
    let rel = if norm > 0.0 { diff / norm } else { diff };
    // written so that a NaN fails too
    if rel.is_nan() || rel > TOLERANCE {
        let (worst, _) = (&to64(got) - &case.want)
            .indexed_iter()
            .map(|(ix, d)| (ix, if d.is_nan() { f64::INFINITY } else { d.abs() }))
            .fold(((0, 0), -1.0), |acc, x| if x.1 > acc.1 { x } else { acc });
        return Some(format!(
            "rel err {rel:.3e}, worst {worst:?}: gpu {} want {}",
            got[worst], case.want[worst]
        ));
    }
    None
}

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
    for shape in shapes {
        for case in cases(shape, &mut rng) {
            let got = matmul(
                gpu(),
                case.a.view(),
                case.trans_a,
                case.b.view(),
                case.trans_b,
                case.bias.as_ref().map(|v| v.as_slice().unwrap()),
                case.c0.as_ref().map(|c| c.view()),
            )
            .unwrap();
            if let Some(why) = mismatch(&case, &got) {
                failures.push(format!("{}: {why}", case.label));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "||gpu - cpu|| / ||cpu|| > {TOLERANCE:e}:\n{}",
        failures.join("\n")
    );
}

/// Every entry point on every awkward shape (skinny N and M, K = 1, sizes one past a block),
/// each matrix 3 NaN words into its buffer with rows 3 words apart: a kernel that reads outside
/// its operands produces NaN, one that writes outside C overwrites a NaN.
#[test]
fn every_gemm_kernel_matches_ndarray_inside_larger_buffers() {
    let mut rng = StdRng::seed_from_u64(seed(8));
    let shapes = [
        (1, 1, 1),
        (5, 2, 33),
        (33, 1, 17),
        (1, 65, 9),
        (2, 33, 1),
        (17, 17, 5),
        (3, 257, 2),
        (257, 3, 65),
        (40, 70, 3),
        // past one 128x128 tile both ways, K past one slice of 8 and short in the last
        (130, 135, 9),
        // several K-slices per quarter of gemm_split_32x32, the last quarter short
        (35, 66, 300),
    ];
    let mut failures = Vec::new();
    for kernel in GemmKernel::forced(gpu()) {
        for shape in shapes {
            for case in cases(shape, &mut rng) {
                let run = run_case(gpu(), (kernel, None), Placement { pad: 3, align: 1 }, &case);
                if let Some(why) = mismatch(&case, &run.product) {
                    failures.push(format!("{kernel:?} {}: {why}", case.label));
                }
                if !run.padding_kept {
                    failures.push(format!("{kernel:?} {}: wrote outside C", case.label));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// llvmpipe ends an invocation's loops once it has run 65,535 iterations of them, silently
/// (`Gpu::loop_limit`): a product whose K is past that in one dispatch misses the rest of its
/// sums (relative errors of 0.2-0.5 at this K before the host split K there). Every entry
/// point, every transpose, bias and accumulation, at K = 70,001 on 9 x 9 (small enough that
/// no cache-driven chunking splits K anyway).
#[test]
fn every_gemm_kernel_sums_all_of_a_k_past_llvmpipes_loop_limit() {
    let mut rng = StdRng::seed_from_u64(seed(9));
    let mut failures = Vec::new();
    // each transpose with bias and accumulation: the loop limit does not care about those
    let cases: Vec<Case> = cases((9, 9, 70_001), &mut rng)
        .into_iter()
        .filter(|case| case.c0.is_some())
        .collect();
    for kernel in GemmKernel::forced(gpu()) {
        for case in &cases {
            let run = run_case(gpu(), (kernel, None), Placement { pad: 1, align: 1 }, case);
            if let Some(why) = mismatch(case, &run.product) {
                failures.push(format!("{kernel:?} {}: {why}", case.label));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The texel kernels (operands copied or packed into textures) against f64 and against the
/// bits of `gemm_lanes_64x8`, which sums the same products in the same order: with rows placed
/// as buffer-to-texture copies need them (16-byte offset, 256-byte strides) on shapes whose
/// stored rows are whole texels, each operand is copied, except a transposed op(B), which is
/// packed; elsewhere both are packed. Rows and columns one past a tile, K not a multiple of 4.
#[test]
fn texel_products_match_ndarray_and_the_lanes_bits() {
    use rnn_wgpu::gpu::Kernel;
    if !gpu().has_lanes_of_8() {
        return assert!(
            !GemmKernel::forced(gpu()).contains(&GemmKernel::Texels64x8 { swapped: false })
        );
    }
    let mut rng = StdRng::seed_from_u64(seed(11));
    let mut failures = Vec::new();
    let aligned = Placement { pad: 4, align: 64 };
    let unaligned = Placement { pad: 3, align: 1 };
    for (shape, placement) in [
        ((68, 132, 36), aligned),
        ((4, 8, 4), aligned),
        ((132, 64, 68), aligned),
        ((65, 67, 33), aligned),
        ((65, 67, 33), unaligned),
        ((3, 129, 17), unaligned),
    ] {
        let whole_texels = shape.0 % 4 == 0 && shape.1 % 4 == 0 && shape.2 % 4 == 0;
        for case in cases(shape, &mut rng) {
            let run = |kernel| run_case(gpu(), (kernel, None), placement, &case);
            let texels = run(GemmKernel::Texels64x8 { swapped: false });
            let lanes = run(GemmKernel::Lanes64x8 { swapped: false });
            let label = format!("{placement:?} {}", case.label);
            if let Some(why) = mismatch(&case, &texels.product) {
                failures.push(format!("{label}: {why}"));
            }
            if !texels.padding_kept {
                failures.push(format!("{label}: wrote outside C"));
            }
            let differ = (texels.product.iter().zip(&lanes.product))
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            if differ > 0 {
                failures.push(format!(
                    "{label}: {differ} elements differ from gemm_lanes_64x8"
                ));
            }
            let copies = placement.align == 64 && whole_texels;
            let want = match (copies, case.trans_a, case.trans_b) {
                (true, false, false) => vec![Kernel::GemmTexelsNn],
                (true, false, true) => vec![Kernel::PackTexels, Kernel::GemmTexelsNn],
                (true, true, false) => vec![Kernel::GemmTexelsTn],
                (true, true, true) => vec![Kernel::PackTexels, Kernel::GemmTexelsTn],
                (false, ..) => vec![Kernel::PackTexels, Kernel::PackTexels, Kernel::GemmTexelsTn],
            };
            if texels.kernels != want {
                failures.push(format!("{label}: ran {:?}, want {want:?}", texels.kernels));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `gemm_tiled_prefetch` loads the next K-slice early but sums the same products in the same
/// order as `gemm_tiled`: the same bits, at shapes of one slice, a slice and one, and several.
#[test]
fn prefetching_the_next_slice_changes_no_bit() {
    let mut rng = StdRng::seed_from_u64(seed(13));
    let mut failures = Vec::new();
    for shape in [(65, 67, 16), (3, 129, 17), (130, 5, 49)] {
        for case in cases(shape, &mut rng) {
            let run = |kernel| {
                run_case(gpu(), (kernel, None), Placement { pad: 3, align: 1 }, &case).product
            };
            let (early, plain) = (run(GemmKernel::TiledPrefetch), run(GemmKernel::Tiled));
            if let Some(why) = mismatch(&case, &early) {
                failures.push(format!("{}: {why}", case.label));
            }
            let differ = (early.iter().zip(&plain))
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            if differ > 0 {
                failures.push(format!("{}: {differ} elements differ", case.label));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The split-K kernels with K split over parts of workgroups (K of several thousand: the weight
/// gradients on GPUs) against f64, with the dispatches they take (the parts, then their sum)
/// and the same bits when run again. The parts are uneven (K is not a multiple of them, nor of
/// a slice's steps), and one K just misses a second part.
#[test]
fn split_k_parts_match_ndarray_with_the_same_bits_every_run() {
    use rnn_wgpu::gpu::Kernel;
    let mut rng = StdRng::seed_from_u64(seed(12));
    let mut failures = Vec::new();
    let kernels = [
        (GemmKernel::Split32x32, 32, Kernel::GemmSplit32x32),
        (GemmKernel::Split64x64, 64, Kernel::GemmSplit64x64),
    ];
    let shapes = [
        ((33, 17, 12300), 3),
        ((40, 70, 9000), 2),
        ((3, 65, 4100), 1),
    ];
    for ((kernel, tile, entry), (shape, parts)) in
        kernels.iter().flat_map(|k| shapes.map(|s| (k, s)))
    {
        if !GemmKernel::forced(gpu()).contains(kernel) {
            // not a skip: this adapter cannot run the kernel, so Auto never picks it
            assert!(!gpu().allows_groups_of_512());
            continue;
        }
        assert_eq!(split_parts(shape, *tile), parts, "{shape:?}");
        let want = if parts > 1 {
            vec![*entry, Kernel::GemmSplitSum]
        } else {
            vec![*entry]
        };
        for case in cases(shape, &mut rng) {
            let run = || {
                run_case(
                    gpu(),
                    (*kernel, Some(usize::MAX)),
                    Placement { pad: 3, align: 1 },
                    &case,
                )
            };
            let (first, again) = (run(), run());
            let label = format!("{kernel:?} {}", case.label);
            if let Some(why) = mismatch(&case, &first.product) {
                failures.push(format!("{label}: {why}"));
            }
            if !first.padding_kept {
                failures.push(format!("{label}: wrote outside C"));
            }
            if first.kernels != want {
                failures.push(format!("{label}: ran {:?}, want {want:?}", first.kernels));
            }
            let differ = (first.product.iter().zip(&again.product))
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            if differ > 0 {
                failures.push(format!("{label}: {differ} elements differ between runs"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A product run as K-chunks, one dispatch each (what CPU adapters do for the weight
/// gradients), against the same product in one dispatch: the same bits from the kernels that
/// start from bias + C (every CPU-adapter kernel), within tolerance of f64 from `gemm_tiled`
/// (which adds them at the end). Chunks of 1, 3 and 17 rows of K, K not a multiple of them.
#[test]
fn k_chunks_give_the_bits_of_one_dispatch() {
    let mut rng = StdRng::seed_from_u64(seed(9));
    let mut failures = Vec::new();
    for kernel in GemmKernel::forced(gpu()) {
        for shape in [(17, 65, 40), (70, 3, 65), (3, 66, 257)] {
            for case in cases(shape, &mut rng) {
                let run = |k_chunk| {
                    run_case(
                        gpu(),
                        (kernel, k_chunk),
                        Placement { pad: 3, align: 1 },
                        &case,
                    )
                };
                let whole = run(Some(usize::MAX)).product;
                for chunk in [1, 3, 17] {
                    let chunked = run(Some(chunk));
                    let (got, padding_kept) = (chunked.product, chunked.padding_kept);
                    let label = format!("{kernel:?} chunk {chunk} {}", case.label);
                    if !padding_kept {
                        failures.push(format!("{label}: wrote outside C"));
                    }
                    if let Some(why) = mismatch(&case, &got) {
                        failures.push(format!("{label}: {why}"));
                    }
                    let same_bits = got
                        .iter()
                        .zip(&whole)
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    let adds_c_last = matches!(
                        kernel,
                        GemmKernel::Tiled
                            | GemmKernel::TiledPrefetch
                            | GemmKernel::Wide128x128
                            | GemmKernel::Split32x32
                            | GemmKernel::Split64x64
                    );
                    if !adds_c_last && !same_bits {
                        let differ = got.iter().zip(&whole).filter(|(x, y)| x != y).count();
                        failures.push(format!(
                            "{label}: {differ} elements differ from one dispatch"
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `matmul`'s automatic K-chunks: a weight-gradient-sized product (operands past 16 MiB, more
/// than one tile along M and N) runs in several dispatches on a CPU adapter and one on a GPU,
/// and still matches f64; a recurrent product (operands of a few MiB) is one dispatch anywhere.
#[test]
fn long_products_run_in_k_chunks_on_cpu_adapters() {
    // A context of its own: the shared one counts the work of tests running beside this one.
    let gpu = rnn_wgpu::gpu::Gpu::new().expect("GPU tests need an adapter");
    let mut rng = StdRng::seed_from_u64(seed(10));
    let dispatches = |a: &Array2<f32>, b: &Array2<f32>| {
        let before = gpu.work_counts().dispatches;
        let got = matmul(&gpu, a.view(), true, b.view(), false, None, None).unwrap();
        (got, gpu.work_counts().dispatches - before)
    };
    // dW = dgates^T h over 33,000 rows: [33000, 130]^T x [33000, 67]
    let (a, b) = (random(33_000, 130, &mut rng), random(33_000, 67, &mut rng));
    let (got, long) = dispatches(&a, &b);
    let case = Case {
        label: "dW".into(),
        want: to64(&a).t().dot(&to64(&b)),
        a,
        trans_a: true,
        b,
        trans_b: false,
        bias: None,
        c0: None,
    };
    assert_eq!(mismatch(&case, &got), None);
    let (_, short) = dispatches(&random(1024, 128, &mut rng), &random(1024, 256, &mut rng));
    assert_eq!(short, 1, "a [1024, 128]^T x [1024, 256] product");
    if gpu.info.device_type == wgpu::DeviceType::Cpu {
        assert!(
            long > 1,
            "{long} dispatch(es) for [33000, 130]^T x [33000, 67]"
        );
    } else {
        assert_eq!(long, 1);
    }
}

/// The host's choice: on GPUs 64x64 tiles, or split K where C has few tiles; on CPU adapters
/// the block shape that fits the product.
#[test]
fn auto_picks_tiles_on_gpus_and_fitting_blocks_on_cpus() {
    let on_gpus = GemmKernel::gpu_choice;
    // (256, 128, 128, 512): the input projection, the recurrent products forward (128 tiles)
    // and back (32), dW_hh (256 tiles), dW_ih (64, K split over parts)
    assert_eq!(on_gpus((32768, 2048, 128)), GemmKernel::Tiled);
    assert_eq!(on_gpus((256, 2048, 512)), GemmKernel::Tiled);
    assert_eq!(on_gpus((256, 512, 2048)), GemmKernel::Split32x32);
    assert_eq!(on_gpus((2048, 512, 32768)), GemmKernel::Tiled);
    assert_eq!(on_gpus((2048, 128, 32768)), GemmKernel::Split64x64);
    // (64, 1000, 2, 128): dW_hh, dW_ih, the per-step products back and forth
    assert_eq!(on_gpus((512, 128, 64000)), GemmKernel::Split64x64);
    assert_eq!(on_gpus((512, 2, 64000)), GemmKernel::Split64x64);
    assert_eq!(on_gpus((64, 128, 512)), GemmKernel::Split32x32);
    assert_eq!(on_gpus((64, 512, 128)), GemmKernel::Split32x32);
    // a large square; a K too short to split in slices
    assert_eq!(on_gpus((4096, 4096, 4096)), GemmKernel::Tiled);
    assert_eq!(on_gpus((256, 512, 63)), GemmKernel::Tiled);
    let gpu = gpu();
    let pick = |shape| GemmKernel::Auto.resolve(gpu, shape, false);
    if gpu.info.device_type != wgpu::DeviceType::Cpu {
        assert_eq!(pick((256, 512, 2048)), on_gpus((256, 512, 2048)));
        return;
    }
    if gpu.has_lanes_of_8() {
        let lanes = |swapped| GemmKernel::Lanes32x8 { swapped };
        let large = |swapped| GemmKernel::Lanes64x8 { swapped };
        let few = |swapped| GemmKernel::Lanes8x16 { swapped };
        assert_eq!(pick((512, 512, 512)), large(false));
        // dW_hh of (32, 100, 2, 128)
        assert_eq!(pick((512, 128, 3200)), large(false));
        // the recurrent product of a batch of 32
        assert_eq!(pick((32, 512, 128)), lanes(false));
        // dx with a 2-wide input, the head with one output: C^T has few rows
        assert_eq!(pick((6400, 2, 1024)), few(true));
        assert_eq!(pick((256, 1, 512)), few(true));
        // the head's weight gradient over all rows
        assert_eq!(pick((1, 512, 6400)), few(false));
    } else {
        assert_eq!(pick((512, 512, 512)), GemmKernel::Block16x16);
        assert_eq!(pick((64, 1024, 256)), GemmKernel::Block16x16);
        // dx with a 2-wide input, the head with one output
        assert_eq!(pick((6400, 2, 1024)), GemmKernel::Block32x4);
        assert_eq!(pick((256, 1, 512)), GemmKernel::Block32x4);
        // the head's weight gradient over all rows
        assert_eq!(pick((1, 512, 6400)), GemmKernel::Block4x32);
    }
    assert_eq!(
        GemmKernel::Tiled.resolve(gpu, (8, 8, 8), true),
        GemmKernel::Tiled
    );
}
