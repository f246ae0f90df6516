//! The cells' scalar functions. In f64 (the gradient checks) they are the standard library's; in
//! f32 (the training path) `exp`, `sigmoid` and `tanh` are polynomial approximations within a
//! few ulp of the correctly rounded result, written without calls or branches so that the
//! compiler vectorizes the cells' loops (glibc's `tanhf` alone took a quarter of a training
//! step). `sum_of_squares` and `dot` keep eight partial sums for the same reason: a single
//! running sum fixes the order of the additions and so forbids vectorizing them.

use crate::float::Float;
use std::any::TypeId;

/// Defines a function over slices whose body is compiled three times: for AVX-512 (16 f32 lanes)
/// and AVX2 (8), each run where the CPU has it, and for the x86-64 baseline (4 lanes). Rust never
/// contracts a multiply and an add into an FMA, so all three give the same bits. Each copy is a
/// function of its own, so its slice arguments keep their no-alias guarantee, which the vectorizer
/// needs: inlined into its caller, the cell loop ran its scalar fallback.
macro_rules! vectorized_fn {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident<F: Float>($($arg:ident: $ty:ty),* $(,)?) $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name<F: Float>($($arg: $ty),*) {
            #[inline(always)]
            fn body<F: Float>($($arg: $ty),*) $body
            #[inline(never)]
            fn baseline<F: Float>($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            #[inline(never)]
            unsafe fn avx2<F: Float>($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            #[inline(never)]
            unsafe fn avx512<F: Float>($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu::math::has_avx512() {
                // SAFETY: this CPU has AVX-512F.
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu::math::has_avx2() {
                // SAFETY: this CPU has AVX2.
                return unsafe { avx2($($arg),*) };
            }
            baseline($($arg),*)
        }
    };
}
pub(crate) use vectorized_fn;

/// The widest x86-64 vector extension the CPU engine runs: what this CPU has, capped by
/// `RNN_WGPU_CPU_ISA` (`baseline`, `avx2` or `avx512`), so that tests and benchmarks run the
/// narrower paths on a wider CPU. Every path gives the same bits in the cells' functions
/// (`vectorized_fn!`); the packed W_hh product (AVX2 with FMA, or AVX-512) rounds its sums
/// differently from matrixmultiply's baseline one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// x86-64's SSE2 (4 f32 lanes), and every other architecture.
    Baseline,
    /// AVX2 with FMA (8 lanes).
    Avx2,
    /// AVX-512F (16 lanes).
    Avx512,
}

/// The variable that caps `Isa`.
pub const ISA_VAR: &str = "RNN_WGPU_CPU_ISA";

impl Isa {
    /// The path's name as `RNN_WGPU_CPU_ISA` spells it and reports show it: `baseline`,
    /// `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// `RNN_WGPU_CPU_ISA`'s value, or what it should be.
    pub fn parse(text: &str) -> Result<Isa, String> {
        [Isa::Baseline, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .find(|isa| isa.name() == text)
            .ok_or_else(|| format!("{ISA_VAR}='{text}': expected baseline, avx2 or avx512"))
    }

    /// The widest this CPU has.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx2") && has!("fma") {
                return Isa::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }
}

/// The path the CPU engine runs (decided once): `Isa::detected`, capped by `RNN_WGPU_CPU_ISA`
/// (the command line refuses a value it does not know; here one is ignored).
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = std::env::var(ISA_VAR)
            .ok()
            .and_then(|v| Isa::parse(&v).ok());
        cap.map_or(Isa::detected(), |cap| cap.min(Isa::detected()))
    })
}

/// Whether the CPU engine runs its AVX2 (and FMA) paths.
pub fn has_avx2() -> bool {
    isa() >= Isa::Avx2
}

/// Whether the CPU engine runs its AVX-512 paths.
pub fn has_avx512() -> bool {
    isa() >= Isa::Avx512
}

/// `1 / (1 + e^-v)`; saturates to 0 or 1 without producing NaN.
#[inline(always)]
pub fn sigmoid<F: Float>(v: F) -> F {
    match same_type::<F, f32>(v) {
        Some(v) => same_type(F32::sigmoid(v)).expect("F is f32"),
        None => F::one() / (F::one() + (-v).exp()),
    }
}

/// The hyperbolic tangent.
#[inline(always)]
pub fn tanh<F: Float>(v: F) -> F {
    match same_type::<F, f32>(v) {
        Some(v) => same_type(F32::tanh(v)).expect("F is f32"),
        None => v.tanh(),
    }
}

/// `sum(v^2)` in f64, in eight interleaved partial sums: the square of an f32 is exact in f64,
/// and no sum of them under- or overflows, so its root is the norm of any finite f32 values,
/// those of a vanishing gradient (squares below f32's 1e-45) or an exploding one (past 3e38)
/// included. The GPU's twin scales by a power of two instead (`row_norms`, reduce.wgsl).
pub fn sum_of_squares<F: Float>(values: &[F]) -> f64 {
    const LANES: usize = 8;
    let wide = |v: &F| v.to_f64().expect("a float converts to f64");
    let chunks = values.chunks_exact(LANES);
    let tail = (chunks.remainder().iter()).fold(0.0, |sum, v| sum + wide(v) * wide(v));
    let mut partial = [0.0f64; LANES];
    for chunk in chunks {
        for lane in 0..LANES {
            partial[lane] += wide(&chunk[lane]) * wide(&chunk[lane]);
        }
    }
    partial.iter().sum::<f64>() + tail
}

/// `sum(a * b)` over two slices of one length, in eight interleaved partial sums.
#[inline]
pub fn dot<F: Float>(a: &[F], b: &[F]) -> F {
    const LANES: usize = 8;
    assert_eq!(a.len(), b.len(), "dot of slices of different lengths");
    let mut partial = [F::zero(); LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .fold(F::zero(), |sum, (&x, &y)| sum + x * y);
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            partial[lane] = partial[lane] + x[lane] * y[lane];
        }
    }
    partial.iter().fold(tail, |sum, &p| sum + p)
}

/// `a` as a `B` when `A` and `B` are one type. The comparison of type ids is a constant after
/// monomorphization, so the unused branch of `sigmoid` and `tanh` costs nothing.
#[inline(always)]
fn same_type<A: 'static + Copy, B: 'static + Copy>(a: A) -> Option<B> {
    if TypeId::of::<A>() == TypeId::of::<B>() {
        // SAFETY: A and B are the same type, so this copies a value to its own type.
        Some(unsafe { std::mem::transmute_copy::<A, B>(&a) })
    } else {
        None
    }
}

/// The f32 approximations (Cephes' `expf` and `tanhf` polynomials).
struct F32;

impl F32 {
    /// `e^v`, within 1 ulp for v in `[-87, 88]` (clamped there, where e^v stays a normal f32).
    /// NaN stays NaN (`clamp` keeps it).
    #[inline(always)]
    fn exp(v: f32) -> f32 {
        // Split v = n ln2 + r with n an integer and |r| <= ln2 / 2; adding 1.5 * 2^23 rounds
        // to an integer, which then sits in the low mantissa bits.
        const ROUND: f32 = 12_582_912.0;
        // ln2 in two parts: n * LN2_HI is exact for |n| < 2^9, which keeps r accurate.
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        let v = v.clamp(-87.0, 88.0);
        let shifted = v * std::f32::consts::LOG2_E + ROUND;
        let n = shifted - ROUND;
        let r = v - n * LN2_HI - n * LN2_LO;
        let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
            * r
            + 1.666_666_5e-1)
            * r
            + 5e-1;
        let exp_r = p * r * r + r + 1.0;
        // 2^n from its exponent bits; n is in [-126, 127] after the clamp.
        let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
        exp_r * f32::from_bits(n_bits.wrapping_add(127) << 23)
    }

    #[inline(always)]
    fn sigmoid(v: f32) -> f32 {
        1.0 / (1.0 + F32::exp(-v))
    }

    /// Below |v| = 0.625 an odd polynomial, above it `1 - 2 / (e^2|v| + 1)` (which would lose
    /// relative accuracy near 0 to cancellation); both are computed and one is selected, so
    /// the loop has no branch.
    #[inline(always)]
    fn tanh(v: f32) -> f32 {
        let z = v * v;
        let small = ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z
            + 1.333_144_2e-1)
            * z
            - 3.333_328e-1)
            * z
            * v
            + v;
        let large = (1.0 - 2.0 / (F32::exp(2.0 * v.abs()) + 1.0)).copysign(v);
        if v.abs() < 0.625 {
            small
        } else {
            large
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 97th f32 bit pattern in `[-30, 30]` (and a few special values): the f32 paths
    /// against the f64 functions, in ulp of the f32 result.
    #[test]
    fn f32_approximations_are_within_a_few_ulp() {
        let ulp = |got: f32, exact: f64| {
            let spacing = (exact as f32).abs().max(f32::MIN_POSITIVE);
            let spacing = f32::from_bits(spacing.to_bits() + 1) - spacing;
            ((got as f64 - exact) / spacing as f64).abs()
        };
        let mut worst = [0.0f64; 3];
        let positive = (0..0x41f0_0000u32).step_by(97).map(f32::from_bits);
        for v in positive.flat_map(|v| [v, -v]) {
            let x = v as f64;
            worst[0] = worst[0].max(ulp(F32::exp(v), x.exp()));
            worst[1] = worst[1].max(ulp(F32::sigmoid(v), 1.0 / (1.0 + (-x).exp())));
            worst[2] = worst[2].max(ulp(F32::tanh(v), x.tanh()));
        }
        assert!(worst[0] <= 2.0, "exp: {} ulp", worst[0]);
        assert!(worst[1] <= 3.0, "sigmoid: {} ulp", worst[1]);
        assert!(worst[2] <= 3.0, "tanh: {} ulp", worst[2]);
        for (v, s, t) in [
            (0.0f32, 0.5f32, 0.0f32),
            (200.0, 1.0, 1.0),
            (-200.0, 0.0, -1.0),
            (f32::INFINITY, 1.0, 1.0),
            (f32::NEG_INFINITY, 0.0, -1.0),
        ] {
            assert!((sigmoid(v) - s).abs() < 1e-30, "sigmoid({v})");
            assert_eq!(tanh(v), t, "tanh({v})");
        }
        assert!(sigmoid(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
        assert!(F32::exp(f32::NAN).is_nan());
    }

    #[test]
    fn f64_uses_the_standard_library() {
        for v in [-3.0f64, -0.1, 0.0, 0.4, 2.5] {
            assert_eq!(tanh(v), v.tanh());
            assert_eq!(sigmoid(v), 1.0 / (1.0 + (-v).exp()));
        }
    }

    #[test]
    fn dot_and_sum_of_squares() {
        let a: Vec<f64> = (0..19).map(|i| i as f64 - 4.5).collect();
        let b: Vec<f64> = (0..19).map(|i| (i * i) as f64 * 0.25).collect();
        let naive = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>();
        assert!((dot(&a, &b) - naive).abs() < 1e-12 * naive.abs());
        let squares = a.iter().map(|x| x * x).sum::<f64>();
        assert!((sum_of_squares(&a) - squares).abs() < 1e-12 * squares);
        // f32 values whose squares leave f32's range, below and above
        for scale in [1e-30f32, 1e30] {
            let v: Vec<f32> = a.iter().map(|&x| x as f32 * scale).collect();
            let exact = squares * (scale as f64).powi(2);
            let got = sum_of_squares(&v);
            assert!((got - exact).abs() < 1e-6 * exact, "{scale}: {got} {exact}");
        }
        assert_eq!(dot::<f32>(&[], &[]), 0.0);
    }
}
