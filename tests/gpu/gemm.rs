//! The GEMM kernels against ndarray in f64, for every transpose combination, with and without
//! bias and accumulation, at sizes that are not multiples of any tile or block: the tile
//! `matmul` picks for the adapter, then every named tile and odd ones forced, on matrices
//! placed inside larger NaN-padded buffers (unaligned offsets and strides) that must stay
//! untouched.

use super::{gpu, matrix_unit_contexts, seed};
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnn_wgpu::internals::gpu::gemm::{
    k_parts, matmul, matmul_using, GemmKernel, MatmulRun, Placement,
};
use rnn_wgpu::internals::gpu::{GemmTile, Kernel};
use rnn_wgpu::{Gpu, Precision};

pub(super) fn random(rows: usize, cols: usize, rng: &mut StdRng) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
}

pub(super) fn to64(a: &Array2<f32>) -> Array2<f64> {
    a.mapv(|v| v as f64)
}

/// f32 sums of K products against f64: error grows like sqrt(K) * 2^-24.
const TOLERANCE: f64 = 1e-5;

/// The tiles Auto and tuning choose among on this adapter, and odd shapes of the same source:
/// one invocation, uneven groups, K-slices of 1 and 3, slices of K inside the workgroup that
/// are not a power of two.
pub(super) fn tiles_under_test(gpu: &Gpu) -> Vec<GemmKernel> {
    let odd = ["4:1x1:1:1", "4:3x5:7:3", "8:2x1:3:2", "8:5x3:1:1"];
    let odd = odd.iter().map(|t| GemmKernel::Tile(t.parse().unwrap()));
    GemmKernel::named(gpu).into_iter().chain(odd).collect()
}

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

/// `case` with A and B rounded to f16, as an f16 buffer holds them, and the reference
/// recomputed from the rounded values.
fn with_f16_operands(mut case: Case) -> Case {
    let op = |x: &Array2<f32>, transposed: bool| {
        let x = to64(x);
        if transposed {
            x.t().to_owned()
        } else {
            x
        }
    };
    let exact = op(&case.a, case.trans_a).dot(&op(&case.b, case.trans_b));
    case.a.mapv_inplace(|v| half::f16::from_f32(v).to_f32());
    case.b.mapv_inplace(|v| half::f16::from_f32(v).to_f32());
    let rounded = op(&case.a, case.trans_a).dot(&op(&case.b, case.trans_b));
    case.want = &case.want - &exact + &rounded;
    case
}

/// gemm_coop.wgsl on every context of `matrix_unit_contexts`: its own code with the
/// cooperative-matrix operations emulated in plain WGSL on tiles of each edge, and the
/// adapter's own operations where the run asks for them: every
/// transpose, bias and accumulation; sizes one short of and past its blocks (16 x 16 or
/// 32 x 32) and steps of K (8 or 16); f16 operands 3 NaN words into their buffers, rows 3 words
/// apart; K long enough to run as several dispatches under llvmpipe's loop limit, and to be
/// split into parts summed by `gemm_split_sum`.
#[test]
fn the_matrix_units_kernel_matches_ndarray() {
    let (mut failures, mut chunked, mut split) = (Vec::new(), false, false);
    for (gpu, name) in matrix_unit_contexts() {
        let runs = matrix_unit_runs(gpu);
        failures.extend(runs.failures.into_iter().map(|f| format!("{name}: {f}")));
        (chunked, split) = (chunked || runs.chunked, split || runs.split);
    }
    assert!(
        chunked && split,
        "no long K ran as several dispatches ({chunked}) or in parts ({split})"
    );
    assert!(
        failures.is_empty(),
        "||gpu - cpu|| / ||cpu|| > {TOLERANCE:e}:\n{}",
        failures.join("\n")
    );
}

/// What `matrix_unit_runs` found on one context.
struct MatrixUnitRuns {
    /// The cases beyond the tolerance or writing outside C, described.
    failures: Vec<String>,
    /// Whether a long K ran as several dispatches (under llvmpipe's loop limit).
    chunked: bool,
    /// Whether a long K ran in parts summed by `gemm_split_sum`.
    split: bool,
}

/// `GemmKernel::MatrixUnits` on `gpu` at awkward sizes against ndarray.
fn matrix_unit_runs(gpu: &Gpu) -> MatrixUnitRuns {
    let mut rng = StdRng::seed_from_u64(seed(11));
    let shapes = [
        (1, 1, 1),
        (3, 17, 65),
        (15, 17, 9),
        (33, 31, 17),
        (65, 3, 257),
        (17, 65, 16),
        (31, 33, 20001),
        (33, 31, 9000),
    ];
    let placement = Placement {
        pad: 3,
        operands: (Precision::F16, Precision::F16),
    };
    let mut runs = MatrixUnitRuns {
        failures: Vec::new(),
        chunked: false,
        split: false,
    };
    for shape in shapes {
        for case in cases(shape, &mut rng).into_iter().map(with_f16_operands) {
            let run = run_case(gpu, (GemmKernel::MatrixUnits, None), placement, &case);
            let coop = (run.kernels.iter())
                .filter(|k| **k == Kernel::GemmCoop)
                .count();
            let split = run.kernels.contains(&Kernel::GemmSplitSum);
            // K = 9000 and 20001 run as several dispatches under llvmpipe's loop limit, or in
            // parts of K summed afterwards where C has few blocks, or both, as the edge's
            // blocks and loops have it; a shorter K in one dispatch.
            let expected = match shape.2 {
                9000 | 20001 => coop >= 2 || split,
                _ => coop == 1 && !split,
            };
            assert!(expected, "{}: ran {:?}", case.label, run.kernels);
            runs.chunked |= coop >= 2;
            runs.split |= split;
            if !run.padding_kept {
                runs.failures
                    .push(format!("{}: wrote outside C", case.label));
            }
            if let Some(why) = mismatch(&case, &run.product) {
                runs.failures.push(format!("{}: {why}", case.label));
            }
        }
    }
    runs
}

/// Every tile under test on every awkward shape (skinny N and M, K = 1, sizes one past a block),
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
        // several K-stages per slice of the split tiles, the last slice short
        (35, 66, 300),
    ];
    let mut failures = Vec::new();
    for kernel in tiles_under_test(gpu()) {
        for shape in shapes {
            for case in cases(shape, &mut rng) {
                let run = run_case(gpu(), (kernel, None), Placement::padded(3), &case);
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
/// sums (relative errors of 0.2-0.5 at this K before the host split K there). Every tile
/// under test, every transpose, bias and accumulation, at K = 70,001 on 9 x 9 (small enough that
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
    for kernel in tiles_under_test(gpu()) {
        for case in &cases {
            let run = run_case(gpu(), (kernel, None), Placement::padded(1), case);
            if let Some(why) = mismatch(case, &run.product) {
                failures.push(format!("{kernel:?} {}: {why}", case.label));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The split tiles with K split over parts of workgroups (K of several thousand: the weight
/// gradients on GPUs) against f64, with the dispatches they take (the parts, then their sum)
/// and the same bits when run again. The parts are uneven (K is not a multiple of them, nor of
/// a slice's steps), and one K just misses a second part.
#[test]
fn split_k_parts_match_ndarray_with_the_same_bits_every_run() {
    let mut rng = StdRng::seed_from_u64(seed(12));
    let mut failures = Vec::new();
    let kernels = [GemmTile::SPLIT32, GemmTile::SPLIT64];
    let shapes = [
        ((33, 17, 12300), 3),
        ((40, 70, 9000), 2),
        ((3, 65, 4100), 1),
    ];
    for (tile, (shape, parts)) in kernels.iter().flat_map(|k| shapes.map(|s| (k, s))) {
        let kernel = &GemmKernel::Tile(*tile);
        if !GemmKernel::named(gpu()).contains(kernel) {
            // not a skip: this adapter cannot run the tile, so Auto never picks it
            assert!(!tile.allowed_by(&gpu().limits));
            continue;
        }
        assert_eq!(k_parts(*tile, shape), parts, "{shape:?}");
        let want = if parts > 1 {
            vec![Kernel::Gemm4x4, Kernel::GemmSplitSum]
        } else {
            vec![Kernel::Gemm4x4]
        };
        // every transpose accumulating with bias, and one plain: the parts are about K
        let cases = cases(shape, &mut rng).into_iter();
        let cases = cases.filter(|c| c.c0.is_some() || !(c.trans_a || c.trans_b));
        for case in cases {
            let run = || {
                run_case(
                    gpu(),
                    (*kernel, Some(usize::MAX)),
                    Placement::padded(3),
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

/// A product run as K-chunks, one product each added to the last (what llvmpipe's loop limit
/// makes the host do), against f64: chunks of 1, 3 and 17 rows of K, K not a multiple of them,
/// on a tile of each kind (one slice, slices of K, an 8x8 block in an odd group).
#[test]
fn k_chunks_match_ndarray() {
    let mut rng = StdRng::seed_from_u64(seed(9));
    let mut failures = Vec::new();
    let odd = GemmKernel::Tile("8:2x1:3:2".parse().unwrap());
    for kernel in [GemmKernel::TILED, GemmKernel::SPLIT32, odd] {
        for shape in [(17, 65, 40), (70, 3, 65), (3, 66, 57)] {
            for case in cases(shape, &mut rng) {
                for chunk in [1, 3, 17] {
                    let placement = Placement::padded(3);
                    let chunked = run_case(gpu(), (kernel, Some(chunk)), placement, &case);
                    let label = format!("{kernel:?} chunk {chunk} {}", case.label);
                    if !chunked.padding_kept {
                        failures.push(format!("{label}: wrote outside C"));
                    }
                    if let Some(why) = mismatch(&case, &chunked.product) {
                        failures.push(format!("{label}: {why}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A weight-gradient-sized product (K = 33,000 rows, past `CHAIN_FROM_K`) is summed in parts of
/// workgroups plus their sum: two dispatches where loops are not limited (more on llvmpipe,
/// whose loop limit also splits K into chunks), and matches f64; a short one is one dispatch.
#[test]
fn long_products_are_summed_in_parts() {
    // A context of its own: the shared one counts the work of tests running beside this one.
    let gpu = rnn_wgpu::Gpu::new().expect("GPU tests need an adapter");
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
    if gpu.loop_limit().is_some() {
        assert!(long >= 2, "{long} dispatch(es)");
    } else {
        assert_eq!(long, 2, "[33000, 130]^T x [33000, 67]");
    }
}

/// Auto's rule: 64x64 tiles, or split K where C has few tiles (in parts of workgroups where K
/// is long), a tile fitted to a skinny C, a whole short K staged at once; on every adapter; a
/// tile the adapter cannot run is never chosen.
#[test]
fn auto_picks_tiles_or_split_k_by_the_tiles_of_c() {
    let on_gpus = GemmKernel::gpu_choice;
    // (256, 128, 128, 512): the input projection, dW_hh (256 tiles), dW_ih (64, K split over
    // parts), a segment border's product (32)
    assert_eq!(on_gpus((32768, 2048, 128)), GemmKernel::TILED);
    assert_eq!(on_gpus((2048, 512, 32768)), GemmKernel::TILED);
    assert_eq!(on_gpus((2048, 128, 32768)), GemmKernel::SPLIT64);
    assert_eq!(on_gpus((256, 512, 2048)), GemmKernel::SPLIT32);
    // (64, 1000, 2, 128): dW_hh, dW_ih
    assert_eq!(on_gpus((512, 128, 64000)), GemmKernel::SPLIT64);
    assert_eq!(on_gpus((64, 128, 512)), GemmKernel::SPLIT32);
    // skinny: dW_ih of a 2-wide input (4 columns a workgroup, 32 x 4 invocations halved to
    // stay in 16 KiB), the head's gradient of (64, 2500, 1, 8) (16 slices of 2 x 2
    // invocations), dx of a 1-wide input
    let tile = |text: &str| GemmKernel::Tile(text.parse().unwrap());
    assert_eq!(on_gpus((512, 2, 64000)), tile("4:1x32:16:1"));
    assert_eq!(on_gpus((10, 8, 160000)), tile("4:2x4:16:8"));
    assert_eq!(on_gpus((6400, 1, 512)), tile("4:1x32:16:1"));
    // the input projection of a 2-wide input: K staged whole
    assert_eq!(on_gpus((3200, 512, 2)), tile("4:16x16:2:1"));
    // a large square; a K too short to split in slices
    assert_eq!(on_gpus((4096, 4096, 4096)), GemmKernel::TILED);
    assert_eq!(on_gpus((256, 512, 63)), GemmKernel::TILED);
    let gpu = gpu();
    for shape in [(256, 512, 2048), (512, 128, 64000), (4096, 4096, 4096)] {
        let picked = GemmKernel::Auto.resolve(gpu, shape);
        assert!(picked.allowed_by(&gpu.limits), "{picked}");
        match on_gpus(shape) {
            GemmKernel::SPLIT64 if !GemmTile::SPLIT64.allowed_by(&gpu.limits) => {
                assert_eq!(picked, GemmTile::SPLIT32)
            }
            rule => assert_eq!(GemmKernel::Tile(picked), rule),
        }
    }
}

/// A tile larger than the adapter allows is refused with an error that names it, and a tile's
/// text parses back to it.
#[test]
fn tiles_parse_and_too_large_ones_are_refused() {
    let tile: GemmTile = "8:16x16:8:1".parse().unwrap();
    assert_eq!(tile, GemmTile::WIDE128);
    assert_eq!(tile.to_string().parse::<GemmTile>().unwrap(), tile);
    for bad in ["", "4:16x16:16", "5:16x16:16:1", "4:0x16:16:1", "4:16:16:1"] {
        assert!(bad.parse::<GemmTile>().is_err(), "{bad:?}");
    }
    // the longest K one dispatch sums where loops end keeps an invocation within half the
    // limit, and one more stage would not
    for kernel in tiles_under_test(gpu()) {
        let GemmKernel::Tile(tile) = kernel else {
            unreachable!()
        };
        let limit = 65_535;
        let k = tile.longest_k(limit);
        let stage = (tile.slice_k * tile.slices) as u64;
        assert!(tile.iterations(k) <= limit / 2, "{tile}: K {k}");
        assert!(tile.iterations(k + stage) > limit / 2, "{tile}: K {k}");
    }
    let huge = GemmTile::new(4, (64, 64), 16, 1);
    assert!(!huge.allowed_by(&gpu().limits));
    let mut rng = StdRng::seed_from_u64(seed(14));
    let case = &cases((5, 6, 7), &mut rng)[0];
    let err = matmul_using(
        gpu(),
        (GemmKernel::Tile(huge), None),
        Placement::padded(0),
        (case.a.view(), case.trans_a),
        (case.b.view(), case.trans_b),
        None,
        None,
    )
    .err()
    .expect("a tile of 4096 invocations");
    assert!(err.to_string().contains("4:64x64:16:1"), "{err}");
}
