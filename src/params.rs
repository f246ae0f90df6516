//! Parameters with PyTorch's names and shapes, so weights move between frameworks unchanged.
//! Gradients have exactly the parameters' shapes, so they are a `Params` too.

use crate::config::ModelConfig;
use crate::{Error, Float};
use ndarray::{Array1, Array2, ArrayView2};
use rand::Rng;

/// `G*H` rows stack the gates (i, f, g, o for the LSTM).
/// Shapes: weight_ih [G*H, I], weight_hh [G*H, H], bias_ih [G*H], bias_hh [G*H],
/// head_weight [O, H], head_bias [O].
#[derive(Clone, Debug, PartialEq)]
pub struct Params<F> {
    pub weight_ih: Array2<F>,
    pub weight_hh: Array2<F>,
    pub bias_ih: Array1<F>,
    pub bias_hh: Array1<F>,
    pub head_weight: Array2<F>,
    pub head_bias: Array1<F>,
}

/// PyTorch's names, in the order `Params::tensors` lists them.
pub const PARAM_NAMES: [&str; 6] = [
    "weight_ih_l0",
    "weight_hh_l0",
    "bias_ih_l0",
    "bias_hh_l0",
    "head.weight",
    "head.bias",
];

impl<F: Float> Params<F> {
    pub fn zeros(config: &ModelConfig) -> Self {
        let (gh, h, i, o) = dims(config);
        Params {
            weight_ih: Array2::zeros((gh, i)),
            weight_hh: Array2::zeros((gh, h)),
            bias_ih: Array1::zeros(gh),
            bias_hh: Array1::zeros(gh),
            head_weight: Array2::zeros((o, h)),
            head_bias: Array1::zeros(o),
        }
    }

    /// PyTorch's default: every recurrent parameter uniform in ±1/sqrt(H); the head as
    /// `nn.Linear(H, O)` does it, uniform in ±1/sqrt(H) as well.
    pub fn init_uniform(config: &ModelConfig, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / (config.hidden_size as f64).sqrt();
        let mut params = Self::zeros(config);
        params.for_each_mut(|_, values| {
            for v in values.iter_mut() {
                *v = F::from_f64(rng.random_range(-bound..bound)).unwrap();
            }
        });
        params
    }

    /// Every tensor with its PyTorch name, flattened row-major.
    pub fn tensors(&self) -> [(&'static str, &[F]); 6] {
        fn slice<F>(a: Option<&[F]>) -> &[F] {
            a.expect("parameters are contiguous")
        }
        [
            (PARAM_NAMES[0], slice(self.weight_ih.as_slice())),
            (PARAM_NAMES[1], slice(self.weight_hh.as_slice())),
            (PARAM_NAMES[2], slice(self.bias_ih.as_slice())),
            (PARAM_NAMES[3], slice(self.bias_hh.as_slice())),
            (PARAM_NAMES[4], slice(self.head_weight.as_slice())),
            (PARAM_NAMES[5], slice(self.head_bias.as_slice())),
        ]
    }

    /// Visits every tensor as a mutable flat slice, in `PARAM_NAMES` order.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&'static str, &mut [F])) {
        fn slice<F>(a: Option<&mut [F]>) -> &mut [F] {
            a.expect("parameters are contiguous")
        }
        f(PARAM_NAMES[0], slice(self.weight_ih.as_slice_mut()));
        f(PARAM_NAMES[1], slice(self.weight_hh.as_slice_mut()));
        f(PARAM_NAMES[2], slice(self.bias_ih.as_slice_mut()));
        f(PARAM_NAMES[3], slice(self.bias_hh.as_slice_mut()));
        f(PARAM_NAMES[4], slice(self.head_weight.as_slice_mut()));
        f(PARAM_NAMES[5], slice(self.head_bias.as_slice_mut()));
    }

    /// Converts element type (f64 reference <-> f32 GPU).
    pub fn cast<G: Float>(&self) -> Params<G> {
        let c1 = |a: &Array1<F>| a.mapv(|v| G::from_f64(v.to_f64().unwrap()).unwrap());
        let c2 = |a: &Array2<F>| a.mapv(|v| G::from_f64(v.to_f64().unwrap()).unwrap());
        Params {
            weight_ih: c2(&self.weight_ih),
            weight_hh: c2(&self.weight_hh),
            bias_ih: c1(&self.bias_ih),
            bias_hh: c1(&self.bias_hh),
            head_weight: c2(&self.head_weight),
            head_bias: c1(&self.head_bias),
        }
    }

    /// Checks every shape against `config`, naming the first tensor that disagrees.
    pub fn check(&self, config: &ModelConfig) -> Result<(), Error> {
        let (gh, h, i, o) = dims(config);
        let expect2 =
            |name: &str, a: ArrayView2<F>, rows, cols| check_shape(name, a.shape(), &[rows, cols]);
        expect2(PARAM_NAMES[0], self.weight_ih.view(), gh, i)?;
        expect2(PARAM_NAMES[1], self.weight_hh.view(), gh, h)?;
        check_shape(PARAM_NAMES[2], self.bias_ih.shape(), &[gh])?;
        check_shape(PARAM_NAMES[3], self.bias_hh.shape(), &[gh])?;
        expect2(PARAM_NAMES[4], self.head_weight.view(), o, h)?;
        check_shape(PARAM_NAMES[5], self.head_bias.shape(), &[o])
    }
}

pub(crate) fn check_shape(what: &str, got: &[usize], expected: &[usize]) -> Result<(), Error> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            what: what.to_string(),
            got: got.to_vec(),
            expected: expected.to_vec(),
        })
    }
}

/// (G*H, H, I, O)
fn dims(config: &ModelConfig) -> (usize, usize, usize, usize) {
    (
        config.gate_rows(),
        config.hidden_size,
        config.input_size,
        config.output_size,
    )
}
