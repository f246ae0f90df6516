//! Initialisation: PyTorch's default and the schemes that decide whether gradients vanish
//! at the start of training (the spectrum of W_hh, the LSTM's forget-gate bias).

use crate::config::{Cell, ModelConfig};
use crate::error::Error;
use crate::params::Params;
use ndarray::{s, Array1, Array2, ArrayView2};
use rand::Rng;
use std::fmt;
use std::str::FromStr;

/// How the weights start. Biases start at zero except under `PyTorch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Every parameter uniform in ±1/sqrt(H), as `nn.RNN`/`nn.LSTM` and the head as
    /// `nn.Linear(H, O)` do it.
    PyTorch,
    /// Glorot/Xavier uniform per gate block: ±sqrt(6 / (fan_in + fan_out)).
    Glorot,
    /// Glorot W_ih, and each H x H gate block of W_hh a random orthogonal matrix (all
    /// singular values 1).
    Orthogonal,
    /// Glorot W_ih, each gate block of W_hh the identity: the IRNN of Le et al. (2015), meant
    /// for ReLU RNNs.
    Identity,
}

/// A scheme plus the two adjustments the vanishing study turns on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InitConfig {
    /// How every weight is drawn.
    pub scheme: Scheme,
    /// Rescale W_hh (all gates stacked) to this largest singular value.
    pub hh_scale: Option<f64>,
    /// The LSTM's total forget-gate bias (b_ih + b_hh for the f block): b_ih gets it and b_hh
    /// zero. 1.0 is the usual choice (Jozefowicz et al., 2015).
    pub forget_bias: Option<f64>,
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            scheme: Scheme::PyTorch,
            hh_scale: None,
            forget_bias: None,
        }
    }
}

/// Parameters for `config` drawn from `rng` as `init` says.
pub fn initialize(
    config: &ModelConfig,
    init: &InitConfig,
    rng: &mut impl Rng,
) -> Result<Params<f32>, Error> {
    config.validate()?;
    let (h, gates) = (config.hidden_size, config.cell.gates());
    let mut params = match init.scheme {
        Scheme::PyTorch => return adjust(Params::init_uniform(config, rng), config, init),
        _ => Params::<f32>::zeros(config),
    };
    let glorot = |w: &mut Array2<f32>, rng: &mut dyn rand::RngCore| {
        // per gate block: fan_out = H rows, fan_in = columns
        let bound = (6.0 / (w.ncols() + h) as f64).sqrt();
        w.mapv_inplace(|_| rng.random_range(-bound..bound) as f32);
    };
    // Cell by cell in `Params::cells` order, so a one-cell model draws what it always drew.
    for (k, cell) in params.cells.iter_mut().enumerate() {
        glorot(&mut cell.weight_ih, rng);
        if k == 0 {
            glorot(&mut params.head_weight, rng);
        }
        for g in 0..gates {
            let mut block = cell.weight_hh.slice_mut(s![g * h..(g + 1) * h, ..]);
            match init.scheme {
                Scheme::Glorot => {
                    let bound = (6.0 / (2 * h) as f64).sqrt();
                    block.mapv_inplace(|_| rng.random_range(-bound..bound) as f32);
                }
                Scheme::Orthogonal => block.assign(&random_orthogonal(h, rng).mapv(|v| v as f32)),
                Scheme::Identity => block.assign(&Array2::eye(h)),
                Scheme::PyTorch => unreachable!(),
            }
        }
    }
    adjust(params, config, init)
}

fn adjust(
    mut params: Params<f32>,
    config: &ModelConfig,
    init: &InitConfig,
) -> Result<Params<f32>, Error> {
    if let Some(scale) = init.hh_scale {
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(Error::Value(format!(
                "--hh-scale must be finite and >= 0, got {scale}"
            )));
        }
        for cell in &mut params.cells {
            rescale_to_singular_value(&mut cell.weight_hh, scale);
        }
    }
    if let Some(bias) = init.forget_bias {
        set_forget_bias(config, &mut params, bias)?;
    }
    Ok(params)
}

/// Sets every LSTM cell's forget-gate bias to `bias` (in `bias_ih`, with `bias_hh`'s share
/// zeroed, so the sum the cell adds is `bias`): a forget gate near 1 keeps the cell state, and
/// its gradient, from one step to the next.
pub fn set_forget_bias(
    config: &ModelConfig,
    params: &mut Params<f32>,
    bias: f64,
) -> Result<(), Error> {
    if config.cell != Cell::Lstm {
        return Err(Error::Config(
            "--forget-bias applies to the LSTM only".into(),
        ));
    }
    if !bias.is_finite() {
        return Err(Error::Value(format!(
            "--forget-bias must be finite, got {bias}"
        )));
    }
    let h = config.hidden_size;
    for cell in &mut params.cells {
        cell.bias_ih.slice_mut(s![h..2 * h]).fill(bias as f32);
        cell.bias_hh.slice_mut(s![h..2 * h]).fill(0.0);
    }
    Ok(())
}

/// A random n x n orthogonal matrix: Gram-Schmidt on Gaussian columns, in f64. (Signs follow
/// the Gaussian draw, so the result is uniformly distributed over the orthogonal group.)
pub fn random_orthogonal(n: usize, rng: &mut impl Rng) -> Array2<f64> {
    let mut q = Array2::<f64>::zeros((n, n));
    let mut col = 0;
    while col < n {
        let mut v: Array1<f64> = (0..n).map(|_| gaussian(rng)).collect();
        // twice, for numerical orthogonality ("twice is enough")
        for _ in 0..2 {
            for k in 0..col {
                let qk = q.column(k);
                let projection = qk.dot(&v);
                v.scaled_add(-projection, &qk);
            }
        }
        let norm = v.dot(&v).sqrt();
        if norm > 1e-8 {
            q.column_mut(col).assign(&(v / norm));
            col += 1;
        }
    }
    q
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]: ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The largest singular value of `w` [rows, cols], by power iteration on `w^T w` in f64.
pub fn largest_singular_value(w: ArrayView2<f64>) -> f64 {
    // A fixed, non-special start vector: deterministic, and orthogonal to the top singular
    // vector only by accident of measure zero.
    let mut v = Array1::from_shape_fn(w.ncols(), |k| 1.0 + (k as f64 * 0.618).fract());
    let mut sigma = 0.0;
    for _ in 0..1000 {
        let norm = v.dot(&v).sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        v /= norm;
        let wv = w.dot(&v);
        let next_sigma = wv.dot(&wv).sqrt();
        v = w.t().dot(&wv);
        if (next_sigma - sigma).abs() <= 1e-12 * next_sigma {
            return next_sigma;
        }
        sigma = next_sigma;
    }
    sigma
}

/// Rescales `w` so its largest singular value becomes `target`.
pub fn rescale_to_singular_value(w: &mut Array2<f32>, target: f64) {
    let current = largest_singular_value(w.mapv(|v| v as f64).view());
    if current > 0.0 {
        let factor = (target / current) as f32;
        w.mapv_inplace(|v| v * factor);
    }
}

impl Scheme {
    /// The spellings `--init` takes (`FromStr` also reads `default`, `xavier` and `irnn`).
    pub const NAMES: &'static [&'static str] = &["pytorch", "glorot", "orthogonal", "identity"];
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::PyTorch => "pytorch",
            Scheme::Glorot => "glorot",
            Scheme::Orthogonal => "orthogonal",
            Scheme::Identity => "identity",
        })
    }
}

impl FromStr for Scheme {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "pytorch" | "default" => Ok(Scheme::PyTorch),
            "glorot" | "xavier" => Ok(Scheme::Glorot),
            "orthogonal" => Ok(Scheme::Orthogonal),
            "identity" | "irnn" => Ok(Scheme::Identity),
            _ => Err(Error::Config(format!(
                "unknown initialisation '{s}': expected one of {}",
                Scheme::NAMES.join(", ")
            ))),
        }
    }
}
