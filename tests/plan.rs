//! The memory plan: segmentation under binding limits and budgets, option parsing, and the
//! command line's `--dry-run`.

use rnn_wgpu::internals::plan::{self, parse_bytes, segment_ranges, MemoryLimits, Recompute};
use rnn_wgpu::Precision;
use rnn_wgpu::{Activation, Cell, Error, Loss, ModelConfig, Readout};
use std::process::Command;

const MIB: u64 = 1 << 20;

fn lstm(hidden: usize) -> ModelConfig {
    ModelConfig {
        cell: Cell::Lstm,
        activation: Activation::Tanh,
        input_size: 2,
        hidden_size: hidden,
        output_size: 1,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// The plan at f32 storage for a model with no optimizer state.
fn plan_f32(
    config: &ModelConfig,
    seq_len: usize,
    batch: usize,
    recompute: Recompute,
    limits: MemoryLimits,
) -> Result<plan::MemoryPlan, Error> {
    plan::plan(config, seq_len, batch, 0, recompute, Precision::F32, limits)
}

fn limits(max_binding: u64, budget: Option<u64>) -> MemoryLimits {
    MemoryLimits {
        max_binding,
        max_buffer: 2048 * MIB,
        uniform_align: 64,
        budget,
        budget_name: "--max-memory",
    }
}

#[test]
fn sizes_and_modes_parse_and_bad_ones_are_named() {
    assert_eq!(parse_bytes("4G").unwrap(), 4 << 30);
    assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
    assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
    assert_eq!(parse_bytes("1000").unwrap(), 1000);
    for bad in ["", "0", "-1G", "4X", "G"] {
        let e = parse_bytes(bad).unwrap_err().to_string();
        assert!(
            e.contains(&format!("'{bad}'")) && e.contains("e.g. 4G"),
            "{e}"
        );
    }
    assert_eq!("off".parse::<Recompute>().unwrap(), Recompute::Off);
    assert_eq!("auto".parse::<Recompute>().unwrap(), Recompute::Auto);
    assert_eq!("17".parse::<Recompute>().unwrap(), Recompute::Every(17));
    for bad in ["0", "-3", "sometimes"] {
        let e = bad.parse::<Recompute>().unwrap_err().to_string();
        assert!(e.contains("--recompute") && e.contains(bad), "{e}");
    }
}

#[test]
fn segments_cover_the_sequence_once() {
    assert_eq!(segment_ranges(9, 4), vec![(0, 4), (4, 4), (8, 1)]);
    assert_eq!(segment_ranges(8, 4), vec![(0, 4), (4, 4)]);
    assert_eq!(segment_ranges(3, 4), vec![(0, 3)]);
    for (t, s) in [(1, 1), (17, 5), (65, 64), (257, 16)] {
        let ranges = segment_ranges(t, s);
        let covered: Vec<usize> = ranges.iter().flat_map(|&(a, n)| a..a + n).collect();
        assert_eq!(covered, (0..t).collect::<Vec<_>>(), "T={t} S={s}");
        assert!(ranges.iter().all(|&(_, n)| (1..=s).contains(&n)));
    }
}

#[test]
fn the_binding_limit_sets_the_segment_length() {
    let config = lstm(128);
    // One step of gates is B * 4H * 4 bytes = 64 * 512 * 4 = 128 KiB; 128 MiB holds 1024 steps.
    let p = plan_f32(&config, 10_000, 64, Recompute::Off, limits(128 * MIB, None)).unwrap();
    assert_eq!((p.segment_len, p.segments, p.recompute), (1024, 10, false));
    assert!(p.largest_binding() <= 128 * MIB);
    // Everything fits one binding: one segment.
    let p = plan_f32(&config, 100, 64, Recompute::Off, limits(128 * MIB, None)).unwrap();
    assert_eq!((p.segment_len, p.segments), (100, 1));
    // Not even one step fits: refused, naming the tensor and what to change.
    let e = plan_f32(&config, 100, 64, Recompute::Off, limits(64 * 1024, None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("single time step") && e.contains("use a smaller --batch or --hidden"),
        "{e}"
    );
    // A tensor that grows with T alone (one norm per step) names --seq-len only.
    let e = plan_f32(
        &lstm(1),
        100_000,
        1,
        Recompute::Off,
        limits(64 * 1024, None),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("per-step gradient norms") && e.ends_with("use a smaller --seq-len"),
        "{e}"
    );
    // A recompute segment longer than a binding allows is refused with the longest that fits.
    let e = plan_f32(
        &config,
        10_000,
        64,
        Recompute::Every(2000),
        limits(128 * MIB, None),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--recompute 2000") && e.contains("1024 steps"),
        "{e}"
    );
}

#[test]
fn recomputation_memory_grows_like_the_square_root_of_t() {
    let config = lstm(128);
    let total = |t: usize, recompute| {
        plan_f32(&config, t, 64, recompute, limits(128 * MIB, None))
            .unwrap()
            .total_bytes() as f64
    };
    // Without recomputation: linear in T.
    let ratio = total(10_000, Recompute::Off) / total(1_000, Recompute::Off);
    assert!(
        (9.0..=10.5).contains(&ratio),
        "off: 10x T gave {ratio:.2}x memory"
    );
    // With segments of ~sqrt(T) steps, the activations grow like sqrt(T); the per-step norms
    // and inputs stay linear but are small.
    let ratio = total(10_000, Recompute::Every(100)) / total(100, Recompute::Off);
    assert!(ratio < 3.0, "recompute: 100x T gave {ratio:.2}x memory");
}

#[test]
fn auto_recomputes_only_when_the_budget_needs_it() {
    let config = lstm(128);
    let plan_with = |budget| {
        plan_f32(
            &config,
            2_000,
            64,
            Recompute::Auto,
            limits(128 * MIB, Some(budget)),
        )
    };
    let off = plan_f32(&config, 2_000, 64, Recompute::Off, limits(128 * MIB, None)).unwrap();
    let roomy = plan_with(off.total_bytes()).unwrap();
    assert!(!roomy.recompute, "{}", roomy.describe());
    let tight = plan_with(off.total_bytes() / 4).unwrap();
    assert!(tight.recompute, "{}", tight.describe());
    assert!(tight.total_bytes() <= off.total_bytes() / 4);
    // The longest segments that fit: one step longer would not.
    let longer = plan_f32(
        &config,
        2_000,
        64,
        Recompute::Every(tight.segment_len + 1),
        limits(128 * MIB, None),
    )
    .unwrap();
    assert!(longer.total_bytes() > off.total_bytes() / 4 || tight.segment_len == 1023);
    let e = plan_with(MIB).unwrap_err().to_string();
    assert!(
        e.contains("more than --max-memory 1.0 MiB") && e.contains("largest term"),
        "{e}"
    );
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("the binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

#[test]
fn dry_run_plans_a_huge_configuration_without_running_it() {
    let big = [
        "train",
        "--dry-run",
        "--seq-len",
        "100000",
        "--batch",
        "256",
        "--hidden",
        "512",
    ];
    let (ok, text) = cli(&[&big[..], &["--max-memory", "4G"]].concat());
    assert!(ok, "{text}");
    assert!(
        text.contains("recomputation on") && text.contains("budget 4.0 GiB"),
        "{text}"
    );
    let (ok, text) = cli(&[&big[..], &["--max-memory", "4G", "--recompute", "off"]].concat());
    assert!(!ok, "{text}");
    assert!(
        text.contains("more than --max-memory 4.0 GiB") && text.contains("--recompute auto"),
        "{text}"
    );
    let (ok, text) = cli(&[&big[..], &["--max-memory", "lots"]].concat());
    assert!(!ok && text.contains("'lots'"), "{text}");
}

/// The scratch buffer of partial sums, sized for its largest user: the bias gradients' blocks
/// of 256 rows, and the products' parts of a long K. (64, 1000, 2, 128): 64,000 rows, so 250
/// blocks of 4H = 512 columns. dW_hh (512 x 128, K = 64,000) sums K in parts of about
/// `CHAIN_K` = 4096 whatever the tile (`gemm::k_parts`): 16 parts, 16 * 512 * 128 words.
#[test]
fn partial_sums_are_planned_for_their_largest_user() {
    let words = |t: usize, b: usize| -> Vec<usize> {
        let limits = limits(2048 * MIB, None);
        let plan = plan::plan(&lstm(128), t, b, 0, Recompute::Off, Precision::F32, limits).unwrap();
        plan.terms
            .iter()
            .filter(|t| t.name.starts_with("partial sums"))
            .map(|t| t.words_each * t.count)
            .collect()
    };
    assert_eq!(words(1000, 64), vec![16 * 512 * 128]);
    // bias blocks only: 40 steps of 64 rows are 10 blocks; no K past 4,096
    assert_eq!(words(40, 64), vec![10 * 512]);
    // a short sequence needs neither: 4 rows of the bias gradients, no K worth splitting
    assert!(words(2, 2).is_empty());
}

/// f16 storage halves the activations: on every shape of the bench suite and every cell the
/// planned bytes (f32 parameters, gradients and Adam's state included, and the f16 working
/// copies of the weights added) come to at most 0.6 of f32's, and shrink by the stored terms
/// alone.
#[test]
fn f16_storage_plans_at_most_six_tenths_of_f32s_bytes() {
    use rnn_wgpu::internals::bench::SUITE;
    for shape in SUITE {
        for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
            let config = shape.config(cell);
            let adam = 2 * config.param_count();
            let planned = |precision| {
                let limits = limits(u64::MAX, None);
                let (t, b) = (shape.seq_len, shape.batch);
                plan::plan(&config, t, b, adam, Recompute::Off, precision, limits).unwrap()
            };
            let (full, half) = (planned(Precision::F32), planned(Precision::F16));
            let ratio = half.total_bytes() as f64 / full.total_bytes() as f64;
            assert!(
                ratio <= 0.6,
                "{cell} {shape:?}: f16 plans {} of f32's {} bytes ({ratio:.3})",
                half.total_bytes(),
                full.total_bytes()
            );
            let stored = |p: &plan::MemoryPlan| -> u64 {
                (p.terms.iter())
                    .filter(|t| t.precision == Precision::F16)
                    .map(|t| t.bytes())
                    .sum()
            };
            assert!(stored(&half) > 0 && stored(&full) == 0);
            eprintln!("{cell} {shape:?}: f16/f32 planned bytes {ratio:.3}");
        }
    }
}

/// The adapter's largest buffer is checked in bytes as stored: a buffer of f16 elements that
/// fits is not refused for what its f32 twin would take, and the refusal names its real size.
#[test]
fn the_largest_buffer_is_checked_at_its_stored_size() {
    let config = lstm(64);
    let (t, b) = (1000, 64);
    let plan_with = |precision, max_buffer| {
        let limits = MemoryLimits {
            max_buffer,
            ..limits(u64::MAX, None)
        };
        plan::plan(&config, t, b, 0, Recompute::Off, precision, limits)
    };
    let full = plan_with(Precision::F32, u64::MAX).unwrap();
    let largest = (full.terms.iter())
        .map(|term| term.bytes_each())
        .max()
        .unwrap();
    // between the largest f16 buffer (about half) and the largest f32 one
    let max_buffer = largest * 3 / 4;
    let e = plan_with(Precision::F32, max_buffer)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_buffer_size"), "{e}");
    let half = plan_with(Precision::F16, max_buffer).unwrap();
    assert!(half
        .terms
        .iter()
        .all(|term| term.bytes_each() <= max_buffer));
}
